"""One record of every time-axis diagnostic of a trace (Monitor snapshots, final diagnostics, reports).

`summarize` measures; `Summary` is what it returns, written to JSON and read back by
`bptt._records.to_json`/`from_json`. Curves are plain lists of numbers (None where a value is not
finite), so a record reads the same from memory and from disk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .._records import Series, Table, finite
from ..cells import registry
from .bounds import bounds
from .decomposition import forget_split
from .distance import gradient_profile, lag_profile
from .gates import carry_gate, gate_stats
from .jacobian import decay_slope, jacobian_norms
from .lyapunov import lyapunov
from .progress import few_threads

if TYPE_CHECKING:
    from ..trace import Trace


@dataclass(frozen=True)
class BoundRecord:
    """`bounds.LayerBound` as numbers; `step_norm` and `act_grad` are means over the samples, per step.

    `lambda1` is the largest singular value of the whole W_hh; for a gated cell (gamma None) it is
    the stacked matrix's and means little: `gate_lambda1` holds λ1 of each gate's block, and
    `measured_verdict` what the step Jacobians measured along the trace guarantee.
    """

    layer: str
    cell: str
    gamma: float | None
    threshold: float | None
    lambda1: float
    spectral_radius: float | None
    verdict: str
    eigen_verdict: str | None
    max_forget: float | None = None
    step_norm: Series | None = None
    act_grad: Series | None = None
    gate_lambda1: dict[str, float] | None = None  # gated cells: gate → λ1 of its H×P block of W_hh
    step_rate: float | None = None  # geometric mean over samples and steps of ‖∂s_t/∂s_{t−1}‖ (full state)
    measured_verdict: str | None = None  # what ∏‖∂s_t/∂s_{t−1}‖ = step_rate^T guarantees along the trace


@dataclass(frozen=True)
class SplitRecord:
    """The forget-gate split (`decomposition.forget_split`), each part's mean over samples per step."""

    forget: Series
    remainder: Series
    total: Series


@dataclass(frozen=True)
class LyapunovRecord:
    """The mean Lyapunov spectrum (largest first), its largest exponent and the measured decay slope,
    with the burn-in chosen from the data, the steps counted, the confidence and a warning
    (`diagnostics.lyapunov`)."""

    exponents: Series
    max: float | None
    slope: float | None
    burn_in: int | None = None  # steps left out before the logs were counted (from the last step back)
    steps: int | None = None  # steps counted after the burn-in
    stderr: Series | None = None  # standard error of each exponent (samples × blocks of steps)
    max_stderr: float | None = None  # that of λ_max: report λ_max ± max_stderr
    spread: Series | None = None  # standard deviation of each exponent over the samples
    warning: str | None = (
        None  # why the estimate should not be trusted (too short sequences, …); None if none
    )


