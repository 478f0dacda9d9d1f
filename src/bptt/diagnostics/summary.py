"""One record of every time-axis diagnostic of a trace, ready for JSON (Monitor, trainer, reports)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..cells import registry
from .bounds import bounds
from .decomposition import forget_split
from .distance import gradient_profile
from .gates import carry_gate, gate_stats
from .jacobian import decay_slope, jacobian_norms
from .lyapunov import lyapunov

if TYPE_CHECKING:
    from ..trace import Trace


def finite(x: Tensor | float) -> Any:
    """Tensor → nested lists with None where a value is not finite (JSON has no ±inf or NaN)."""
    if isinstance(x, Tensor):
        x = x.detach().double().tolist()
    if isinstance(x, list):
        return [finite(v) for v in x]
    return float(x) if math.isfinite(x) else None


def summarize(
    trace: Trace,
    samples: int = 4,
    fraction: float = 1e-3,
    jacobian: bool = True,
    full: bool = False,
    exponents: int = 16,
) -> dict[str, Any]:
    """Gradient against distance, horizon, contributions, gate saturation, bounds and (for the first
    `samples` sequences, layer 0) the Jacobian products, as plain numbers and lists.

    `full` adds what a final report shows: the forget-gate split (LSTM), the Lyapunov spectrum
    (`exponents` largest) compared with the decay slope, and the bounds measured along the trace.

    Example:
        >>> import torch, bptt
        >>> from bptt.diagnostics.summary import summarize
        >>> tr = bptt.trace(bptt.LSTM(2, 8), torch.randn(20, 4, 2), lambda out, s: out[-1].sum())
        >>> rec = summarize(tr)
        >>> sorted(rec)[:5], len(rec["contribution"])
        (['batch', 'bounds', 'cell', 'contribution', 'dc_mean'], 20)
    """
    prof = gradient_profile(trace, fraction)
    step = trace.model.step
    registered = registry.spec_of(step) is not None
    rec: dict[str, Any] = {
        "cell": registry.label(step),
        "loss": float(trace.loss),
        "steps": trace.steps,
        "batch": trace.h.shape[2],
        "distance": finite(prof.distance),
        "contribution": finite(prof.contribution),
        "horizon": prof.horizon,
        "fraction": fraction,
        "dh_mean": finite(prof.dh_mean),
        "dc_mean": finite(prof.dc_mean) if prof.dc_mean is not None else None,
    }
    stats = gate_stats(trace)
    rec["saturation"] = {name: finite(s.overall_saturated) for name, s in stats.items()}
    rec["saturation_steps"] = {name: finite(s.saturated[0]) for name, s in stats.items()}
    rec["gate_mean_steps"] = {name: finite(s.mean[0]) for name, s in stats.items()}
    f = carry_gate(trace)
    if f is not None:
        rec["forget_unit_mean"] = finite(f.double().mean((1, 2)))
        rec["forget_histogram"] = finite(torch.histc(f[0].double(), bins=20, min=0, max=1))
    sub = slice(0, samples)
    if jacobian:
        log_state = jacobian_norms(trace, "state", log=True, samples=sub)
        rec["jacobian_log_state"] = finite(log_state.mean(0))
        rec["decay_slope"] = finite(decay_slope(log_state, prof.distance))
        if step.has_cell:
            rec["jacobian_log_c"] = finite(jacobian_norms(trace, "c", log=True, samples=sub).mean(0))
            if registered:  # the carousel needs the cell's declared carry gate
                rec["jacobian_log_cec"] = finite(jacobian_norms(trace, "cec", log=True, samples=sub).mean(0))
    measured = bounds(trace.model, trace, sub) if full else bounds(trace.model)
    rec["bounds"] = [
        {
            "layer": b.name,
            "cell": b.cell,
            "gamma": b.gamma,
            "threshold": b.threshold,
            "lambda1": b.lambda1,
            "spectral_radius": b.spectral_radius,
            "verdict": b.verdict,
            "eigen_verdict": b.eigen_verdict,
            "max_forget": b.max_forget,
            "step_norm": finite(b.step_norm.mean(0)) if b.step_norm is not None else None,
            "act_grad": finite(b.act_grad.mean(0)) if b.act_grad is not None else None,
        }
        for b in measured
    ]
    if full:
        if step.has_cell and registered:
            split = forget_split(trace, samples=sub)
            rec["split"] = {k: finite(getattr(split, k).nanmean(0)) for k in ("forget", "remainder", "total")}
        spec = lyapunov(trace, k=exponents, burn_in=min(10, trace.steps // 4), samples=sub)
        rec["lyapunov"] = {
            "exponents": finite(spec.mean),
            "max": finite(spec.max),
            "slope": finite(spec.slope) if spec.slope is not None else None,
        }
    return rec
