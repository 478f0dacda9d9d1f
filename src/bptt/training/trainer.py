"""The trainer: one explicit loop, with clipping, the non-finite guard, truncated BPTT and run files.

A run lives in its own directory:

    config.json      the resolved settings (this config, the task's protocol, versions)
    metrics.csv      a row per logged step: loss, pre-clip gradient norm, whether clipping fired, …
    diagnostics.jsonl  Monitor records (gradient against distance, Jacobian norms, gates, …)
    checkpoint.pt    model, optimiser and random-number states, written atomically
    summary.json     task, protocol, cell, seq_len, steps, test_loss, baseline_loss, solved, wall_s, …
    nonfinite.json   where a non-finite gradient was born, if one was

`resume=True` continues from the checkpoint and gives the same numbers as an uninterrupted run
with the same seed: every random draw comes from generators whose states the checkpoint keeps.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .. import __version__, _checks, _io
from .._checks import InputError
from ..cells import registry
from ..diagnostics.monitor import Monitor, Skipped
from ..engine import native
from ..tasks import Batch, Task, make_task
from . import checkpoint, logs
from .guard import POLICIES, NonFiniteGradient, locate
from .init import INITS, initialise
from .model import CORES, SequenceModel, make_core
from .update import Guard, Outcome

OPTIMIZERS = ("adam", "sgd", "rmsprop")
CLIPS = ("none", "norm", "value")


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run; the defaults train an LSTM on the `le` adding problem."""

    task: str = "adding"
    protocol: str | None = None  # the task's first protocol when None
    seq_len: int | None = None  # the task's default when None
    task_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"symbols": 3} for temporal order
    test_size: int = 1000
    cell: str = "lstm"
    variant: str = "vanilla"
    nonlinearity: str = "tanh"
    hidden_size: int = 128
    num_layers: int = 1
    core: str = "bptt"  # or "torch": PyTorch's fused module for standard cells
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float | None = None  # SGD 0.9, RMSprop 0 when None
    batch_size: int = 32
    steps: int = 2000
    clip: str = "none"
    clip_threshold: float = 1.0
    nonfinite: str = "stop"  # or "skip"
    max_skipped: float = 0.1  # a run that skips more than this share of its steps has failed
    init: str = "default"
    init_scale: float = 1.0
    forget_bias: float | None = None
    input_bias: float | None = None
    chrono: int | None = None  # T_max for the chrono initialisation
    tbptt: tuple[int, int] | None = None  # (k1, k2): every k1 steps, backpropagate through the last k2
    log_every: int = 10
    eval_every: int = 200
    monitor_every: int = 0  # 0: no diagnostics snapshots
    checkpoint_every: int = 200
    early_stop: bool = True
    final_diagnostics: bool = True  # trace held-out sequences at the end: final_diagnostics.json
    final_seq_len: int | None = None  # their length (default: the task's)
    seed: int = 0

    def validate(self) -> TrainConfig:
        _checks.choice("cell", self.cell, registry.names())
        _checks.choice("core", self.core, CORES)
        _checks.choice("optimizer", self.optimizer, OPTIMIZERS)
        _checks.choice("clip", self.clip, CLIPS)
        _checks.choice("nonfinite policy", self.nonfinite, POLICIES)
        _checks.choice("init", self.init, INITS)
        for name in (
            "hidden_size",
            "num_layers",
            "batch_size",
            "steps",
            "log_every",
            "eval_every",
            "checkpoint_every",
            "test_size",
        ):
            _checks.positive_int(name, getattr(self, name))
        if not 0 <= self.max_skipped <= 1:
            raise InputError(f"expected max_skipped, a share of the steps, in [0, 1], got {self.max_skipped}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise InputError(f"expected a positive learning rate, got {self.lr}")
        if self.clip != "none" and not self.clip_threshold > 0:
            raise InputError(f"expected a positive clip threshold, got {self.clip_threshold}")
        if self.tbptt is not None:
            k1, k2 = self.tbptt
            if k1 < 1 or k2 < k1 or k2 % k1:
                raise InputError(
                    f"expected truncated BPTT (k1, k2) with 1 ≤ k1 ≤ k2 and k2 a multiple of k1, got ({k1}, {k2})"
                )
        return self


def make_optimizer(cfg: TrainConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9 if cfg.momentum is None else cfg.momentum)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, momentum=0.0 if cfg.momentum is None else cfg.momentum)
    return torch.optim.Adam(params, lr=cfg.lr)


