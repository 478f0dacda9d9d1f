"""One training step's updates, guarded: no non-finite gradient is applied, and an update that made
the model non-finite is rolled back.

For every loss of the batch (one, or truncated BPTT's windows) the gradient is checked before the
update; a non-finite one is never applied (see `guard`). After the update the parameters are
checked; and the next forward pass checks the hidden state and the readout. Either way, a finite
update that made the model non-finite — the 1e19 step that overflows the readout one step later —
is undone: the parameters and the optimiser go back to their state before it (`undo`, kept in
memory and in the checkpoint, so that a resumed run does the same).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .clip import clip_norm_, clip_value_, grad_norm
from .guard import first_nonfinite_parameter, first_nonfinite_value


@dataclass
class Outcome:
    """What one training step did."""

    losses: list[float] = field(default_factory=list)  # of the updates applied
    norms: list[float] = field(default_factory=list)  # their pre-clip gradient norms
    clipped: bool = False
    skipped: bool = False  # an update of this step was not applied
    rolled_back: int | None = None  # the step whose update was undone, if one was
    report: dict[str, Any] | None = None  # the guard's finding, if it fired


@dataclass
class Guard:
    """The model, its optimiser and clipping, and the state before the last applied update."""

    model: nn.Module
    opt: torch.optim.Optimizer
    clip: str
    threshold: float
    undo: dict[str, Any] | None = None  # {"step", "grad_norm", "model", "optimizer"} before the last update

    def _snapshot(self, step: int) -> dict[str, Any]:
        return {
            "step": step,
            "grad_norm": 0.0,
            "model": copy.deepcopy(self.model.state_dict()),
            "optimizer": copy.deepcopy(self.opt.state_dict()),
        }

    def roll_back(self) -> int:
        """Restore the state before the last applied update; returns that update's training step."""
        assert self.undo is not None
        self.model.load_state_dict(self.undo["model"])
        self.opt.load_state_dict(self.undo["optimizer"])
        step = int(self.undo["step"])
        self.undo = None
        return step

    def step(self, step: int, losses: Iterable[Tensor], where: Callable[[], dict[str, Any]]) -> Outcome:
        """Backpropagate and apply each loss of the batch, guarded; stops at the first non-finite.

        `where()` traces the batch with the current weights and says where a non-finite value is
        born (`guard.locate`); it runs only when the guard fires.
        """
        out = Outcome()
        params = [p for p in self.model.parameters()]
        for loss in losses:
            self.opt.zero_grad(set_to_none=True)
            value = loss.item()
            torch.autograd.backward(loss)
            bad = first_nonfinite_parameter(self.model)
            if bad is not None or not math.isfinite(value):
                out.report = {
                    "step": step,
                    "loss": value,
                    "cause": "gradient" if math.isfinite(value) else "forward",
                }
                if bad is not None:
                    grad = dict(self.model.named_parameters())[bad].grad
                    hit = first_nonfinite_value(grad) if grad is not None else None
                    out.report["parameter"] = bad
                    if hit is not None:
                        out.report.update(index=list(hit[0]), grad_value=str(hit[1]))
                out.report.update(where())
                self.opt.zero_grad(set_to_none=True)
                if (
                    not math.isfinite(value) and self.undo is not None
                ):  # the last update broke the forward pass
                    out.report["rolled_back"] = {
                        "step": self.undo["step"],
                        "grad_norm": self.undo["grad_norm"],
                    }
                    out.rolled_back = self.roll_back()
                out.skipped = True
                return out
            if self.clip == "norm":
                norm, fired = clip_norm_(params, self.threshold)
            elif self.clip == "value":
                norm, fired = clip_value_(params, self.threshold)
            else:
                norm, fired = grad_norm(params), False
            self.undo = self._snapshot(step)
            self.undo["grad_norm"] = norm
            self.opt.step()
            broken = _first_nonfinite_weight(self.model)
            if broken is not None:  # a finite update that overflowed a weight: never kept
                name, index, v = broken
                out.report = {
                    "step": step,
                    "loss": value,
                    "cause": "update",
                    "parameter": name,
                    "index": list(index),
                    "value": str(v),
                    "grad_norm": norm,
                    "rolled_back": {"step": step, "grad_norm": norm},
                }
                out.rolled_back = self.roll_back()
                out.skipped = True
                return out
            out.losses.append(value)
            out.norms.append(norm)
            out.clipped |= fired
        return out


def _first_nonfinite_weight(model: nn.Module) -> tuple[str, tuple[int, ...], float] | None:
    for name, p in model.named_parameters():
        hit = first_nonfinite_value(p.detach())
        if hit is not None:
            return (name, *hit)
    return None
