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

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from . import _io
from ._checks import InputError
from ._records import to_json
from .cells import RecurrentBase, registry
from .convert import from_torch, torch_recurrent
from .diagnostics import progress
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
    kw: dict[str, Any] = dict(
        num_layers=layers, bias=bias, bidirectional=bidirectional, dtype=sd["weight_ih_l0"].dtype
    )
    spec = _state_dict_cell(G, nonlinearity, variant)
    options = spec.check_options({"nonlinearity": nonlinearity, "variant": variant})
    model = spec.module(I, H, **kw, **({"proj_size": proj} if proj else {}), **options)
    try:
        model.load_state_dict(sd)
    except RuntimeError as err:
        raise InputError(
            f"the state dict does not fit a {type(model).__name__}({I}, {H}) with variant {variant!r}: "
            + " ".join(str(err).split())
        ) from None
    return model


def _state_dict_cell(G: int, nonlinearity: str, variant: str) -> registry.CellSpec:
    """The registered cell with a torch.nn twin whose module with these options has G gate blocks.

    Where several fit (a GRU and a 3-gate LSTM variant), the one a non-default option names wins.
    """
    given = {"nonlinearity": nonlinearity, "variant": variant}
    fits = []
    for spec in registry.specs():
        if spec.torch_twin is None:
            continue
        options = {o: given[o] for o, choices in spec.options.items() if given.get(o) in choices}
        if len(spec.build(1, 1, 1, options).step.gate_names) == G:
            named = any(options[o] != spec.options[o][0] for o in options)
            fits.append((not named, spec))
    if not fits:
        raise InputError(
            f"expected a state dict of a cell in {', '.join(registry.names())} with these options, "
            f"got {G} gate blocks (nonlinearity {nonlinearity!r}, variant {variant!r})"
        )
    return min(fits, key=lambda f: f[0])[1]


def read_file(path: Path, trust_pickle: bool = False) -> Any:
    """A model file's contents: tensors and plain data only, unless `trust_pickle` (see `_io.torch_load`)."""
    return _io.torch_load(path, "a saved model or state dict", trust_pickle)


_DIRECT = re.compile(r"[^.]+")  # a parameter of the module itself, not of a submodule


def recurrent_prefixes(sd: dict[str, Tensor]) -> list[str]:
    """The prefixes ("" or "rnn.", "encoder.lstm.", …) under which a state dict holds recurrent weights.

    Example:
        >>> sd = {"embed.weight": 0, "rnn.weight_ih_l0": 0, "rnn.weight_hh_l0": 0, "head.weight": 0}
        >>> recurrent_prefixes(sd)
        ['rnn.']
    """
    return sorted(
        k[: -len("weight_ih_l0")]
        for k in sd
        if k.endswith("weight_ih_l0") and k[: -len("weight_ih_l0")] + "weight_hh_l0" in sd
    )


def _choose(names: list[str], module: str | None, path: Path) -> str:
    """The one recurrent module of a file, or the one `--module` names."""
    shown = ", ".join(n or "(the top level)" for n in names)
    if not names:
        raise InputError(
            f"{path} holds no torch.nn RNN/LSTM/GRU weights (no keys ending in weight_ih_l0 and weight_hh_l0)"
        )
    if module is not None:
        if module not in names:
            raise InputError(f"--module {module!r} is not a recurrent module of {path}; it has {shown}")
        return module
    if len(names) > 1:
        raise InputError(f"{path} holds several recurrent modules: {shown}; choose one with --module NAME")
    return names[0]


def _state_dict_subject(
    sd: dict[str, Tensor],
    path: Path,
    source: str,
    nonlinearity: str | None,
    variant: str | None,
    module: str | None,
) -> Subject:
    prefixes = recurrent_prefixes(sd)
    name = _choose([p.removesuffix(".") for p in prefixes], module, path)
    prefix = name + "." if name else ""
    own = {
        k[len(prefix) :]: v
        for k, v in sd.items()
        if k.startswith(prefix) and _DIRECT.fullmatch(k[len(prefix) :])
    }
    model = infer_from_state_dict(own, nonlinearity or "tanh", variant or "vanilla")
    spec = registry.spec_of(model)
    for flag, option, value in (
        ("--nonlinearity", "nonlinearity", nonlinearity),
        ("--variant", "variant", variant),
    ):
        if value is not None and (spec is None or option not in spec.options):
            takes = " or ".join(s.name for s in registry.specs() if option in s.options)
            raise InputError(
                f"{flag} applies to state dicts of the {takes} cell; {path} holds a {type(model).__name__}'s"
            )
    desc = {"source": source, "path": str(path), "inferred": f"{type(model).__name__}({model.extra_repr()})"}
    if name:
        desc["module"] = name
    return Subject(model.eval(), desc)


