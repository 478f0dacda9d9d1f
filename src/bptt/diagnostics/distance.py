"""Gradient against distance and against lag: how far back the gradient reaches.

Two horizons, both the largest gap at which a gradient is still above a fraction (default 1e-3)
of its largest value:

* the *horizon* (`lag_profile`): the lag τ between a loss term at step t and the step t − τ its
  gradient reaches, averaged over every loss term. It means the same for a loss on the last step
  and for a loss summed over every step (a language model, a tagger).
* the *end horizon* (`gradient_profile`): the distance from the last step a direction visits
  (T − 1 − k forward) at which a step's contribution to the gradient, ‖∂L/∂θ|_k‖, is still above
  the fraction. For a loss on the last step it is the lag horizon measured on the parameters; for a
  loss at every step it reads T − 1 whatever the model does.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .. import _checks
from .._checks import InputError
from ..engine.sweep import state_vjp
from ..engine.tape import Tape
from .jacobian import distances, state_layout
from .progress import task

if TYPE_CHECKING:
    from ..trace import Trace


@dataclass(frozen=True)
class GradientProfile:
    """Norms over time, each indexed by time position k; `distance[k]` is k's distance to the last step.

    Shapes: dh, dc (L·D, B, T) per sample (float64, NaN after a sequence's own end); dh_mean,
    dc_mean (L·D, T) over the sequences that reach step k; contribution (T,).
    """

    distance: Tensor
    dh: Tensor
    dh_mean: Tensor
    dc: Tensor | None
    dc_mean: Tensor | None
    contribution: Tensor
    horizon: int
    fraction: float


def horizon(contribution: Tensor, distance: Tensor, fraction: float = 1e-3) -> int:
    """The largest distance whose contribution is ≥ `fraction` × the largest contribution."""
    if not 0 < fraction <= 1:
        raise InputError(f"expected a fraction in (0, 1], got {fraction}")
    c = contribution.double().to(distance.device)
    keep = c >= fraction * c.max()
    return int(distance[keep].max()) if bool(keep.any()) else 0


def after_end(trace: Trace, x: Tensor) -> Tensor:
    """x (…, T, B) with NaN at the steps after each sequence's own end (`trace.lengths`), for nanmean."""
    if trace.lengths is None:
        return x
    T = x.shape[-2]
    past = torch.arange(T, device=x.device)[:, None] >= trace.lengths.to(x.device)[None, :]
    return x.masked_fill(past, math.nan)


def gradient_profile(trace: Trace, fraction: float = 1e-3) -> GradientProfile:
    """‖∂L/∂h_k‖ and ‖∂L/∂c_k‖ per sample and averaged, the contribution norms and the horizon.

    Example:
        >>> import torch, bptt
        >>> from bptt.diagnostics import gradient_profile
        >>> tr = bptt.trace(bptt.RNN(2, 16), torch.randn(50, 4, 2), lambda out, h: out[-1].sum())
        >>> prof = gradient_profile(tr)
        >>> prof.dh.shape, prof.contribution.shape, 0 <= prof.horizon <= 49
        (torch.Size([1, 4, 50]), torch.Size([50]), True)
    """
    # float64 norms: the squares of a float32 model's vanishing gradients underflow in float32
    dh = after_end(trace, trace.dh.double().norm(dim=-1)).transpose(1, 2)  # (L·D, T, B) → (L·D, B, T)
    dc = after_end(trace, trace.dc.double().norm(dim=-1)).transpose(1, 2) if trace.dc is not None else None
    d = distances(trace.tapes[0])
    contribution = trace.contribution_norms()
    return GradientProfile(
        distance=d,
        dh=dh,
        dh_mean=dh.nanmean(1),
        dc=dc,
        dc_mean=dc.nanmean(1) if dc is not None else None,
        contribution=contribution,
        horizon=horizon(contribution, d, fraction),
        fraction=fraction,
    )


# -- the lag profile: how far back each loss term's gradient reaches ----------------------------


@dataclass(frozen=True)
class LagProfile:
    """How far back the gradient of each loss term reaches, by lag τ between the loss term and the step.

    A loss term ℓ_t is whatever gradient enters the layer at step t from outside its recurrence: the
    loss's own term at step t for the top layer (plus ∂L/∂h_n, ∂L/∂c_n at the last step), the layer
    above for a lower one. Its gradient at the state τ steps earlier is g_t · ∂s_t/∂s_{t−τ}.

        r(τ) = mean over sequences b and loss positions t (with t − τ ≥ 0 in b's own sequence) of ‖g_t · ∂s_t/∂s_{t−τ}‖

    s = (h, c) for the LSTM, h otherwise; "earlier" is in the direction's own order. `horizon` is the
    largest τ with r(τ) ≥ `fraction` · max r: for a loss on the last step only this is the distance to
    the end, and for a loss summed over every step (language models, taggers) it is how far back
    each term's gradient still reaches, where the distance to the end would always read T − 1.

    Shapes: log_norm, count (M,) for lags 0..M−1; log_norm holds log r(τ) in float64 (−inf where
    nothing reaches, never an underflowed 0), count the number of (t, b) pairs averaged.
    """

    log_norm: Tensor
    count: Tensor
    horizon: int
    fraction: float
    sources: int


def _double(tape: Tape) -> Tape:
    """A float64 copy of a tape (of a few samples): products over long lags stay measurable."""

    def d(x: Tensor | None) -> Tensor | None:
        return None if x is None else x.double()

    out = dataclasses.replace(
        tape,
        x=tape.x.double(),
        h_buf=tape.h_buf.double(),
        c_buf=d(tape.c_buf),
        gates_buf=d(tape.gates_buf),
        extras={k: v.double() for k, v in tape.extras.items()},
        dh=d(tape.dh),
        dc=d(tape.dc),
        dgx=d(tape.dgx),
        dout=d(tape.dout),
        dh_n=d(tape.dh_n),
        dc_n=d(tape.dc_n),
    )
    out.dgh = out.dgx if tape.dgh is tape.dgx else d(tape.dgh)
    return out


def lag_profile(
    trace: Trace,
    layer: int | None = None,
    direction: int = 0,
    samples: slice | None = None,
    fraction: float = 1e-3,
    max_lag: int | None = None,
) -> LagProfile:
    """r(τ), the mean norm of a loss term's gradient τ steps before it, and the horizon (see `LagProfile`).

    Arguments:
        trace: a `bptt.Trace` (from `bptt.trace` or `bptt.watch`).
        layer: which layer (default: the top one, where the loss enters); direction: 0 or 1.
        samples: a slice of the batch (the cost is O(T · min(T, max_lag) · B) backward steps).
        fraction: of the largest r(τ), for the horizon.
        max_lag: the longest lag measured (default: T − 1).

    Every loss term is carried back through the cell's own backward step (`engine.sweep.state_vjp`),
    all terms at once, in float64 and rescaled every step, so nothing underflows.

    Example:
        >>> import torch, bptt
        >>> from bptt.diagnostics import lag_profile
        >>> _ = torch.manual_seed(0)
        >>> tr = bptt.trace(bptt.LSTM(2, 8), torch.randn(30, 3, 2), lambda out, s: out.sum())  # a term per step
        >>> prof = lag_profile(tr)
        >>> prof.sources, prof.log_norm.shape, 0 <= prof.horizon < 30
        (30, torch.Size([30]), True)
    """
    if not 0 < fraction <= 1:
        raise InputError(f"expected a fraction in (0, 1], got {fraction}")
    model = trace.model
    layer = model.num_layers - 1 if layer is None else layer
    step, tape, p = trace.layer(layer, direction, samples)
    tape, p = _double(tape), {k: v.double() for k, v in p.items()}
    layout = state_layout(step, tape)
    T, B = tape.steps, tape.x.shape[1]
    M = T if max_lag is None else max(1, min(T, _checks.positive_int("max_lag", max_lag) + 1))
    order = list(tape.order)
    lengths = trace.lengths if trace.lengths is not None else None
    if lengths is not None and samples is not None:
        lengths = lengths[samples]
    valid_at = (
        torch.ones(T, B, dtype=torch.bool)
        if lengths is None
        else torch.arange(T)[:, None] < lengths.cpu()[None, :]  # step t exists in sequence b
    ).to(tape.x.device)
    log_sum = torch.full((M,), -math.inf, dtype=torch.float64, device=tape.x.device)
    count = torch.zeros(M, dtype=torch.int64, device=tape.x.device)
    cot: tuple[Tensor, ...] = tuple(tape.x.new_zeros((0, B, size)) for size in layout.sizes)
    log_scale = tape.x.new_zeros((0, B))
    valid = torch.zeros((0, B), dtype=torch.bool, device=tape.x.device)
    where: list[int] = []  # visit index of each active loss term
    sources = 0
    with task("lag profile", T) as advance:
        for i in range(T - 1, -1, -1):
            advance(1)
            t = order[i]
            # the loss term at step t: (g_t, 0, …), with ∂L/∂h_n and ∂L/∂c_n at the last step visited
            g = [tape.x.new_zeros((B, size)) for size in layout.sizes]
            if tape.dout is not None:
                g[0] = g[0] + tape.dout[t]
            if i == T - 1 and tape.dh_n is not None:
                g[0] = g[0] + tape.dh_n
                if tape.dc_n is not None:
                    g[1] = g[1] + tape.dc_n
            if any(bool(x.ne(0).any()) for x in g):
                sources += 1
                cot = tuple(torch.cat([c, x[None]]) for c, x in zip(cot, g, strict=True))
                log_scale = torch.cat([log_scale, log_scale.new_zeros((1, B))])
                valid = torch.cat([valid, valid_at[t][None]])
                where.append(i)
            if where:
                sq = sum(c.pow(2).sum(-1) for c in cot)
                log_norm = 0.5 * torch.as_tensor(sq).log() + log_scale  # (N, B)
                log_norm = log_norm.masked_fill(~valid, -math.inf)
                lag = torch.tensor([j - i for j in where], device=tape.x.device)
                log_sum[lag] = torch.logaddexp(log_sum[lag], torch.logsumexp(log_norm, dim=1))
                count[lag] += valid.sum(1)
            if i == 0 or not where:
                continue
            keep = [n for n, j in enumerate(where) if j - (i - 1) < M]
            if len(keep) < len(where):
                index = torch.tensor(keep, dtype=torch.long, device=tape.x.device)
                cot = tuple(c[index] for c in cot)
                log_scale, valid = log_scale[index], valid[index]
                where = [where[n] for n in keep]
            if not where:
                continue
            cot = state_vjp(step, tape, t, p, cot)  # from s_t back to the state before step t
            scale = (
                torch.stack([c.abs().amax(-1) for c in cot])
                .amax(0)
                .clamp_min(torch.finfo(torch.float64).tiny)
            )
            cot = tuple(c / scale[..., None] for c in cot)
            log_scale = log_scale + scale.log()
    log_mean = log_sum - count.clamp_min(1).double().log()
    log_mean = log_mean.masked_fill(count == 0, -math.inf)
    if bool(torch.isfinite(log_mean).any()):
        reached = log_mean >= log_mean.max() + math.log(fraction)
        horizon = int(torch.nonzero(reached).max())
    else:
        horizon = 0
    return LagProfile(log_norm=log_mean, count=count, horizon=horizon, fraction=fraction, sources=sources)
