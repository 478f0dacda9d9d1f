"""Jacobian products through time: how much of the state at step k reaches the last step.

    P_k = ∂s_{T−1}/∂s_k = J_{T−1} J_{T−2} ⋯ J_{k+1},   J_t = ∂s_t/∂s_{t−1}

s is the state a step hands to the next: h for the RNN and GRU, (h, c) for the LSTM, and (h, c, a)
for FGR, whose gates a = [i, f, o] also feed the next step. The rows of P_k are the cotangents of
s_k that BPTT produces from unit cotangents at s_{T−1}, so the products are one backward sweep of
the cell's own hand-written step (`engine.sweep.state_vjp`) with many cotangents at once: O(T)
Jacobian products in all, never T separate backward passes.

Methods (`jacobian_norms(method=…)`):

* `"exact"` propagates all R unit cotangents (R = the rows asked for) and takes the largest
  singular value of every P_k from its Gram matrix; cost O(T · B · R · (R + cost of a step)).
* `"probes"` (opt-in, for large H) propagates `probes = m` random orthonormal cotangents Ω (R×m)
  instead and returns σ_max(Ωᵀ P_k). Error bound: the estimate is never above the exact value,
  and it is at least ‖Ωᵀu₁‖·σ_max(P_k), u₁ being P_k's top left singular vector. For Haar-random Ω,
  ‖Ωᵀu₁‖² follows Beta(m/2, (R−m)/2), so P(estimate ≥ δ·exact) ≥ 1 − I_{δ²}(m/2, (R−m)/2)
  (`probe_confidence` computes it). With m = R the estimate is exact.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from scipy.special import betainc
from torch import Tensor

from .. import _checks
from .._checks import InputError
from ..cells import registry
from ..engine.sweep import Step, state_vjp
from ..engine.tape import Tape
from .progress import task

if TYPE_CHECKING:
    from ..trace import Trace

OF = ("state", "h", "c", "cec")
METHODS = ("exact", "probes")


@dataclass(frozen=True)
class StateLayout:
    """The components of a cell's state and their sizes: ("h",), ("h", "c") or ("h", "c", "a")."""

    names: tuple[str, ...]
    sizes: tuple[int, ...]

    @property
    def size(self) -> int:
        return sum(self.sizes)

    def span(self, name: str) -> slice:
        start = sum(self.sizes[: self.names.index(name)])
        return slice(start, start + self.sizes[self.names.index(name)])


def state_layout(step: Step, tape: Tape) -> StateLayout:
    """h, then what the step carries besides h (its `initial_carry`): c for a cell with a cell state,
    and for FGR the gates a = [i, f, o] that also feed the next step."""
    carry = step.initial_carry(tape, None)
    names = ["h", "c"] if step.has_cell else ["h"]
    names += ["a" if k == 0 else f"a{k}" for k in range(len(carry) + 1 - len(names))]
    return StateLayout(tuple(names), (tape.h.shape[-1], *(int(c.shape[-1]) for c in carry)))


def split_state(x: Tensor, layout: StateLayout) -> tuple[Tensor, ...]:
    """(…, S) → one tensor per component."""
    return tuple(x[..., layout.span(n)] for n in layout.names)


def step_jacobian(
    trace: Trace, t: int, layer: int = 0, direction: int = 0, samples: slice | None = None
) -> Tensor:
    """J_t = ∂s_t/∂s_{t−1} for every sample: (B, S, S), row i = e_iᵀ J_t (one backward step of S unit cotangents)."""
    step, tape, p = trace.layer(layer, direction, samples)
    layout = state_layout(step, tape)
    B, S = tape.x.shape[1], layout.size
    eye = torch.eye(S, dtype=tape.h.dtype, device=tape.h.device)[:, None, :].expand(S, B, S)
    rows = state_vjp(step, tape, t, p, split_state(eye, layout))
    return torch.cat(rows, dim=-1).permute(1, 0, 2)


def sigma_max(M: Tensor) -> Tensor:
    """Largest singular value of each (R, C) matrix in a (B, R, C) batch, from the smaller Gram matrix."""
    G = M @ M.mT if M.shape[-2] <= M.shape[-1] else M.mT @ M
    eigenvalues: Tensor = torch.linalg.eigvalsh(G)
    return eigenvalues[..., -1].clamp_min(0).sqrt()