def load_subject(
    path: str | Path,
    nonlinearity: str | None = None,
    variant: str | None = None,
    module: str | None = None,
    trust_pickle: bool = False,
) -> Subject:
    """What a model file holds, ready to diagnose; every file is read without running code from it.

    It may be a torch.nn RNN/LSTM/GRU state dict, a whole model's state dict (the recurrent weights
    are found under any prefix; `module` chooses among several), a Lightning-style checkpoint
    (`{"state_dict": …}`), a bptt checkpoint or run directory, or — only with `trust_pickle` — a
    whole saved module. `nonlinearity` and `variant` are for state dicts, whose weights do not tell them.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.exists():
        raise FileNotFoundError(f"no model file at {path}")
    obj = read_file(path, trust_pickle)
    if isinstance(obj, dict) and "config" in obj and "model" in obj:
        for flag, value in (("--nonlinearity", nonlinearity), ("--variant", variant), ("--module", module)):
            if value is not None:
                raise InputError(
                    f"{flag} does not apply to a bptt checkpoint, which records its own settings"
                )
        return _checkpoint_subject(obj, path)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        return _state_dict_subject(
            obj["state_dict"], path, "Lightning checkpoint", nonlinearity, variant, module
        )
    if isinstance(obj, dict) and obj and all(isinstance(v, Tensor) for v in obj.values()):
        return _state_dict_subject(obj, path, "state dict", nonlinearity, variant, module)
    if isinstance(obj, nn.Module):
        for flag, value in (("--nonlinearity", nonlinearity), ("--variant", variant)):
            if value is not None:
                raise InputError(f"{flag} is for a state dict; {path} holds a whole {type(obj).__name__}")
        found: dict[str, nn.Module] = {
            n: m
            for n, m in obj.named_modules()
            if isinstance(m, RecurrentBase) or isinstance(m, torch_recurrent())
        }
        name = _choose(sorted(found), module, path)
        chosen = found[name]
        desc = {
            "source": f"saved module {type(chosen).__module__}.{type(chosen).__name__}",
            "path": str(path),
        }
        if name:
            desc["module"] = name
        return Subject(chosen.eval(), desc)
    raise InputError(
        f"{path} holds a {type(obj).__name__}; expected a torch.nn RNN/LSTM/GRU, its state dict, a model's state dict, "
        "a Lightning checkpoint or a bptt checkpoint"
    )


def _checkpoint_subject(obj: dict[str, Any], path: Path) -> Subject:
    from .training.trainer import TrainConfig, build

    try:
        config = dict(obj["config"])
        if config.get("tbptt"):
            config["tbptt"] = tuple(config["tbptt"])
        cfg = TrainConfig(**config).validate()
        task, model = build(cfg)
        model.load_state_dict(obj["model"])
    except (TypeError, ValueError, KeyError, RuntimeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise InputError(
            f"{path} looks like a bptt checkpoint but does not fit this version of bptt: {first}"
        ) from None
    model.eval()
    desc = {"source": "bptt checkpoint", "path": str(path), "train": obj["config"], "step": obj.get("step")}
    return Subject(model.core, desc, model, cfg, task)


def _read_tensor_file(path: Path, what: str) -> Any:
    """`_io.torch_load` (weights_only) with a PackedSequence allowed: plain data, no code runs."""
    with torch.serialization.safe_globals([PackedSequence]):
        return _io.torch_load(path, what)


@dataclass
class Inputs:
    """Sequences to diagnose, time-major (T, B, features), and each one's own length where they differ."""

    x: Tensor
    lengths: Tensor | None = None