def build(cfg: TrainConfig) -> tuple[Task, SequenceModel]:
    """The task and the freshly initialised model of a config (the model's weights come from cfg.seed)."""
    task = make_task(cfg.task, cfg.protocol, cfg.seq_len, test_size=cfg.test_size, **cfg.task_options)
    torch.manual_seed(cfg.seed)
    core = make_core(
        cfg.cell, task.input_size, cfg.hidden_size, cfg.num_layers, cfg.variant, cfg.nonlinearity, cfg.core
    )
    g = torch.Generator().manual_seed(cfg.seed)
    initialise(core, cfg.init, cfg.forget_bias, cfg.input_bias, cfg.chrono, cfg.init_scale, generator=g)
    model = SequenceModel(core, task.output_size, every_step=task.target == "sequence")
    return task, model


def _detach(state: Any) -> Any:
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def _first_loss_to(watched: Any, losses: Iterator[Tensor]) -> Iterator[Tensor]:
    """The losses, the first of them also set as the watched step's loss (the record's loss value)."""
    for loss in losses:
        if watched.loss is None:
            watched.loss = loss
        yield loss


def _losses(cfg: TrainConfig, task: Task, model: SequenceModel, batch: Batch) -> Iterator[Tensor]:
    """The losses of one batch, one per update: the whole sequence, or truncated BPTT's windows.

    Truncated BPTT (Williams & Peng 1990): every k1 steps, the state k2 steps back (kept, detached)
    is run forward again over the last k2 steps and the loss of the targets in the last k1 steps
    is backpropagated through those k2 steps; the state carried on is detached. With a target only
    at the last step, only the final window has a loss.
    """
    if cfg.tbptt is None:
        pred, _ = model(batch.x)
        yield task.loss(pred, batch)
        return
    k1, k2 = cfg.tbptt
    T = batch.x.shape[0]
    states: dict[int, Any] = {0: None}
    ends = [*range(k1, T, k1), T]
    for e in ends:
        s = max(b for b in states if b <= max(0, e - k2))
        output, state = model.core(batch.x[s:e], states[s])
        states[e] = _detach(state)
        if model.every_step:
            w = min(k1, e - s)
            window = Batch(
                batch.x[e - w : e], batch.y[e - w : e], None if batch.mask is None else batch.mask[e - w : e]
            )
            if window.mask is not None and not bool(window.mask.any()):
                continue
            yield task.loss(model.readout(output[-w:]), window)
        elif e == T:
            yield task.loss(model.readout(output[-1]), batch)


class RunFinished(Exception):
    """`resume` of a run that already ended: nothing is trained and nothing is written."""

    def __init__(self, out: Path, summary: dict[str, Any]) -> None:
        self.summary = summary
        super().__init__(
            f"the run in {out} already ended at step {summary.get('steps')} ({summary.get('stopped')}); "
            "--resume changes nothing (start it afresh without --resume, or in another --out)"
        )


@dataclass
class Progress:
    """Where a run is: restored from a checkpoint on resume, saved with every checkpoint."""

    step: int = 0
    wall_s: float = 0.0
    counters: dict[str, int] = field(default_factory=lambda: {"clipped": 0, "skipped": 0, "rolled_back": 0})
    last_eval: dict[str, float] | None = None


def _start(
    cfg: TrainConfig,
    out: Path,
    resume: bool,
    model: SequenceModel,
    opt: torch.optim.Optimizer,
    guard: Guard,
    data: torch.Generator,
) -> Progress:
    """Restore the last checkpoint (resume) or clear what a previous run left in `out`."""
    state = checkpoint.load(out) if resume else None
    if state is None:
        if resume:
            warnings.warn(f"no checkpoint in {out} yet: starting from step 0", stacklevel=3)
        for name in (checkpoint.LATEST, checkpoint.PREVIOUS, "summary.json", "nonfinite.json"):
            (out / name).unlink(missing_ok=True)
        logs.cut_snapshots(out, None)
        return Progress()
    if state["config"] != asdict(cfg):
        changed = sorted(
            k for k in {*state["config"], *asdict(cfg)} if state["config"].get(k) != asdict(cfg).get(k)
        )
        raise InputError(
            f"--resume needs the settings of the interrupted run; these differ: {', '.join(changed)}"
        )
    if state["finished"]:
        raise RunFinished(
            out, load_summary(out) if (out / "summary.json").exists() else {"steps": state["step"]}
        )
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    data.set_state(state["data_rng"])
    torch.set_rng_state(state["torch_rng"])
    guard.undo = state["undo"]
    logs.cut_snapshots(out, state["step"])
    return Progress(state["step"], state["wall_s"], dict(state["counters"]), state["last_eval"])


