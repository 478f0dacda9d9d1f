"""The Lyapunov spectrum of the recurrent dynamics along the actual inputs (QR method).

    Q ← J_tᵀ Q,   Q, R = qr(Q),   λ_i = (1/n) Σ_t log |R_ii|      (natural log per step)

J_t = ∂s_t/∂s_{t−1} is the step Jacobian along the traced inputs (Engelken et al. 2020;
Vogt et al. 2022). The frame Q is carried backwards, from the last step to the first, by the
cell's own backward step with k cotangents at once (`engine.sweep.state_vjp`), as BPTT carries a
gradient: the exponents are the growth rates of the singular values of the product
P = J_{T−1} ⋯ J_0, which Pᵀ shares, so the backward sweep estimates the same spectrum as the
forward one with k Jacobian–vector products per step instead of the S of a full J_t.
λ_max < 0 means that perturbations, and gradients, shrink like e^(λ_max·d) over a distance d; it is
compared with the measured slope of log ‖∂s_{T−1}/∂s_k‖ against distance.

Burn-in, from the data: the frame needs some steps to turn towards the expanding directions, and
the logs of those steps bias the exponents by about log(cos θ)/n. Beside the frame one more vector,
started from another random direction, is carried back (one cotangent more, not a second frame): it
grows like λ_max once it has turned towards the leading direction. The burn-in is the first step such
that, counted from it or from any later step, the frame's largest exponent and this vector's growth
agree to `ALIGNED` per step, or to `ALIGNED_REL` of it where that is larger, in every sample: from
there the start no longer matters for λ_max. The burn-in is at most half the steps; a frame that does
not settle by then is warned of.

Confidence: the steps after the burn-in are cut into `BLOCKS` blocks; each sample's block means are
the exponents over shorter runs, and their standard deviation over √(samples·blocks) is the stated
standard error (`stderr`); for λ_max it is combined (in quadrature) with the difference between the
two starts' estimates (the bias the burn-in leaves). A `warning` says when the sequences are too
short for an estimate.

`qr_every = m` re-orthonormalises every m steps instead of every step: in exact arithmetic the
diagonal of R_m ⋯ R_1 is the product of the diagonals, so the exponents are the same; the columns
must then not drift apart by more than float64 holds in m steps (e^{(λ_1 − λ_k)·m} ≪ 1e16).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .._checks import InputError, positive_int
from ..engine.sweep import state_vjp
from .jacobian import decay_slope, distances, jacobian_norms, split_state, state_layout
from .progress import task

if TYPE_CHECKING:
    from ..trace import Trace

ALIGNED = 1e-3  # the two starts' λ_max (natural log per step) agree to this: the start no longer matters
ALIGNED_REL = 0.01  # … or to this fraction of the exponent, where that is larger
BLOCKS = 4  # blocks of the steps after the burn-in, for the standard error
MIN_STEPS = 20  # fewer steps after the burn-in than this: too short for an estimate


@dataclass(frozen=True)
class LyapunovSpectrum:
    """exponents (B, k) per sample, largest first; mean (k,) over samples; slope: the measured decay rate.

    burn_in: the steps left out before the logs were counted; steps: those counted. stderr (k,): the
    standard error of `mean` over samples and blocks of steps; spread (k,): the standard deviation
    over samples. warning: why the estimate should not be trusted, None when nothing was found.
    """

    exponents: Tensor
    mean: Tensor
    steps: int
    slope: float | None
    burn_in: int = 0
    stderr: Tensor | None = None
    spread: Tensor | None = None
    warning: str | None = None

    @property
    def max(self) -> float:
        return float(self.mean[0])

    @property
    def max_stderr(self) -> float | None:
        return None if self.stderr is None else float(self.stderr[0])


def lyapunov(
    trace: Trace,
    layer: int = 0,
    direction: int = 0,
    k: int | None = None,
    burn_in: int | None = None,
    compare: bool = True,
    samples: slice | None = None,
    qr_every: int = 1,
    log_norms: Tensor | None = None,
) -> LyapunovSpectrum:
    """The k largest Lyapunov exponents (all S by default) of one layer-direction's recurrence.

    `burn_in` steps are propagated before the logs are accumulated; None chooses it from the data
    (see the module docstring). `compare` also measures the decay slope of the Jacobian norms for
    comparison with λ_max (from `log_norms`, `jacobian_norms(..., of="state", log=True)`, where the
    caller has them). `qr_every` re-orthonormalises every that many steps.

    Example:
        >>> import math, torch, bptt
        >>> from bptt.diagnostics import lyapunov
        >>> rnn = bptt.RNN(1, 3, nonlinearity="linear", bias=False, dtype=torch.float64)
        >>> with torch.no_grad():
        ...     _ = rnn.weight_hh_l0.copy_(torch.diag(torch.tensor([0.5, 0.9, 1.2])))
        >>> x = torch.randn(200, 1, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        >>> tr = bptt.trace(rnn, x, lambda out, h: out.sum())
        >>> [round(x, 4) for x in lyapunov(tr, burn_in=50, compare=False).mean.tolist()]  # log 1.2, log 0.9, log 0.5
        [0.1823, -0.1054, -0.6931]
        >>> spec = lyapunov(tr, compare=False)  # the burn-in chosen from the data: λ_max within its error
        >>> abs(spec.max - math.log(1.2)) < 3 * spec.max_stderr, spec.warning
        (True, None)
    """
    step, tape, p = trace.layer(layer, direction, samples)
    full, warnings = None, []
    ends_at = trace.lengths if trace.lengths is None or samples is None else trace.lengths[samples]
    if ends_at is not None and bool((ends_at < tape.steps).any()):
        # the steps after a sequence's end are padding, not its dynamics: the spectrum is of the
        # sequences that run all T steps
        full = torch.nonzero(ends_at == tape.steps)[:, 0]
        if full.numel() == 0:
            raise InputError(
                f"expected a sequence that runs all T = {tape.steps} steps for the Lyapunov spectrum; "
                f"these end at {sorted(set(ends_at.tolist()))}"
            )
        warnings.append(
            f"{tape.x.shape[1] - full.numel()} of {tape.x.shape[1]} sequences end before step T = {tape.steps} "
            f"and are left out: the spectrum is of the {full.numel()} that run all T steps"
        )
        tape = tape.samples(full)
    layout = state_layout(step, tape)
    S = layout.size
    k = S if k is None else min(k, S)
    m = positive_int("qr_every", qr_every)
    B = tape.x.shape[1]
    order = list(tape.order)
    T = len(order)
    if burn_in is not None and not 0 <= burn_in < T:
        raise InputError(f"expected 0 ≤ burn_in < T = {T}, got {burn_in}")
    g = torch.Generator().manual_seed(0)  # its own generator: the global one is never drawn from
    frame = torch.linalg.qr(torch.randn(S, k, generator=g, dtype=torch.float64))[0]  # (S, k)
    other = torch.randn(S, generator=g, dtype=torch.float64)  # a second start, for λ_max alone
    # (k + 1, B, S): the frame's columns and the second start as cotangents of s_{T−1}, carried back together
    V = torch.cat([frame.T, (other / other.norm())[None]]).reshape(k + 1, 1, S).expand(k + 1, B, S).to(tape.h)
    logs, lead2, ends = [], [], []  # per re-orthonormalisation: (B, k) Σ log |R_ii| over its steps, (B,)
    # the second start's log growth, and its last step
    with task(f"Lyapunov spectrum, {k} exponents", T) as advance:
        for n, t in enumerate(reversed(order)):
            V = torch.cat(state_vjp(step, tape, t, p, split_state(V, layout)), dim=-1)  # rows Vᵀ J_t
            advance(1)
            if (n + 1) % m and n + 1 < T:
                continue
            Q, R = torch.linalg.qr(V[:k].double().permute(1, 2, 0))  # (B, S, k)
            logs.append(R.diagonal(dim1=-2, dim2=-1).abs().clamp_min(1e-300).log())
            v = V[k].double()  # (B, S): one vector grows like λ_max once it has turned towards it
            size = v.norm(dim=-1).clamp_min(1e-300)
            lead2.append(size.log())
            ends.append(n + 1)
            V = torch.cat([Q.permute(2, 0, 1), (v / size[:, None])[None]]).to(tape.h)
    per = torch.stack(logs).cpu()  # (N, B, k), on the CPU with the statistics below
    second = torch.stack(lead2).cpu()  # (N, B)
    lengths = torch.tensor([e - s for s, e in zip([0, *ends[:-1]], ends, strict=True)], dtype=torch.float64)
    if burn_in is None:
        # judged on λ_max's column, which the diagnosis reads
        first, unsettled = _settled(per[..., 0], second, lengths, ends, T)
        if unsettled:
            warnings.append(unsettled)
        start = 0 if first == 0 else ends[first - 1]
    else:
        first = next((i for i, e in enumerate([0, *ends]) if e >= burn_in), len(ends))
        start = ([0, *ends])[first]
    kept, steps = per[first:], int(lengths[first:].sum()) if first < len(ends) else 0
    if steps == 0:
        raise InputError(f"no steps left after a burn-in of {start} of {T}")
    exponents = (kept.sum(0) / steps).sort(dim=-1, descending=True).values
    mean = exponents.mean(0)
    other_max = float((second[first:].sum(0) / steps).mean())
    # the statistical error, and for λ_max the dependence on the start that the burn-in leaves
    stderr = _stderr(kept, lengths[first:])
    stderr[0] = math.hypot(float(stderr[0]), float(mean[0]) - other_max)
    spread = exponents.std(0) if B > 1 else None
    if steps < MIN_STEPS:
        warnings.append(f"only {steps} steps after a burn-in of {start}: too short for an estimate")
    slope = None
    if compare:
        if log_norms is None:
            log_norms = jacobian_norms(trace, "state", layer, direction, log=True, samples=samples)
        if full is not None:
            log_norms = log_norms[full.to(log_norms.device)]
        slope = decay_slope(log_norms, distances(tape))
        tolerance = max(3 * float(stderr[0]), 0.1 * abs(float(mean[0])), 0.02)
        if math.isfinite(slope) and abs(slope - float(mean[0])) > tolerance:
            warnings.append(
                f"λ_max = {float(mean[0]):.3g} and the measured decay slope {slope:.3g} differ by more than "
                f"{tolerance:.2g} (3 standard errors or 10 %): the sequences are too short for an estimate"
            )
    return LyapunovSpectrum(
        exponents, mean, steps, slope, start, stderr, spread, "; ".join(warnings) if warnings else None
    )


def _settled(
    lead: Tensor, second: Tensor, lengths: Tensor, ends: list[int], T: int
) -> tuple[int, str | None]:
    """The first re-orthonormalisation from which on the frame's λ_max (`lead`, (N, B) logs) and the
    second start's (`second`) agree for good: there the start no longer matters. At most the one at
    half the sequence, with a warning where they still differ then."""
    counted = lengths.flip(0).cumsum(0).flip(0)[:, None]  # (N, 1) the steps from i on
    suffix = (lead - second).flip(0).cumsum(0).flip(0) / counted  # (N, B) the difference from i on
    estimate = lead.flip(0).cumsum(0).flip(0) / counted  # the frame's λ_max from i on
    disagree = (suffix.abs() > (ALIGNED_REL * estimate.abs()).clamp_min(ALIGNED)).any(1)
    # the first from which on they agree for good: counted from any later step they agree too
    first = int(torch.nonzero(disagree)[-1, 0]) + 1 if bool(disagree.any()) else 0
    cap = next(i for i, e in enumerate(ends) if e >= T // 2)
    if first > cap:
        return cap, (
            f"the λ_max from two starts still differ by more than {ALIGNED:g} per step "
            f"(or {ALIGNED_REL:.0%}) after {T // 2} steps (half the sequence)"
        )
    return first, None


def _stderr(kept: Tensor, lengths: Tensor) -> Tensor:
    """(k,) standard error of the exponents from the block means of every sample (`BLOCKS` blocks of the
    re-orthonormalisations `kept` (N, B, k), each `lengths` steps long); infinite from a single value."""
    N, B, _ = kept.shape
    blocks = min(BLOCKS, N)
    means = []
    for part, span in zip(kept.tensor_split(blocks), lengths.tensor_split(blocks), strict=True):
        means.append(part.sum(0) / span.sum())  # (B, k)
    # each value sorted like the exponents, so that block i's j-th exponent is compared with the j-th
    values = torch.stack(means).sort(dim=-1, descending=True).values.reshape(blocks * B, -1)
    if values.shape[0] < 2:
        return torch.full((values.shape[1],), math.inf, dtype=torch.float64)
    return values.std(0) / math.sqrt(values.shape[0])