def read_inputs(path: str | Path, batch_first: bool = False) -> Inputs:
    """The input sequences of a file: a tensor (T, B, features); a dict with one under "x" and, for
    sequences of different lengths, their "lengths" (B,) or a "mask" (T, B) that is true up to each
    sequence's end; or a PackedSequence. No code runs from the file."""

    path = Path(path)
    obj = _read_tensor_file(path, "an input tensor file")
    x = obj.get("x") if isinstance(obj, dict) else obj
    lengths: Tensor | None = None
    if isinstance(x, PackedSequence):
        x, lengths = pad_packed_sequence(x)  # (T, B, features), in the order the sequences were given
        batch_first = False
    if not isinstance(x, Tensor) or x.dim() not in (2, 3) or x.numel() == 0:
        got = f"a {x.dim()}-d tensor of shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
        raise InputError(
            f"expected {path} to hold a non-empty tensor (T, B, features), a PackedSequence or a dict with one under 'x', got {got}"
        )
    if not x.is_floating_point():
        raise InputError(
            f"expected {path} to hold floating-point inputs, got {x.dtype} (token ids? embed them first)"
        )
    if not bool(torch.isfinite(x).all()):
        raise InputError(f"expected finite inputs in {path}; it holds NaN or infinite values")
    x = x.unsqueeze(1) if x.dim() == 2 else x
    x = x.transpose(0, 1) if batch_first else x
    T, B = x.shape[:2]
    if isinstance(obj, dict) and ("lengths" in obj or "mask" in obj):
        if "lengths" in obj and "mask" in obj:
            raise InputError(f"{path} holds both 'lengths' and 'mask'; give one")
        if "mask" in obj:
            mask = obj["mask"]
            if not isinstance(mask, Tensor) or mask.dim() != 2:
                raise InputError(
                    f"expected the 'mask' in {path} to be a 2-d tensor, got {type(mask).__name__}"
                )
            mask = (mask.transpose(0, 1) if batch_first else mask).bool()
            if tuple(mask.shape) != (T, B):
                raise InputError(
                    f"expected the 'mask' in {path} to have shape {(T, B)} like the inputs, got {tuple(mask.shape)}"
                )
            lengths = mask.sum(0)
            if not torch.equal(mask, torch.arange(T)[:, None] < lengths[None, :]):
                raise InputError(
                    f"expected the 'mask' in {path} to be true up to each sequence's end and false after it"
                )
        else:
            lengths = obj["lengths"]
            if not isinstance(lengths, Tensor) or lengths.dim() != 1 or lengths.is_floating_point():
                raise InputError(f"expected the 'lengths' in {path} to be a 1-d integer tensor (B,)")
            if lengths.numel() != B:
                raise InputError(f"expected {B} lengths in {path}, one per sequence, got {lengths.numel()}")
    if lengths is not None:
        lengths = lengths.long()
        if bool((lengths < 1).any()) or bool((lengths > T).any()):
            raise InputError(
                f"expected every length in {path} in [1, {T}], got {lengths.min().item()} to {lengths.max().item()}"
            )
    return Inputs(x, lengths)


def load_inputs(path: str | Path, batch_first: bool = False) -> Tensor:
    """The input sequences of a tensor file (T, B, features), or a dict holding one under "x"; no code runs."""
    return read_inputs(path, batch_first).x


def read_state(path: str | Path, has_cell: bool) -> Any:
    """An initial state file: h_0 as a tensor, or (h_0, c_0) as a tuple, list or dict with "h_0" and "c_0"."""
    path = Path(path)
    obj = _read_tensor_file(path, "hx")
    if isinstance(obj, dict):
        keys = [("h_0", "h0"), ("c_0", "c0")] if has_cell else [("h_0", "h0")]
        found = [next((obj[k] for k in names if k in obj), None) for names in keys]
        if any(v is None for v in found):
            raise InputError(
                f"expected {path} to hold {' and '.join(n for n, _ in keys)}, got keys {', '.join(map(str, obj))}"
            )
        obj = tuple(found) if has_cell else found[0]
    if has_cell:
        if not isinstance(obj, (tuple, list)) or len(obj) != 2 or not all(isinstance(v, Tensor) for v in obj):
            raise InputError(f"expected {path} to hold the LSTM's (h_0, c_0), got {type(obj).__name__}")
        return tuple(v.double() for v in obj)
    if not isinstance(obj, Tensor):
        raise InputError(f"expected {path} to hold a tensor h_0, got {type(obj).__name__}")
    return obj.double()