def _save(
    out: Path,
    cfg: TrainConfig,
    model: SequenceModel,
    opt: torch.optim.Optimizer,
    guard: Guard,
    data: torch.Generator,
    run: Progress,
    finished: bool = False,
) -> None:
    checkpoint.save(
        out,
        {
            "format": checkpoint.FORMAT,
            "config": asdict(cfg),
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "data_rng": data.get_state(),
            "torch_rng": torch.get_rng_state(),
            "step": run.step,
            "wall_s": float(run.wall_s),
            "counters": dict(run.counters),
            "last_eval": run.last_eval,
            "finished": finished,
            "undo": guard.undo,
        },
    )


def _write_config(cfg: TrainConfig, out: Path, task: Task, model: SequenceModel) -> None:
    _io.write_json(
        out / "config.json",
        {
            "train": asdict(cfg),
            "task": task.describe(),
            "model": {
                "parameters": sum(p.numel() for p in model.parameters()),
                "core": type(model.core).__module__ + "." + type(model.core).__name__,
            },
            "versions": {"bptt": __version__, "torch": torch.__version__},
            "engine": native.engine(),
        },
    )


def _evaluate(task: Task, model: SequenceModel) -> dict[str, float]:
    model.eval()
    metrics = task.evaluate(lambda x: model(x)[0])
    model.train()
    return metrics


def _row(
    step: int, outcome: Outcome, lr: float, wall_s: float, last_eval: dict[str, float] | None
) -> dict[str, Any]:
    """The metrics.csv row of a step (a step with no applied update has loss and norm NaN)."""
    return {
        "step": step,
        "loss": sum(outcome.losses) / len(outcome.losses) if outcome.losses else float("nan"),
        "grad_norm": max(outcome.norms) if outcome.norms else float("nan"),
        "clipped": int(outcome.clipped),
        "skipped": int(outcome.skipped),
        "rolled_back": int(outcome.rolled_back is not None),
        "lr": lr,
        "wall_s": wall_s,
        "test_loss": last_eval["loss"] if last_eval else "",
        "test_error_rate": last_eval["error_rate"] if last_eval else "",
    }


