"""The non-finite guard: a bad step is never applied, and the report says where the NaN was born.

After the backward pass and before any update, every gradient is checked. If one is not finite,
the guard names the first parameter (in `named_parameters` order) whose gradient went non-finite,
then traces the batch with the explicit engine to find the first time step where it happened:
in the forward pass, the first step whose state h or c is not finite; otherwise, in the backward
pass, the first step (in the order the backward sweep visits them, last step first) where
∂L/∂h_t or ∂L/∂c_t is not finite. Depending on the policy the run then stops with the report or
skips the step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

POLICIES = ("stop", "skip")


class NonFiniteGradient(RuntimeError):
    """Raised by the `stop` policy; `.report` holds what the guard found."""

    def __init__(self, report: dict[str, Any]) -> None:
        self.report = report
        super().__init__(describe(report))


def first_nonfinite_parameter(model: nn.Module) -> str | None:
    for name, p in model.named_parameters():
        if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
            return name
    return None


def _first_bad_step(values: Tensor, order: list[int]) -> tuple[int, int] | None:
    """(layer, time step) of the first non-finite entry of a (L·D, T, B, ·) tensor, visiting steps in `order`."""
    bad = ~torch.isfinite(values).flatten(2).all(-1)  # (L·D, T)
    for t in order:
        layers = bad[:, t].nonzero()
        if len(layers):
            return int(layers[0, 0]), t
    return None


def locate(core: nn.Module, x: Tensor, loss_fn: Callable[[Tensor, Any], Tensor]) -> dict[str, Any]:
    """Trace the batch and find the first non-finite state (forward) or state gradient (backward)."""
    from ..trace import trace

    if not bool(torch.isfinite(x).all()):
        t, b, f = (int(i) for i in (~torch.isfinite(x)).nonzero()[0])
        return {"where": "input", "time_step": t, "batch_index": b, "feature": f}
    tr = trace(core, x, loss_fn)
    T = tr.steps
    forward, backward = list(range(T)), list(range(T - 1, -1, -1))
    for name, values in (("h", tr.h), ("c", tr.c)):
        if values is not None and (hit := _first_bad_step(values, forward)):
            return {"where": "forward", "quantity": name, "layer": hit[0], "time_step": hit[1]}
    if not math.isfinite(float(tr.loss)):
        return {"where": "loss", "loss": float(tr.loss)}
    for name, values in (("dh", tr.dh), ("dc", tr.dc)):
        if values is not None and (hit := _first_bad_step(values, backward)):
            return {"where": "backward", "quantity": name, "layer": hit[0], "time_step": hit[1]}
    return {
        "where": "readout",
        "note": "every state and state gradient is finite: the readout or loss produced it",
    }


def describe(report: dict[str, Any]) -> str:
    where = report.get("where")
    param = report.get("parameter")
    if param:
        head = f"non-finite gradient at training step {report.get('step')}, first in {param}"
    else:
        head = f"non-finite loss ({report.get('loss')}) at training step {report.get('step')}"
    if where == "input":
        return f"{head}: the input is not finite at time step {report['time_step']} (batch index {report['batch_index']})"
    if where in ("forward", "backward"):
        q = report["quantity"]
        what = f"the state {q}_t" if where == "forward" else f"∂L/∂{q[1]}_t"
        return f"{head}: born in the {where} pass, {what} of layer {report['layer']} first non-finite at time step {report['time_step']}"
    if where == "loss":
        return f"{head}: every state is finite, so the readout overflowed; the weights grew in the steps before (see grad_norm in metrics.csv)"
    return f"{head}: {report.get('note', '')}"