def sigma_max_warm(
    M: Tensor, u: Tensor | None, rtol: float = 1e-10, iters: int = 40
) -> tuple[Tensor, Tensor]:
    """σ_max of each (R, C) matrix of M (B, R, C) by power iteration on G = M Mᵀ from u (B, R), certified.

    The Rayleigh quotient λ = uᵀGu of a unit u lies within r = ‖Gu − λu‖ of an eigenvalue of G. When
    λ − r > tr(G) − (λ − r), no other eigenvalue can reach it (the eigenvalues are ≥ 0 and sum to
    tr(G) = ‖M‖²_F), so λ is the largest to within r ≤ rtol·λ. A sample that cannot be certified
    (λ below 0.4·tr(G) after three rounds: no dominant direction yet, as for short products) or is
    not certified within `iters` rounds is solved exactly by `sigma_max`. Consecutive products P_k
    share their top left singular vector more and more as k recedes, so a warm start certifies in a
    few rounds. Returns (σ_max (B,), the top left singular vectors (B, R) to warm-start the next call).
    """
    M = M.double()
    trace_g = (M * M).sum((1, 2))
    u = M.norm(dim=2) if u is None else u.double()
    u = u / u.norm(dim=1, keepdim=True).clamp_min(1e-300)
    lam = torch.zeros_like(trace_g)
    certified = torch.zeros_like(trace_g, dtype=torch.bool)
    hopeless = torch.zeros_like(certified)
    for n in range(iters):
        Gu = (M @ (M.mT @ u[..., None]))[..., 0]
        lam = (u * Gu).sum(1)
        r = (Gu - lam[:, None] * u).norm(dim=1)
        certified = (r <= rtol * lam) & (lam - r > trace_g - lam + r)
        if n >= 2:
            hopeless = ~certified & (lam < 0.4 * trace_g)
        if bool((certified | hopeless).all()):
            break
        u = Gu / Gu.norm(dim=1, keepdim=True).clamp_min(1e-300)
    sigma = lam.clamp_min(0).sqrt()
    if not bool(certified.all()):
        rest = ~certified
        sigma[rest] = sigma_max(M[rest])
    return sigma, u


def _unit_rows(
    layout: StateLayout, rows: tuple[str, ...], B: int, like: Tensor, frame: Tensor
) -> tuple[Tensor, ...]:
    """Cotangents of s_{T−1} whose non-zero part, on the `rows` components, is `frame` (N, R)."""
    N = frame.shape[0]
    out, offset = [], 0
    for name, size in zip(layout.names, layout.sizes, strict=True):
        block = like.new_zeros((N, B, size))
        if name in rows:
            block[:] = frame[:, None, offset : offset + size]
            offset += size
        out.append(block)
    return tuple(out)


def _forget_product_norms(step: Step, tape: Tape) -> Tensor:
    """‖∏_{i=k+1}^{T−1} diag(f_i)‖ = max_j ∏ f_ij for every k: the Constant Error Carousel alone.

    A step with a `carry_factor` gives its own carry factor in place of f: minGRU 1 − z, minLSTM f',
    sLSTM 1 − i'/n (the normalised carry c/n), LRU |λ| (its carry rotates and scales by |λ|).
    """
    T, B, H = tape.steps, tape.x.shape[1], tape.hidden_size
    carry_factor = getattr(step, "carry_factor", None)
    if carry_factor is not None:
        f = carry_factor(tape)
    else:
        spec = registry.spec_of(step)
        if spec is None:
            raise InputError(
                f"the carousel needs a registered cell that names its carry gate; {type(step).__name__} is not one"
            )
        f = step.gates(tape).get(spec.carry_gate) if spec.carry_gate is not None else None
    log_f = torch.zeros(T, B, H, dtype=torch.float64, device=tape.x.device) if f is None else f.double().log()
    H = log_f.shape[-1]
    order = list(tape.order)
    # Σ_{i>k} log f_i for every k: a cumulative sum from the last step this direction visits
    after = log_f[order].flip(0).cumsum(0).flip(0)  # after[idx] = Σ over the visits idx, idx+1, …
    out = torch.empty(B, T, dtype=torch.float64, device=tape.x.device)
    out[:, order[-1]] = 1.0
    out[:, order[:-1]] = after[1:].amax(-1).exp().T
    return out


