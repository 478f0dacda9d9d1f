"""`bptt train`: a cell on a long-range task, with clipping, the non-finite guard and diagnostics."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import args as a
from .base import Command, UsageError, config_from_args, console, given, memory_errors, step_bar

if TYPE_CHECKING:
    from ..cells.registry import CellSpec
    from ..training.trainer import TrainConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..cells import registry
    from ..tasks import TASKS
    from ..training.defaults import SOLVING
    from ..training.init import INITS
    from ..training.model import CORES
    from ..training.trainer import CLIPS, OPTIMIZERS, TrainConfig

    d = TrainConfig()
    tuned = SOLVING  # the command line's defaults: a recipe that solves the tasks (bptt.training.defaults)
    S = argparse.SUPPRESS  # absent unless given: TrainConfig's default stands, and we can tell what was given
    g = p.add_argument_group("task")
    g.add_argument("--task", default=S, choices=list(TASKS), help=f"the long-range task (default: {d.task})")
    g.add_argument(
        "--protocol",
        type=a.text,
        default=S,
        help="the task's protocol, e.g. le, hs97, pascanu for adding (default: the task's first)",
    )
    g.add_argument(
        "--seq-len", type=a.count(1), default=S, help="sequence length T (default: the task's, 100 for most)"
    )
    g.add_argument(
        "--symbols",
        type=int,
        choices=(2, 3),
        default=S,
        help="temporal order only: 2 or 3 relevant symbols (default 2)",
    )
    g.add_argument(
        "--test-size", type=a.count(1), default=S, help=f"held-out test sequences (default: {d.test_size})"
    )
    g = p.add_argument_group("model")
    g.add_argument("--cell", default=S, choices=registry.names(), help=f"recurrent cell (default: {d.cell})")
    g.add_argument(
        "--variant",
        default=S,
        choices=registry.option_choices("variant"),
        help=f"the cell's variant, {registry.option_help('variant')} (default: {d.variant})",
    )
    g.add_argument(
        "--nonlinearity",
        default=S,
        choices=registry.option_choices("nonlinearity"),
        help=f"the cell's nonlinearity, {registry.option_help('nonlinearity')} (default: {d.nonlinearity})",
    )
    g.add_argument(
        "--hidden-size", type=a.count(1), default=S, help=f"hidden units (default: {tuned['hidden_size']})"
    )
    g.add_argument("--num-layers", type=a.count(1), default=S, help="stacked layers (default: 1)")
    g.add_argument(
        "--core",
        default=S,
        choices=CORES,
        help="bptt's explicit engine or torch.nn's fused module (default: bptt)",
    )
    g = p.add_argument_group("initialisation")
    g.add_argument("--init", default=S, choices=INITS, help="recurrent initialisation (default: PyTorch's)")
    g.add_argument(
        "--init-scale",
        type=a.real(0, lo_open=True),
        default=S,
        help="multiply W_hh by this after initialising (default: 1)",
    )
    g.add_argument(
        "--forget-bias",
        type=a.real(),
        default=S,
        help="LSTM only: forget-gate bias, in b_ih only (default: 1 for variants with a forget gate, unless --chrono)",
    )
    g.add_argument("--input-bias", type=a.real(), default=S, help="LSTM only: input-gate bias, in b_ih only")
    g.add_argument(
        "--chrono",
        type=a.count(2),
        default=S,
        metavar="T_MAX",
        help="LSTM only: chrono initialisation of the gate biases for lags up to T_MAX",
    )
    g = p.add_argument_group("optimisation")
    g.add_argument("--optimizer", default=S, choices=OPTIMIZERS, help=f"(default: {d.optimizer})")
    g.add_argument(
        "--lr", type=a.real(0, lo_open=True), default=S, help=f"learning rate (default: {tuned['lr']})"
    )
    g.add_argument(
        "--momentum",
        type=a.real(0, 1, hi_open=True),
        default=S,
        help="SGD and RMSprop only: momentum in [0, 1) (default: 0.9 for SGD, 0 for RMSprop)",
    )
    g.add_argument(
        "--batch-size",
        type=a.count(1),
        default=S,
        help=f"sequences per step (default: {tuned['batch_size']})",
    )
    g.add_argument(
        "--steps",
        type=a.count(1),
        default=S,
        help=f"training steps; the run stops early once the task is solved (default: {tuned['steps']})",
    )
    g.add_argument(
        "--clip",
        default=S,
        choices=CLIPS,
        help=f"gradient clipping: one norm over all parameters, or elementwise (default: {tuned['clip']})",
    )
    g.add_argument(
        "--clip-threshold",
        type=a.real(0, lo_open=True),
        default=S,
        help=f"with --clip norm or value: the norm threshold or the value bound (default: {tuned['clip_threshold']})",
    )
    g.add_argument(
        "--nonfinite",
        default=S,
        choices=("stop", "skip"),
        help="on a non-finite gradient: stop with a report, or skip the step (default: stop)",
    )
    g.add_argument(
        "--max-skipped",
        type=a.real(0, 1),
        default=S,
        help=f"with --nonfinite skip: the share of steps that may be skipped before the run fails (default: {d.max_skipped})",
    )
    g.add_argument(
        "--tbptt",
        type=a.pair(1),
        default=S,
        metavar="K1,K2",
        help="truncated BPTT: every K1 steps, backpropagate through the last K2",
    )
    g.add_argument(
        "--no-early-stop",
        dest="early_stop",
        action="store_false",
        default=S,
        help="keep training after the task's criterion is met",
    )
    g = p.add_argument_group("run")
    g.add_argument(
        "--seed",
        type=a.count(0, a.SEED_MAX),
        default=S,
        help=f"seed of the weights and the training stream (default: {d.seed})",
    )
    g.add_argument(
        "--out", type=a.out_dir, default=None, help="run directory (default: runs/TASK-CELL-seedN)"
    )
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    g.add_argument(
        "--log-every", type=a.count(1), default=S, help=f"metrics row every N steps (default: {d.log_every})"
    )
    g.add_argument(
        "--eval-every",
        type=a.count(1),
        default=S,
        help=f"test-set evaluation every N steps (default: {d.eval_every})",
    )
    g.add_argument(
        "--monitor-every",
        type=a.count(0),
        default=S,
        help="diagnostics snapshot every N steps (default: 0, off)",
    )
    g.add_argument(
        "--checkpoint-every",
        type=a.count(1),
        default=S,
        help=f"checkpoint every N steps (default: {d.checkpoint_every})",
    )
    g.add_argument(
        "--dry-run", action="store_true", help="two steps at tiny sizes, to check that everything runs"
    )


def _cells_with(has: Callable[[CellSpec], bool]) -> str:
    from ..cells import registry

    return "--cell " + " or ".join(s.name for s in registry.specs() if has(s))


def not_applying(dest: str, cfg: TrainConfig) -> str | None:
    """What a flag given for settings it does not apply to needs (`--cell rnn`), or None where it applies."""
    from ..cells import registry

    spec = registry.get(cfg.cell)
    if dest in ("nonlinearity", "variant") and dest not in spec.options:
        return _cells_with(lambda s: dest in s.options)
    roles = {"forget_bias": ("forget",), "input_bias": ("input",), "chrono": ("forget", "input")}
    if dest in roles and not all(r in spec.roles for r in roles[dest]):
        return _cells_with(lambda s: all(r in s.roles for r in roles[dest]))
    settings = {
        "symbols": ("--task temporal_order", cfg.task == "temporal_order"),
        "momentum": ("--optimizer sgd or rmsprop", cfg.optimizer in ("sgd", "rmsprop")),
        "clip_threshold": ("--clip norm or value", cfg.clip != "none"),
        "max_skipped": ("--nonfinite skip", cfg.nonfinite == "skip"),
    }
    if dest in settings and not settings[dest][1]:
        return settings[dest][0]
    return None


FLAGS_THAT_DEPEND = (
    "symbols", "nonlinearity", "variant", "forget_bias", "input_bias", "chrono", "momentum", "clip_threshold",
    "max_skipped",
)  # fmt: skip


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig that the train flags describe (--dry-run shrinks it).

    A flag given for settings it does not apply to (`--nonlinearity` with an LSTM) is an error.
    """
    from ..training.defaults import cli_defaults
    from ..training.trainer import TrainConfig

    options = {"symbols": args.symbols} if given(args, "symbols") else {}
    d = TrainConfig()
    solving = cli_defaults(
        getattr(args, "cell", d.cell), getattr(args, "variant", d.variant), given(args, "chrono")
    )
    tuned = {k: v for k, v in solving.items() if not given(args, k)}  # what a flag says wins
    cfg = config_from_args(TrainConfig, args, task_options=options, **tuned)
    for dest in FLAGS_THAT_DEPEND:
        needs = not_applying(dest, cfg) if given(args, dest) else None
        if needs is not None:
            flag = "--" + dest.replace("_", "-")
            raise UsageError(f"{flag} applies only with {needs}; drop it or change the settings")
    if args.dry_run:
        small = None if cfg.task in ("reber", "digits") else min(cfg.seq_len or 10, 10)
        cfg = dataclasses.replace(
            cfg,
            seq_len=small,
            hidden_size=8,
            batch_size=4,
            steps=2,
            test_size=16,
            log_every=1,
            eval_every=2,
            checkpoint_every=2,
            monitor_every=1,
        )
    return cfg