def diagnose(
    model: str | Path,
    out: str | Path,
    task: str | None = None,
    protocol: str | None = None,
    seq_len: int | None = None,
    inputs: str | Path | None = None,
    samples: int = 4,
    loss: str = "auto",
    nonlinearity: str | None = None,
    variant: str | None = None,
    batch_first: bool = False,
    seed: int = 0,
    module: str | None = None,
    trust_pickle: bool = False,
    hx: str | Path | None = None,
) -> dict[str, Any]:
    """Trace the model on the inputs, write final_diagnostics.json, config.json and report.html to `out`.

    `nonlinearity` and `variant` are for a state dict (tanh and vanilla when None), `module` chooses
    among several recurrent modules, and `trust_pickle` allows a whole pickled model (see `load_subject`).
    `hx` is a file with the initial state (see `read_state`). The trace runs on a float64 copy of
    the model, and the random loss direction is drawn in float64, so a model saved in float32 or
    in float64 gets the same diagnosis. Where the inputs carry lengths (or a mask, or are packed),
    the loss sits at each sequence's own last step and no step after it is counted.
    """
    from .reports import write_report
    from .tasks import make_task
    from .tasks.held_out import held_out_diagnostics

    if inputs is not None and seq_len is not None:
        raise InputError("--seq-len is for --task's sequences; the --inputs file sets its own length")
    if batch_first and inputs is None:
        raise InputError("--batch-first describes an --inputs file; there is none")
    if protocol is not None and task is None:
        raise InputError("--protocol is a task's protocol; give --task too")
    subject = load_subject(model, nonlinearity, variant, module, trust_pickle)
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
        steps, sequences = record.steps, record.batch
    else:
        if (task is None) == (inputs is None) and subject.task is None:
            raise InputError("expected exactly one source of inputs: --task NAME or --inputs FILE")
        lengths: Tensor | None = None
        if inputs is not None:
            given = read_inputs(inputs, batch_first)
            x = given.x[:, :samples]
            if given.lengths is not None:
                lengths = given.lengths[:samples]
                x = x[: int(lengths.max())]
        else:
            the_task = make_task(task, protocol, seq_len) if task is not None else subject.task
            x = next(the_task.batches(samples, torch.Generator().manual_seed(the_task.test_seed + 2))).x
        if x.shape[-1] != core_m.input_size:
            raise InputError(
                f"the inputs have {x.shape[-1]} features but the model takes {core_m.input_size}"
            )
        m64 = copy.deepcopy(core_m).double().eval()  # float64: a vanished gradient stays measurable
        m64.batch_first = False  # the inputs are time-major here
        x = x.double()
        state = None
        if hx is not None:
            state = read_state(hx, m64.step.has_cell)
            state = (
                tuple(s[:, : x.shape[1]] for s in state)
                if isinstance(state, tuple)
                else state[:, : x.shape[1]]
            )
        proj: int = getattr(m64, "proj_size", 0)
        width = proj or m64.hidden_size
        # drawn in float64 whatever the model's dtype: the same direction for a float32 or a float64 save
        r = torch.randn(
            width * m64.num_directions, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
        )
        r = r / r.norm()
        last = (lengths - 1) if lengths is not None else torch.full((x.shape[1],), x.shape[0] - 1)
        batch = torch.arange(x.shape[1])

        def loss_fn(o: Tensor | PackedSequence, s: Any) -> Tensor:
            if isinstance(o, PackedSequence):
                o = pad_packed_sequence(o)[0]  # (T, B, ·) in the sequences' own order
            loss: Tensor = (o[last, batch] * r).sum()
            return loss  # ∂L/∂h at each sequence's last step = r, the same unit direction for every model

        # sequences of their own lengths run packed: each one's steps end at its own end, and a reverse
        # direction starts there
        given_x = x if lengths is None else pack_padded_sequence(x, lengths, enforce_sorted=False)
        with progress.task("tracing", None):
            tr = trace(m64, given_x, loss_fn, state)
        record = summarize(tr, samples=samples, full=True)
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
            "hx": str(hx) if hx else None,
        }
    }
    _io.write_json(out / "config.json", config)
    _io.write_json(out / "final_diagnostics.json", to_json(record))
    with progress.task("drawing the report", None):
        report = write_report([out], out / "report.html", title=f"bptt diagnose: {Path(model).name}")
    return {"record": record, "report": str(report), "config": config}
