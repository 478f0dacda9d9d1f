"""`bptt diagnose`: the report of a model someone already trained.

The model is one of
* a saved `torch.nn.RNN/LSTM/GRU` state dict (`torch.save(model.state_dict(), path)`): the
  architecture is read off the parameter names and shapes (layers, directions, bias, proj_size;
  an Elman RNN's nonlinearity and an LSTM variant cannot be, and come from the flags);
* a whole saved module (`torch.save(model, path)`);
* a bptt training checkpoint (`checkpoint.pt`, or its run directory), with its readout and task.

The inputs are a task's held-out sequences or a tensor file (T, B, I) (or a dict with "x"). The
loss is the task's through the readout where a checkpoint has one; otherwise a fixed random unit
direction r of the last output, L = Σ_b r · out_{T−1, b}, so that ∂L/∂h_{T−1} = r is the same
for every model and the diagnostics show what the recurrence alone does to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from . import _io
from ._checks import InputError
from .cells import GRU, LSTM, RNN, RecurrentBase
from .convert import TORCH_RECURRENT, from_torch
from .diagnostics.summary import summarize
from .trace import trace

LOSSES = ("auto", "task", "random")


@dataclass
class Subject:
    """What is diagnosed: the recurrent module, and for a checkpoint its whole model, settings and task."""

    core: nn.Module
    description: dict[str, Any]
    model: Any = None  # training.SequenceModel
    cfg: Any = None  # training.TrainConfig
    task: Any = None


def infer_from_state_dict(
    sd: dict[str, Tensor], nonlinearity: str = "tanh", variant: str = "vanilla"
) -> RecurrentBase:
    """The bptt module a torch.nn recurrent state dict belongs to, with the weights loaded."""
    names = [k for k in sd if re.fullmatch(r"weight_ih_l\d+", k)]
    if "weight_ih_l0" not in sd or "weight_hh_l0" not in sd:
        shown = ", ".join(list(sd)[:6])
        raise InputError(
            f"expected the state dict of a torch.nn.RNN, LSTM or GRU (keys weight_ih_l0, weight_hh_l0, …), got keys {shown}"
        )
    layers = 1 + max(int(k.split("_l")[-1]) for k in names)
    bidirectional = any(k.endswith("_reverse") for k in sd)
    bias = "bias_ih_l0" in sd
    proj = sd["weight_hr_l0"].shape[0] if "weight_hr_l0" in sd else 0
    H = sd["weight_hr_l0"].shape[1] if proj else sd["weight_hh_l0"].shape[1]
    G, I = sd["weight_ih_l0"].shape[0] // H, sd["weight_ih_l0"].shape[1]
    kw = dict(num_layers=layers, bias=bias, bidirectional=bidirectional, dtype=sd["weight_ih_l0"].dtype)
    if G == 1:
        model: RecurrentBase = RNN(I, H, nonlinearity=nonlinearity, **kw)
    elif G == 3 and variant == "vanilla":
        model = GRU(I, H, **kw)
    else:
        model = LSTM(I, H, proj_size=proj, variant=variant, **kw)
    try:
        model.load_state_dict(sd)
    except RuntimeError as err:
        raise InputError(
            f"the state dict does not fit a {type(model).__name__}({I}, {H}) with variant {variant!r}: {err}"
        ) from None
    return model


def load_subject(path: str | Path, nonlinearity: str = "tanh", variant: str = "vanilla") -> Subject:
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.exists():
        raise FileNotFoundError(f"no model file at {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # a corrupt or foreign file is the user's to fix
        raise InputError(f"cannot read {path} as a saved model: {err}") from None
    if isinstance(obj, dict) and "config" in obj and "model" in obj:
        from .training.trainer import TrainConfig, build

        cfg = TrainConfig(
            **{
                **obj["config"],
                "tbptt": tuple(obj["config"]["tbptt"]) if obj["config"].get("tbptt") else None,
            }
        )
        task, model = build(cfg)
        model.load_state_dict(obj["model"])
        model.eval()
        desc = {"source": "bptt checkpoint", "path": str(path), "train": obj["config"], "step": obj["step"]}
        return Subject(model.core, desc, model, cfg, task)
    if isinstance(obj, (RecurrentBase, *TORCH_RECURRENT)):
        return Subject(
            obj.eval(),
            {"source": f"saved module {type(obj).__module__}.{type(obj).__name__}", "path": str(path)},
        )
    if isinstance(obj, dict) and all(isinstance(v, Tensor) for v in obj.values()):
        model = infer_from_state_dict(obj, nonlinearity, variant)
        desc = {
            "source": "state dict",
            "path": str(path),
            "inferred": f"{type(model).__name__}({model.extra_repr()})",
        }
        return Subject(model.eval(), desc)
    raise InputError(
        f"{path} holds a {type(obj).__name__}; expected a torch.nn RNN/LSTM/GRU, its state dict or a bptt checkpoint"
    )


def load_inputs(path: str | Path, batch_first: bool = False) -> Tensor:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no input file at {path}")
    obj = torch.load(path, map_location="cpu", weights_only=False)
    x = obj.get("x") if isinstance(obj, dict) else obj
    if not isinstance(x, Tensor) or x.dim() not in (2, 3):
        raise InputError(
            f"expected {path} to hold a tensor (T, B, features) or a dict with one under 'x', got {type(x).__name__}"
        )
    x = x.unsqueeze(1) if x.dim() == 2 else x
    return x.transpose(0, 1) if batch_first else x


def diagnose(
    model: str | Path,
    out: str | Path,
    task: str | None = None,
    protocol: str | None = None,
    seq_len: int | None = None,
    inputs: str | Path | None = None,
    samples: int = 4,
    loss: str = "auto",
    nonlinearity: str = "tanh",
    variant: str = "vanilla",
    batch_first: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """Trace the model on the inputs, write final_diagnostics.json, config.json and report.html to `out`."""
    from .reports import write_report
    from .tasks import make_task
    from .tasks.held_out import held_out_diagnostics

    subject = load_subject(model, nonlinearity, variant)
    core = subject.core
    core_m = core if isinstance(core, RecurrentBase) else from_torch(core)
    if loss == "auto":
        loss = "task" if subject.model is not None and inputs is None else "random"
    the_task = subject.task
    if loss == "task":
        if subject.model is None:
            raise InputError("--loss task needs a bptt checkpoint, which has a readout; this model has none")
        if inputs is not None:
            raise InputError("--loss task draws its sequences from the checkpoint's task; leave --inputs out")
        if task is not None and task != subject.cfg.task:
            raise InputError(f"this checkpoint's readout is for the {subject.cfg.task} task, not {task}")
        cfg = subject.cfg
        length_task = make_task(cfg.task, cfg.protocol, seq_len, **cfg.task_options) if seq_len else the_task
        record = held_out_diagnostics(subject.model, length_task, samples, seed=the_task.test_seed + 2)
        steps, sequences = record["steps"], record["batch"]
    else:
        if (task is None) == (inputs is None) and subject.task is None:
            raise InputError("expected exactly one source of inputs: --task NAME or --inputs FILE")
        if inputs is not None:
            x = load_inputs(inputs, batch_first)[:, :samples]
        else:
            the_task = make_task(task, protocol, seq_len) if task is not None else subject.task
            x = next(the_task.batches(samples, torch.Generator().manual_seed(the_task.test_seed + 2))).x
        if x.shape[-1] != core_m.input_size:
            raise InputError(
                f"the inputs have {x.shape[-1]} features but the model takes {core_m.input_size}"
            )
        x = x.to(next(core_m.parameters()).dtype)
        width = core_m.hidden_size if not core_m.proj_size else core_m.proj_size
        r = torch.randn(
            width * core_m.num_directions, generator=torch.Generator().manual_seed(seed), dtype=x.dtype
        )
        r = r / r.norm()

        def loss_fn(o: Tensor, s: Any) -> Tensor:
            return (o[-1] * r).sum()  # ∂L/∂h_{T−1} = r, the same unit direction for every model

        record = summarize(trace(core_m, x, loss_fn), samples=samples, full=True)
        steps, sequences = x.shape[0], x.shape[1]
    out = Path(out)
    config = {
        "train": {
            **subject.description,
            "loss": loss,
            "samples": sequences,
            "seq_len": steps,
            "task": task or (the_task.name if the_task else None),
            "inputs": str(inputs) if inputs else None,
        }
    }
    _io.write_json(out / "config.json", config)
    _io.write_json(out / "final_diagnostics.json", record)
    report = write_report([out], out / "report.html", title=f"bptt diagnose: {Path(model).name}")
    return {"record": record, "report": str(report), "config": config}
