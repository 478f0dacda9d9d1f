"""Checkpoints that survive faults: plain data only, the last two kept, a torn one never trusted.

A checkpoint is a dict of tensors and plain Python data (numbers, strings, lists, dicts), read back
with `torch.load(weights_only=True)`: no code runs from the file. `save` writes the new one to a
temporary file, then moves the current `checkpoint.pt` to `checkpoint.prev.pt` and the new one into
its place, so that a kill at any moment leaves at least one complete checkpoint. `load` reads the
latest and falls back to the previous one, with a warning, when the latest is missing, torn or not
a checkpoint. Temporary files of a killed write are removed by `clean`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from .. import _io

LATEST = "checkpoint.pt"
PREVIOUS = "checkpoint.prev.pt"
FORMAT = 2

#: what every checkpoint holds, with the type of each entry
FIELDS: dict[str, type | tuple[type, ...]] = {
    "format": int,
    "config": dict,
    "model": dict,
    "optimizer": dict,
    "data_rng": torch.Tensor,
    "torch_rng": torch.Tensor,
    "step": int,
    "wall_s": float,
    "counters": dict,
    "last_eval": (dict, type(None)),
    "finished": bool,
    "undo": (dict, type(None)),
}


class CheckpointError(ValueError):
    """A file that is not a readable checkpoint: what it is and why."""


def clean(out: Path) -> list[Path]:
    """Remove the temporary files a killed write left in `out`; returns what was removed."""
    removed = []
    for p in _io.leftovers(out, (LATEST, PREVIOUS, "metrics.csv", "summary.json", "config.json")):
        with contextlib.suppress(OSError):
            p.unlink()
            removed.append(p)
    for p in (out / "diagnostics").glob(".step_*.json.*.tmp") if (out / "diagnostics").is_dir() else ():
        with contextlib.suppress(OSError):
            p.unlink()
            removed.append(p)
    return removed


def save(out: Path, state: dict[str, Any]) -> None:
    """Write `state` as the latest checkpoint in `out`, keeping the one before as the previous."""
    missing = sorted(set(FIELDS) - set(state))
    if missing:
        raise ValueError(f"a checkpoint needs {', '.join(missing)}")
    fd, tmp = tempfile.mkstemp(prefix=f".{LATEST}.", suffix=_io.TMP_SUFFIX, dir=out)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        if (out / LATEST).exists():
            os.replace(out / LATEST, out / PREVIOUS)
        os.replace(tmp, out / LATEST)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read(path: Path) -> dict[str, Any]:
    """One checkpoint file, checked; `CheckpointError` says what is wrong with it."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torn, truncated, foreign or pickled code: never trusted
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path} is not a readable checkpoint ({first})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a bptt checkpoint")
    for name, kind in FIELDS.items():
        if not isinstance(state.get(name), kind) or (kind is int and isinstance(state.get(name), bool)):
            got = type(state[name]).__name__ if name in state else "nothing"
            raise CheckpointError(f"{path} is not a bptt checkpoint: expected {name!r} in it, got {got}")
    if state["format"] != FORMAT:
        raise CheckpointError(f"{path} has checkpoint format {state['format']}, expected {FORMAT}")
    return state


def load(out: Path) -> dict[str, Any] | None:
    """The latest good checkpoint in `out`, the previous one if the latest is bad, or None if there is none.

    A bad latest checkpoint with a good previous one gives a warning; both bad raise `CheckpointError`.
    """
    latest, previous = out / LATEST, out / PREVIOUS
    if not latest.exists() and not previous.exists():
        return None
    try:
        if latest.exists():
            return read(latest)
        problem = f"{latest} is missing"
    except CheckpointError as err:
        problem = str(err)
    if not previous.exists():
        raise CheckpointError(
            f"{problem}, and there is no earlier checkpoint {previous.name} to fall back on"
        )
    state = read(previous)
    warnings.warn(
        f"{problem}; resuming from the one before, {previous.name} (step {state['step']})", stacklevel=2
    )
    return state
