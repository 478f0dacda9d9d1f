"""Gate statistics over time: saturation, the forget gates per unit, input and output gates.

A sigmoid gate is saturated within ε of 0 or 1 (there σ' ≈ 0 and almost no gradient passes to its
weights); tanh blocks (g, n) and the Elman RNN's activation within ε of ±1; a ReLU unit at 0 is
dead. The Elman RNN has no gates; its activation h is reported under the name "h". Each gate's range
comes from its cell's `CellSpec.gate_ranges`; a gate without one (unbounded, or a cell not
registered) has NaN saturation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .._checks import InputError
from ..cells import registry

if TYPE_CHECKING:
    from ..trace import Trace


@dataclass(frozen=True)
class GateStats:
    """Statistics of one gate, per layer-direction: (L·D, T) over B and units, (L·D, H) per unit."""

    name: str
    low: Tensor  # fraction within ε of the lower extreme (0; −1 for tanh; dead for ReLU)
    high: Tensor  # fraction within ε of the upper extreme (1)
    saturated: Tensor  # low + high
    mean: Tensor
    std: Tensor
    unit_mean: Tensor
    overall_saturated: float


def gate_stats(trace: Trace, eps: float = 0.01) -> dict[str, GateStats]:
    """Saturation fractions, means and per-unit means of every gate (the activation for the Elman RNN).

    Example:
        >>> import torch, bptt
        >>> from bptt.diagnostics import gate_stats
        >>> tr = bptt.trace(bptt.GRU(2, 5), torch.randn(9, 3, 2), lambda out, h: out.sum())
        >>> sorted(gate_stats(tr)), tuple(gate_stats(tr)["z"].saturated.shape)
        (['n', 'r', 'z'], (1, 9))
    """
    if not 0 < eps < 1:
        raise InputError(f"expected ε in (0, 1), got {eps}")
    gates = dict(trace.gates) if trace.gates else {"h": trace.h}
    ranges = registry.gate_ranges(trace.model.step)  # from the cell's CellSpec; unknown: no saturation
    out = {}
    for name, a in gates.items():  # a: (L·D, T, B, H)
        bounds = ranges.get(name)
        if bounds is None:
            low = high = torch.full(a.shape[:2], float("nan"), dtype=torch.float64)
        else:
            lo, hi = bounds
            low = (
                (a <= lo + eps).double().mean((2, 3))
                if lo > -float("inf")
                else torch.zeros(a.shape[:2], dtype=torch.float64)
            )
            high = (a >= hi - eps).double().mean((2, 3))
        sat = low + high
        out[name] = GateStats(
            name=name,
            low=low,
            high=high,
            saturated=sat,
            mean=a.double().mean((2, 3)),
            std=a.double().std((2, 3))
            if a.shape[2] * a.shape[3] > 1
            else torch.zeros(a.shape[:2], dtype=torch.float64),
            unit_mean=a.double().mean((1, 2)),
            overall_saturated=float(sat.mean()),
        )
    return out


def carry_gate(trace: Trace) -> Tensor | None:
    """The recorded gate on the carry path (the LSTM's f), (L·D, T, B, H), as the cell's CellSpec names it."""
    spec = registry.spec_of(trace.model.step)
    return trace.gates.get(spec.carry_gate) if spec is not None and spec.carry_gate is not None else None


def forget_histogram(trace: Trace, bins: int = 20, layer: int = 0) -> tuple[Tensor, Tensor]:
    """Counts of the forget-gate values of one layer over [0, 1] in `bins` bins, and the bin edges."""
    f = carry_gate(trace)
    if f is None:
        raise InputError("this model has no forget gate")
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    return torch.histc(f[layer].double(), bins=bins, min=0, max=1), edges
