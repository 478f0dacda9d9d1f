"""Every diagnostic of a model with a readout, traced on a task's held-out sequences with its loss.

`bptt train` writes this record at the end of a run, and `bptt diagnose` writes it for a training
checkpoint. The trace runs on a float64 copy of the model: a vanished gradient (e^−100 at distance
100 is common) stays measurable there, where float32 would read 0.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Protocol, cast

import torch
from torch import Tensor, nn

from .._checks import InputTypeError
from ..diagnostics.summary import Summary, summarize
from ..trace import trace
from .base import Task


class Readout(Protocol):
    """A recurrent `core` and a `head` that turns its output into predictions (`training.SequenceModel`)."""

    core: nn.Module

    def head(self, output: Tensor) -> Tensor: ...


def held_out_diagnostics(model: nn.Module, task: Task, samples: int = 4, seed: int | None = None) -> Summary:
    """`summarize(..., full=True)` of `model`'s core traced on `samples` held-out sequences of `task`.

    The sequences come from `seed` (default: the task's test seed + 2, apart from the test set);
    the loss is `task.loss(model.head(output), batch)`.
    """
    m64 = copy.deepcopy(model).double().eval()
    # not isinstance(m64, Readout): a runtime Protocol reads attributes statically from Python 3.12 on,
    # and misses the submodules nn.Module keeps in _modules
    if not (isinstance(getattr(m64, "core", None), nn.Module) and callable(getattr(m64, "head", None))):
        raise InputTypeError(f"expected a model with a recurrent core and a head, got {type(model).__name__}")
    readout = cast(Readout, m64)
    g = torch.Generator().manual_seed(task.test_seed + 2 if seed is None else seed)
    b = next(task.batches(samples, g))
    batch = dataclasses.replace(b, x=b.x.double(), y=b.y.double() if b.y.is_floating_point() else b.y)
    return summarize(
        trace(readout.core, batch.x, lambda o, s: task.loss(readout.head(o), batch)),
        samples=samples,
        full=True,
    )
