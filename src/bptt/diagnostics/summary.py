"""One record of every time-axis diagnostic of a trace, ready for JSON (Monitor, trainer, reports)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..cells import registry
from .bounds import bounds
from .decomposition import forget_split
from .distance import gradient_profile, lag_profile
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


def right_aligned(x: Tensor, lengths: Tensor | None) -> Tensor:
    """(…, B, T) by time position → by distance to each sequence's own end: position T − 1 − d holds
    what was at len_b − 1 − d, NaN before a short sequence's start. Without lengths, x itself."""
    if lengths is None:
        return x
    T = x.shape[-1]
    out = torch.full_like(x, math.nan)
    for b, L in enumerate(lengths.tolist()):
        out[..., b, T - L :] = x[..., b, :L]
    return out


def _by_distance(trace: Trace, x: Tensor) -> Tensor:
    """(L·D, B, T) per-sample norms, the forward directions' right-aligned to each sequence's end
    (the reverse ones end at position 0 already)."""
    if trace.lengths is None:
        return x
    D = trace.model.num_directions
    out = x.clone()
    out[::D] = right_aligned(x[::D], trace.lengths)
    return out


def summarize(
    trace: Trace,
    samples: int = 4,
    fraction: float = 1e-3,
    jacobian: bool = True,
    full: bool = False,
    exponents: int = 16,
) -> dict[str, Any]:
    """Gradient against distance, the lag profile and horizons, contributions, gate saturation, bounds
    and (for the first `samples` sequences, layer 0) the Jacobian products, as plain numbers and lists.

    `horizon` is the lag horizon (`diagnostics.distance.lag_profile`, measured on the top layer for
    the first `samples` sequences): how far back each loss term's gradient reaches. `horizon_end`
    is the distance to the last step at which the contributions ‖∂L/∂θ|_k‖ still count. Where the
    trace has `lengths`, the series against distance (dh_mean, dc_mean, the Jacobian norms) count
    each sequence from its own end, and `horizon_end` is None.

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
    sub = slice(0, samples)
    lags = lag_profile(trace, samples=sub, fraction=fraction)
    step = trace.model.step
    rec: dict[str, Any] = {
        "cell": registry.label(step),
        "loss": finite(float(trace.loss)),
        "steps": trace.steps,
        "batch": trace.h.shape[2],
        "distance": finite(prof.distance),
        "contribution": finite(prof.contribution),
        "horizon": lags.horizon,
        "lag_log_norm": finite(lags.log_norm),
        "lag_sources": lags.sources,
        "horizon_end": prof.horizon if trace.lengths is None else None,  # the end differs per sequence
        "fraction": fraction,
        "dh_mean": finite(_by_distance(trace, prof.dh).nanmean(1)),
        "dc_mean": finite(_by_distance(trace, prof.dc).nanmean(1)) if prof.dc is not None else None,
    }
    stats = gate_stats(trace)
    rec["saturation"] = {name: finite(s.overall_saturated) for name, s in stats.items()}
    rec["saturation_steps"] = {name: finite(s.saturated[0]) for name, s in stats.items()}
    rec["gate_mean_steps"] = {name: finite(s.mean[0]) for name, s in stats.items()}
    f = carry_gate(trace)
    if f is not None:
        f0 = f[0].double()  # (T, B, H) of layer 0
        unit = f.double()
        if trace.lengths is not None:  # only the steps before each sequence's end
            valid = torch.arange(f0.shape[0])[:, None] < trace.lengths[None, :]
            f0 = f0[valid]
            unit = unit[:, valid]  # (L·D, steps, H)
            rec["forget_unit_mean"] = finite(unit.mean(1))
        else:
            rec["forget_unit_mean"] = finite(unit.mean((1, 2)))
        rec["forget_histogram"] = finite(torch.histc(f0, bins=20, min=0, max=1))
    if jacobian:
        lengths = None if trace.lengths is None else trace.lengths[sub]

        def logs(of: str) -> Tensor:  # (B, T) by distance to each sequence's own end
            return right_aligned(jacobian_norms(trace, of, log=True, samples=sub), lengths)

        log_state = logs("state")
        rec["jacobian_log_state"] = finite(log_state.nanmean(0))
        rec["decay_slope"] = finite(decay_slope(log_state, prof.distance))
        if step.has_cell:
            rec["jacobian_log_c"] = finite(logs("c").nanmean(0))
            rec["jacobian_log_cec"] = finite(logs("cec").nanmean(0))
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
        if step.has_cell:
            split = forget_split(trace, samples=sub)
            rec["split"] = {k: finite(getattr(split, k).nanmean(0)) for k in ("forget", "remainder", "total")}
        spec = lyapunov(trace, k=exponents, burn_in=min(10, trace.steps // 4), samples=sub)
        rec["lyapunov"] = {
            "exponents": finite(spec.mean),
            "max": finite(spec.max),
            "slope": finite(spec.slope) if spec.slope is not None else None,
        }
    return rec