def train(
    cfg: TrainConfig,
    out: str | Path,
    resume: bool = False,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train as `cfg` says, writing the run to `out`; returns the summary (also in summary.json).

    `progress` is called with every logged row. An interrupted run (Ctrl-C, a crash, a kill) resumes
    from its last checkpoint with `resume=True`, to the same numbers and the same log rows as an
    uninterrupted run; with no checkpoint yet it starts from step 0, and a run that already ended
    raises `RunFinished` and changes nothing. With the `stop` policy a non-finite gradient ends the
    run: summary.json says so and `NonFiniteGradient` is raised with the guard's report.
    """
    cfg = cfg.validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint.clean(out)
    task, model = build(cfg)
    opt = make_optimizer(cfg, list(model.parameters()))
    guard = Guard(model, opt, cfg.clip, cfg.clip_threshold)
    data = torch.Generator().manual_seed(cfg.seed + 1)  # the training stream
    run = _start(cfg, out, resume, model, opt, guard, data)
    if run.step == 0:
        _write_config(cfg, out, task, model)
    metrics = logs.MetricsLog(out / "metrics.csv", keep_before=run.step)
    monitor = (
        Monitor(model, cfg.monitor_every, out, tensorboard=False, start=run.step)
        if cfg.monitor_every
        else None
    )
    batches = task.batches(cfg.batch_size, data)
    solved_early, t0 = False, time.perf_counter()

    def clock() -> float:
        return run.wall_s + time.perf_counter() - t0

    try:
        for step in range(run.step, cfg.steps):
            batch = next(batches)

            def traced_loss(o: Tensor, s: Any, b: Batch = batch) -> Tensor:  # the loss as a trace sees it
                return task.loss(model.head(o), b)

            def where(b: Batch = batch) -> dict[str, Any]:
                return locate(model.core, b.x, traced_loss, model.head)

            # every monitor_every-th step is watched: its diagnostics come from this very step
            with monitor.step() if monitor is not None else contextlib.nullcontext(Skipped()) as watched:
                outcome = guard.step(step, _first_loss_to(watched, _losses(cfg, task, model, batch)), where)
            if outcome.report is not None:  # the guard fired: this update is never applied
                report = {**outcome.report, "policy": cfg.nonfinite}
                _io.write_json(out / "nonfinite.json", report)
                run.counters["rolled_back"] += int(outcome.rolled_back is not None)
                if cfg.nonfinite == "stop":
                    run.step = step
                    raise NonFiniteGradient(report)
                run.counters["skipped"] += 1
            run.counters["clipped"] += int(outcome.clipped)
            done = step + 1
            evaluated = done % cfg.eval_every == 0 or done == cfg.steps
            if evaluated:
                run.last_eval = _evaluate(task, model)
            if done % cfg.log_every == 0 or evaluated or step == 0:
                row = _row(
                    step, outcome, opt.param_groups[0]["lr"], clock(), run.last_eval if evaluated else None
                )
                metrics.write(row)
                if progress is not None:
                    progress(row)
            run.step = done
            if done % cfg.checkpoint_every == 0:
                run.wall_s, t0 = clock(), time.perf_counter()
                _save(out, cfg, model, opt, guard, data, run)
            if evaluated and cfg.early_stop and run.last_eval and run.last_eval["solved"]:
                solved_early = done < cfg.steps
                break
    except NonFiniteGradient:
        run.wall_s, t0 = clock(), time.perf_counter()
        summary = _summary(
            cfg, task, run.step, run.last_eval, False, run.counters, run.wall_s, stopped="nonfinite"
        )
        _io.write_json(out / "summary.json", summary)
        _save(out, cfg, model, opt, guard, data, run, finished=True)
        raise
    finally:
        metrics.close()
        if monitor is not None:
            monitor.close()
    run.wall_s = clock()
    fresh = run.last_eval is not None and (run.step == cfg.steps or solved_early)
    final = run.last_eval if fresh else _evaluate(task, model)
    summary = _summary(cfg, task, run.step, final, solved_early, run.counters, run.wall_s)
    if cfg.final_diagnostics:
        _io.write_json(out / "final_diagnostics.json", final_diagnostics(cfg, task, model))
    _io.write_json(out / "summary.json", summary)
    _save(out, cfg, model, opt, guard, data, run, finished=True)
    return summary


def final_diagnostics(cfg: TrainConfig, task: Task, model: SequenceModel, samples: int = 4) -> dict[str, Any]:
    """Every diagnostic of the trained model on `samples` held-out sequences, traced with the task's loss.

    The trace runs on a float64 copy: a vanished gradient (e^−100 at distance 100 is common) stays
    measurable there, where float32 would read 0.
    """
    import copy

    from ..diagnostics.summary import summarize
    from ..trace import trace

    length_task = (
        task
        if cfg.final_seq_len is None
        else make_task(cfg.task, cfg.protocol, cfg.final_seq_len, **cfg.task_options)
    )
    b = next(length_task.batches(samples, torch.Generator().manual_seed(task.test_seed + 2)))
    batch = Batch(b.x.double(), b.y.double() if b.y.is_floating_point() else b.y, b.mask)
    batch.__dict__.update(
        {k: v for k, v in b.__dict__.items() if k not in ("x", "y", "mask")}
    )  # e.g. Reber's legal sets
    m64 = copy.deepcopy(model).double().eval()
    return summarize(
        trace(m64.core, batch.x, lambda o, s: task.loss(m64.head(o), batch)), samples=samples, full=True
    )


def cell_label(cfg: TrainConfig) -> str:
    """The cell with its options as the registry declares them: "rnn (tanh)", "lstm (cifg)", "gru"."""
    spec = registry.get(cfg.cell)
    options = spec.check_options({"variant": cfg.variant, "nonlinearity": cfg.nonlinearity})
    return f"{cfg.cell} ({', '.join(options.values())})" if options else cfg.cell


def _summary(
    cfg: TrainConfig,
    task: Task,
    steps: int,
    final: dict[str, float] | None,
    stopped_early: bool,
    counters: dict[str, int],
    wall: float,
    stopped: str | None = None,
) -> dict[str, Any]:
    final = final or {"loss": None, "error_rate": None, "solved": 0.0}  # type: ignore[dict-item]
    return {
        "task": task.name,
        "protocol": task.protocol,
        "cell": cell_label(cfg),
        "seq_len": task.seq_len,
        "steps": steps,
        "test_loss": final["loss"],
        "baseline_loss": task.baseline_loss,
        "test_error_rate": final["error_rate"],
        "solved": bool(final["solved"]),
        "success": task.success,
        "stopped_early": stopped_early,
        "stopped": stopped or ("solved" if stopped_early else "steps"),
        "clipped_steps": counters["clipped"],
        "skipped_steps": counters["skipped"],
        "rolled_back_updates": counters.get("rolled_back", 0),
        "max_skipped": cfg.max_skipped,
        "too_many_skipped": counters["skipped"] > cfg.max_skipped * max(steps, 1),
        "wall_s": wall,
    }


def load_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """metrics.csv as rows of numbers (empty cells as None)."""
    text = (Path(run_dir) / "metrics.csv").read_text()
    rows = []
    for r in csv.DictReader(io.StringIO(text)):
        rows.append({k: (float(v) if v not in ("", None) else None) for k, v in r.items()})
    return rows


def load_summary(run_dir: str | Path) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads((Path(run_dir) / "summary.json").read_text())
    return summary