def jacobian_norms(
    trace: Trace,
    of: str = "state",
    layer: int = 0,
    direction: int = 0,
    method: str = "exact",
    probes: int = 16,
    seed: int = 0,
    log: bool = False,
    samples: slice | None = None,
) -> Tensor:
    """(B, T) spectral norms ‖∂s_{T−1}/∂s_k‖₂ for every sample b and step k (float64; k = T−1 gives 1).

    Where the trace has `lengths`, each sequence's products start at its own last step
    (∂s_{len−1}/∂s_k) and read NaN after it.

    Arguments:
        trace: a `bptt.Trace`.
        of: `"state"` (the whole state), `"h"` or `"c"` (the h→h or c→c block of the LSTM's product),
            `"cec"` (the Constant Error Carousel ∏ diag(f_i) alone; f = 1 without a forget gate; the
            cell's carry factor for minGRU, minLSTM, sLSTM and LRU).
        layer, direction: which layer-direction; "last step" is the last one that direction visits.
        method: `"exact"` or `"probes"` (see the module docstring for the estimator's error bound).
        probes: number of random cotangents for `method="probes"`.
        seed: seed of the probes.
        log: return natural logs of the norms, which never underflow (norms below 1e−308 read 0).
        samples: a slice of the batch to measure (the products cost O(B) each); all by default.

    Example:
        >>> import torch, bptt
        >>> tr = bptt.trace(bptt.LSTM(2, 8), torch.randn(30, 3, 2), lambda out, s: out[-1].sum())
        >>> norms = bptt.diagnostics.jacobian_norms(tr, of="state")
        >>> norms.shape, float(norms[0, -1])
        (torch.Size([3, 30]), 1.0)
    """
    _checks.choice("of", of, OF)
    _checks.choice("method", method, METHODS)
    # a trace does not change: the products of one request are computed once (the Lyapunov estimate's
    # comparison and a summary ask again for what a caller often just asked for)
    span = None if samples is None else samples.indices(1 << 62)
    key = ("jacobian_norms", of, layer, direction, method, probes, seed, span)
    if key not in trace.memo:
        trace.memo[key] = _jacobian_log_norms(trace, of, layer, direction, method, probes, seed, samples)
    out = trace.memo[key].clone()
    return out if log else out.exp()


def _jacobian_log_norms(
    trace: Trace,
    of: str,
    layer: int,
    direction: int,
    method: str,
    probes: int,
    seed: int,
    samples: slice | None,
) -> Tensor:
    step, tape, p = trace.layer(layer, direction, samples)
    layout = state_layout(step, tape)
    if (of == "c" or (of == "cec" and not hasattr(step, "carry_factor"))) and not step.has_cell:
        raise InputError(f"of={of!r} needs an LSTM (a cell state c); this model's state is {layout.names}")
    lengths = trace.lengths if trace.lengths is None or samples is None else trace.lengths[samples]
    B, T = tape.x.shape[1], tape.steps
    if lengths is None or bool((lengths == T).all()):
        out = _tape_norms(step, tape, p, of, method, probes, seed)
    else:  # each sequence's products start at its own last step; NaN after it
        out = torch.full((B, T), math.nan, dtype=torch.float64, device=tape.h.device)
        for L in sorted({int(n) for n in lengths.tolist()}):
            index = torch.nonzero(lengths == L)[:, 0]
            sub = _first_steps(tape.samples(index), L)
            out[index, :L] = _tape_norms(step, sub, p, of, method, probes, seed)
    return out


def _first_steps(tape: Tape, L: int) -> Tape:
    """The tape of the first L time positions: views, no copies."""

    def cut(x: Tensor | None, n: int) -> Tensor | None:
        return None if x is None else x[:n]

    out = dataclasses.replace(
        tape,
        x=tape.x[:L],
        h_buf=tape.h_buf[: L + 1],
        c_buf=cut(tape.c_buf, L + 1),
        gates_buf=cut(tape.gates_buf, L + 1),
        extras={k: v[:L] for k, v in tape.extras.items()},
        dh=cut(tape.dh, L),
        dc=cut(tape.dc, L),
        dgx=cut(tape.dgx, L),
        dout=cut(tape.dout, L),
    )
    out.dgh = out.dgx if tape.dgh is tape.dgx else cut(tape.dgh, L)
    return out


