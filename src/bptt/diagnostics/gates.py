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
        a = a.double()
        LD, T, B, H = a.shape
        # the steps of each sequence up to its own end (all of them where lengths are not given)
        m = torch.ones(1, T, B, 1, dtype=torch.float64, device=a.device)
        if trace.lengths is not None:
            m = (torch.arange(T, device=a.device)[:, None] < trace.lengths.to(a.device)[None, :]).double()
            m = m[None, :, :, None]
        per_step = (m.sum((2, 3)) * H).clamp_min(1)  # (1, T) values averaged at each step
        valid_steps = m.sum((0, 2, 3)) > 0  # (T,)

        def over_batch(x: Tensor, m: Tensor = m, per_step: Tensor = per_step) -> Tensor:
            return (x * m).sum((2, 3)) / per_step  # (L·D, T), NaN-free: empty steps read 0

        bounds = ranges.get(name)
        if bounds is None:
            low = high = torch.full((LD, T), float("nan"), dtype=torch.float64)
        else:
            lo, hi = bounds
            low = over_batch((a <= lo + eps).double()) if lo > -float("inf") else a.new_zeros((LD, T))
            high = over_batch((a >= hi - eps).double())
        sat = low + high
        mean = over_batch(a)
        var = over_batch((a - mean[:, :, None, None]) ** 2) * per_step / (per_step - 1).clamp_min(1)
        out[name] = GateStats(
            name=name,
            low=low,
            high=high,
            saturated=sat,
            mean=mean,
            std=var.sqrt() if B * H > 1 else a.new_zeros((LD, T)),
            unit_mean=(a * m).sum((1, 2)) / m.sum((1, 2)).clamp_min(1),
            overall_saturated=float(sat[:, valid_steps].mean()),
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
