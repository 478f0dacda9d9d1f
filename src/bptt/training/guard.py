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

from .._checks import first_non_finite

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


def first_nonfinite_value(x: Tensor) -> tuple[tuple[int, ...], float] | None:
    """The index and value of the first non-finite entry of `x` (row-major), or None."""
    index = first_non_finite(x)
    return None if index is None else (index, float(x[index]))


def _first_bad_step(values: Tensor, order: list[int]) -> tuple[int, int] | None:
    """(layer, time step) of the first non-finite entry of a (L·D, T, B, ·) tensor, visiting steps in `order`."""
    bad = ~torch.isfinite(values).flatten(2).all(-1)  # (L·D, T)
    for t in order:
        layers = bad[:, t].nonzero()
        if len(layers):
            return int(layers[0, 0]), t
    return None


def locate(
    core: nn.Module,
    x: Tensor,
    loss_fn: Callable[[Tensor, Any], Tensor],
    head: Callable[[Tensor], Tensor] | None = None,
) -> dict[str, Any]:
    """Trace the batch and find the first non-finite state (forward), readout or state gradient (backward).

    Each finding names the quantity, the layer or the readout, the time step and the value there.
    `head` is the readout applied to the core's output (T, B, ·), giving (T, B, O) for a readout at
    every step or (B, O) for one at the last step.
    """
    from ..trace import trace

    if not bool(torch.isfinite(x).all()):
        t, b, f = (int(i) for i in (~torch.isfinite(x)).nonzero()[0])
        return {"where": "input", "time_step": t, "batch_index": b, "feature": f}
    tr = trace(core, x, loss_fn)
    T = tr.steps
    forward, backward = list(range(T)), list(range(T - 1, -1, -1))
    for name, values in (("h", tr.h), ("c", tr.c)):
        if values is not None and (hit := _first_bad_step(values, forward)):
            return {"where": "forward", "quantity": name, "layer": hit[0], "time_step": hit[1]} | _value(
                values[hit[0], hit[1]]
            )
    if head is not None:
        with torch.no_grad():
            y = head(tr.output)
        if not bool(torch.isfinite(y).all()):
            t = _first_bad_step(y.unsqueeze(0), forward)[1] if y.dim() == 3 else T - 1  # type: ignore[index]
            return {"where": "readout", "time_step": t} | _value(y[t] if y.dim() == 3 else y)
    if not math.isfinite(float(tr.loss)):
        return {"where": "loss", "loss": float(tr.loss)}
    for name, values in (("dh", tr.dh), ("dc", tr.dc)):
        if values is not None and (hit := _first_bad_step(values, backward)):
            return {"where": "backward", "quantity": name, "layer": hit[0], "time_step": hit[1]} | _value(
                values[hit[0], hit[1]]
            )
    return {"where": "elsewhere", "note": "every state, the readout and every state gradient are finite"}


def _value(x: Tensor) -> dict[str, Any]:
    hit = first_nonfinite_value(x)
    return {} if hit is None else {"value": str(hit[1])}


def describe(report: dict[str, Any]) -> str:
    """The guard's report as one line: what went non-finite, where, at which time step, with what value."""
    step, where, param = report.get("step"), report.get("where"), report.get("parameter")
    at = f" at index {tuple(report['index'])}" if "index" in report else ""
    rolled = report.get("rolled_back")
    if report.get("cause") == "update":
        return (
            f"the update of training step {step} (gradient norm {report.get('grad_norm', 0.0):.3g}) made "
            f"{param} non-finite ({report.get('value')}{at}); it was rolled back"
        )
    if param:
        head = (
            f"non-finite gradient at training step {step}, first in {param} ({report.get('grad_value')}{at})"
        )
    else:
        head = f"non-finite loss ({report.get('loss')}) at training step {step}"
    value = f" ({report['value']})" if "value" in report else ""
    if where == "input":
        body = f"the input is not finite at time step {report['time_step']} (batch index {report['batch_index']})"
    elif where == "forward":
        q = report["quantity"]
        state = "hidden state h_t" if q == "h" else "cell state c_t"
        body = f"born in the forward pass: the {state} of layer {report['layer']} first non-finite at time step {report['time_step']}{value}"
    elif where == "backward":
        q = report["quantity"]
        body = f"born in the backward pass: ∂L/∂{q[1]}_t of layer {report['layer']} first non-finite at time step {report['time_step']}{value}"
    elif where == "readout":
        body = f"every state is finite; the readout is first non-finite at time step {report['time_step']}{value}"
    elif where == "loss":
        body = "every state and the readout are finite; the loss itself overflowed"
    else:
        body = report.get("note", "")
    if rolled:
        body += (
            f"; the update of step {rolled['step']} (gradient norm {rolled['grad_norm']:.3g}) that made it "
            "non-finite was rolled back"
        )
    return f"{head}: {body}"