def _tape_norms(
    step: Step, tape: Tape, p: dict[str, Tensor], of: str, method: str, probes: int, seed: int
) -> Tensor:
    """(B, T) log ‖∂s_last/∂s_k‖ of one tape (see `jacobian_norms`)."""
    layout = state_layout(step, tape)
    if of == "cec":
        return _forget_product_norms(step, tape).log()
    rows = layout.names if of == "state" else (of,)
    R = sum(layout.sizes[layout.names.index(n)] for n in rows)
    B, T = tape.x.shape[1], tape.steps
    dtype, device = tape.h.dtype, tape.h.device
    if method == "exact":
        frame = torch.eye(R, dtype=dtype, device=device)
    else:
        m = _checks.positive_int("probes", probes)
        g = torch.Generator(device="cpu").manual_seed(seed)
        frame = torch.linalg.qr(torch.randn(R, min(m, R), generator=g, dtype=torch.float64))[0].T.to(
            dtype=dtype, device=device
        )
    cot = _unit_rows(layout, rows, B, tape.h, frame)
    order = list(tape.order)
    out = torch.empty(B, T, dtype=torch.float64, device=device)
    out[:, order[-1]] = math.log(sigma_max(frame[None].double()).item())
    log_scale = torch.zeros(B, dtype=torch.float64, device=device)
    u = None  # the top left singular vectors of the last product, to warm-start the next
    with task(f"Jacobian norms ({of})", len(order) - 1) as advance:
        for idx in range(len(order) - 1, 0, -1):
            advance(1)
            cot = state_vjp(step, tape, order[idx], p, cot)  # rows of ∂s_{T−1}/∂s_{k}, k = order[idx − 1]
            # keep the cotangents near 1 per sample so that long products neither underflow nor overflow
            scale = (
                torch.stack([c.abs().amax(dim=(0, 2)) for c in cot])
                .amax(0)
                .clamp_min(torch.finfo(dtype).tiny)
            )
            cot = tuple(c / scale[None, :, None] for c in cot)
            log_scale += scale.double().log()
            M = torch.cat([cot[layout.names.index(n)] for n in rows], dim=-1).permute(1, 0, 2)  # (B, N, R)
            sigma, u = sigma_max_warm(M, u)
            out[:, order[idx - 1]] = sigma.log() + log_scale
    return out


def probe_confidence(delta: float, probes: int, rows: int) -> float:
    """A lower bound on P(σ_max(Ωᵀ P) ≥ δ·σ_max(P)) for `probes` Haar-random orthonormal cotangents among `rows`.

    ‖Ωᵀu₁‖² ~ Beta(m/2, (R − m)/2) and the estimate is at least ‖Ωᵀu₁‖·σ_max, so the bound is
    1 − I_{δ²}(m/2, (R − m)/2).

    Example:
        >>> round(probe_confidence(0.3, 32, 256), 3)
        0.893
    """
    if probes >= rows:
        return 1.0
    return 1.0 - float(betainc(probes / 2, (rows - probes) / 2, delta * delta))


def distances(tape: Tape) -> Tensor:
    """(T,) steps from each position k to the last step its direction visits."""
    T = tape.steps
    k = torch.arange(T, dtype=torch.float64)
    return k if tape.reverse else (T - 1) - k


def decay_slope(log_norms: Tensor, distance: Tensor, min_distance: int = 5) -> float:
    """Least-squares slope of log ‖∂s_{T−1}/∂s_k‖ (`jacobian_norms(..., log=True)`, mean over samples) against distance."""
    logs = log_norms.nanmean(0).to(distance.device)
    keep = (distance >= min_distance) & torch.isfinite(logs)
    if int(keep.sum()) < 2:
        return float("nan")
    x, y = distance[keep], logs[keep]
    x = x - x.mean()
    return float((x * (y - y.mean())).sum() / (x * x).sum())