@dataclass(frozen=True)
class Summary:
    """Every time-axis diagnostic of one trace. Per-step series are indexed by time position k;
    `distance[k]` is k's distance to the last step. Tables hold one series per layer-direction."""

    cell: str
    loss: float | None
    steps: int
    batch: int
    distance: Series
    contribution: Series
    horizon: int  # the lag horizon: how far back each loss term's gradient reaches
    lag_log_norm: Series  # log r(τ) for lags τ = 0, 1, … (`distance.lag_profile`)
    lag_sources: int
    horizon_end: int | None  # the distance to the last step at which the contributions still count
    fraction: float
    dh_mean: Table
    dc_mean: Table | None
    saturation: dict[str, float | None]  # per gate, the fraction of saturated activations
    saturation_steps: dict[str, Series]  # per gate and step, layer 0
    gate_mean_steps: dict[str, Series]
    bounds: list[BoundRecord]
    forget_unit_mean: Table | None = None  # LSTM: mean f per unit
    forget_histogram: Series | None = None  # LSTM: 20 bins of f over [0, 1], layer 0
    jacobian_log_state: Series | None = None  # mean log ‖∂s_{T−1}/∂s_k‖ over the first samples
    decay_slope: float | None = None
    jacobian_log_c: Series | None = None
    jacobian_log_cec: Series | None = None
    split: SplitRecord | None = None  # with full=True, for a cell with a cell state
    lyapunov: LyapunovRecord | None = None  # with full=True
    step: int | None = None  # the training step of a Monitor snapshot
    module: str | None = None  # the watched module of a Monitor snapshot


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
) -> Summary:
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
        >>> rec.cell, rec.steps, len(rec.contribution), len(rec.jacobian_log_cec)
        ('lstm (vanilla)', 20, 20, 20)
    """
    step = trace.model.step
    with few_threads(trace.model.hidden_size * (2 if step.has_cell else 1)):
        return _summarize(trace, samples, fraction, jacobian, full, exponents)


def _summarize(
    trace: Trace, samples: int, fraction: float, jacobian: bool, full: bool, exponents: int
) -> Summary:
    prof = gradient_profile(trace, fraction)
    step = trace.model.step
    registered = registry.spec_of(step) is not None  # the carousel and the split need its declared carry gate
    stats = gate_stats(trace)
    sub = slice(0, samples)
    lags = lag_profile(trace, samples=sub, fraction=fraction)
    f = carry_gate(trace)
    forget_unit_mean = forget_histogram = None
    if f is not None:
        f0 = f[0].double()  # (T, B, H) of layer 0
        unit = f.double()
        if trace.lengths is not None:  # only the steps before each sequence's end
            valid = torch.arange(f0.shape[0])[:, None] < trace.lengths[None, :]
            f0, unit = f0[valid], unit[:, valid]  # (L·D, steps, H)
            forget_unit_mean = finite(unit.mean(1))
        else:
            forget_unit_mean = finite(unit.mean((1, 2)))
        forget_histogram = finite(torch.histc(f0, bins=20, min=0, max=1))
    lengths = None if trace.lengths is None else trace.lengths[sub]

    def logs(of: str) -> Tensor:  # (B, T) by distance to each sequence's own end
        return right_aligned(jacobian_norms(trace, of, log=True, samples=sub), lengths)

    log_state = logs("state") if jacobian else None
    with_cell = jacobian and step.has_cell
    log_c = logs("c") if with_cell else None
    log_cec = logs("cec") if with_cell and registered else None
    measured = bounds(trace.model, trace, sub) if full else bounds(trace.model)
    split = forget_split(trace, samples=sub) if full and step.has_cell and registered else None
    spec = (
        lyapunov(
            trace,
            k=exponents,
            samples=sub,
            # the slope from the norms above where they are by time position (no lengths)
            log_norms=log_state if trace.lengths is None else None,
        )
        if full and (lengths is None or bool((lengths == trace.steps).any()))
        else None
    )
    return Summary(
        cell=registry.label(step),
        loss=finite(float(trace.loss)),
        steps=trace.steps,
        batch=trace.h.shape[2],
        distance=finite(prof.distance),
        contribution=finite(prof.contribution),
        horizon=lags.horizon,
        lag_log_norm=finite(lags.log_norm),
        lag_sources=lags.sources,
        horizon_end=prof.horizon if trace.lengths is None else None,  # the end differs per sequence
        fraction=fraction,
        dh_mean=finite(_by_distance(trace, prof.dh).nanmean(1)),
        dc_mean=finite(_by_distance(trace, prof.dc).nanmean(1)) if prof.dc is not None else None,
        saturation={name: finite(s.overall_saturated) for name, s in stats.items()},
        saturation_steps={name: finite(s.saturated[0]) for name, s in stats.items()},
        gate_mean_steps={name: finite(s.mean[0]) for name, s in stats.items()},
        bounds=[
            BoundRecord(
                layer=b.name,
                cell=b.cell,
                gamma=b.gamma,
                threshold=b.threshold,
                lambda1=b.lambda1,
                spectral_radius=b.spectral_radius,
                verdict=b.verdict,
                eigen_verdict=b.eigen_verdict,
                max_forget=b.max_forget,
                step_norm=finite(b.step_norm.mean(0)) if b.step_norm is not None else None,
                act_grad=finite(b.act_grad.mean(0)) if b.act_grad is not None else None,
                gate_lambda1=b.gate_lambda1,
                step_rate=finite(b.step_rate) if b.step_rate is not None else None,
                measured_verdict=b.measured_verdict,
            )
            for b in measured
        ],
        forget_unit_mean=forget_unit_mean,
        forget_histogram=forget_histogram,
        jacobian_log_state=finite(log_state.nanmean(0)) if log_state is not None else None,
        decay_slope=finite(decay_slope(log_state, prof.distance)) if log_state is not None else None,
        jacobian_log_c=finite(log_c.nanmean(0)) if log_c is not None else None,
        jacobian_log_cec=finite(log_cec.nanmean(0)) if log_cec is not None else None,
        split=SplitRecord(*(finite(getattr(split, k).nanmean(0)) for k in ("forget", "remainder", "total")))
        if split is not None
        else None,
        lyapunov=LyapunovRecord(
            finite(spec.mean),
            finite(spec.max),
            finite(spec.slope) if spec.slope is not None else None,
            burn_in=spec.burn_in,
            steps=spec.steps,
            stderr=finite(spec.stderr) if spec.stderr is not None else None,
            max_stderr=finite(spec.max_stderr) if spec.max_stderr is not None else None,
            spread=finite(spec.spread) if spec.spread is not None else None,
            warning=spec.warning,
        )
        if spec is not None
        else None,
    )