def run(args: argparse.Namespace) -> int:
    from ..training import NonFiniteGradient, train
    from ..training.trainer import RunFinished

    cfg = train_config(args).validate()
    check_memory(cfg)
    out_dir = args.out or f"runs/{cfg.task}-{cfg.cell}-seed{cfg.seed}"
    out = console()
    with step_bar(out) as bar:
        job = bar.add_task(f"{cfg.task} · {cfg.cell}", total=cfg.steps, info="")

        def show(row: dict[str, Any]) -> None:
            info = f"loss {row['loss']:.4g}  ‖g‖ {row['grad_norm']:.3g}" + (
                "  clipped" if row["clipped"] else ""
            )
            if row["skipped"]:
                info += "  skipped"
            if row["test_loss"] != "":
                info += f"  test {row['test_loss']:.4g}"
            bar.update(job, completed=row["step"] + 1, info=info)

        sizes = (
            f"--hidden-size {cfg.hidden_size}, --num-layers {cfg.num_layers}, --batch-size {cfg.batch_size}, "
            f"--seq-len {cfg.seq_len or 'the task default'} and --test-size {cfg.test_size}"
        )
        try:
            with memory_errors(sizes):
                summary = train(cfg, out_dir, resume=args.resume, progress=show)
        except NonFiniteGradient as err:
            out.print(f"[red]stopped:[/] {err}  (report in {out_dir}/nonfinite.json)")
            return 1
        except RunFinished as done:
            out.print(str(done))
            return 0
    verdict = "[green]solved[/]" if summary["solved"] else "not solved"
    test_loss = "–" if summary["test_loss"] is None else f"{summary['test_loss']:.4g}"
    skipped = summary["skipped_steps"]
    out.print(
        f"{summary['task']} ({summary['protocol']}), {summary['cell']}, T = {summary['seq_len']}: test loss "
        f"{test_loss} against chance {summary['baseline_loss']:.4g} after {summary['steps']} steps — "
        f"{verdict} ({summary['success']}); {skipped} steps skipped; {summary['wall_s']:.1f} s; run in {out_dir}"
    )
    if summary["too_many_skipped"]:
        out.print(
            f"[red]failed:[/] {skipped} of {summary['steps']} steps were skipped for non-finite gradients, "
            f"more than the {cfg.max_skipped:.0%} allowed (--max-skipped); see {out_dir}/nonfinite.json"
        )
        return 1
    return 0


def check_memory(cfg: TrainConfig) -> None:
    """An error naming the size flags when the run cannot fit in this machine's memory at all."""
    from ..training.memory import estimate, physical

    need, have = estimate(cfg), physical()
    if have is not None and need > have:
        raise UsageError(
            f"--hidden-size {cfg.hidden_size}, --num-layers {cfg.num_layers}, --batch-size {cfg.batch_size} "
            f"and --seq-len {cfg.seq_len or 'the task default'} need about {need / 2**30:.3g} GiB, "
            f"more than this machine's {have / 2**30:.3g} GiB"
        )


COMMAND = Command(
    "train",
    "train a cell on a long-range task, with clipping, the non-finite guard and diagnostics",
    "bptt train --task adding --cell lstm --seq-len 100 --steps 2000 --seed 0 --out runs/adding-lstm",
    add_arguments,
    run,
)
