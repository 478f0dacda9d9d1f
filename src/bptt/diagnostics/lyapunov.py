"""The Lyapunov spectrum of the recurrent dynamics along the actual inputs (QR method).

    Q ← J_t Q,   Q, R = qr(Q),   λ_i = (1/n) Σ_t log |R_ii|      (natural log per step)

J_t = ∂s_t/∂s_{t−1} is the step Jacobian along the traced inputs (Engelken et al. 2020;
Vogt et al. 2022). λ_max < 0 means that perturbations, and gradients, shrink like e^(λ_max·d) over
a distance d; it is compared with the measured slope of log ‖∂s_{T−1}/∂s_k‖ against distance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .._checks import InputError
from .jacobian import decay_slope, distances, jacobian_norms, state_layout, step_jacobian

if TYPE_CHECKING:
    from ..trace import Trace


@dataclass(frozen=True)
class LyapunovSpectrum:
    """exponents (B, k) per sample, largest first; mean (k,) over samples; slope: the measured decay rate."""

    exponents: Tensor
    mean: Tensor
    steps: int
    slope: float | None

    @property
    def max(self) -> float:
        return float(self.mean[0])


def lyapunov(
    trace: Trace,
    layer: int = 0,
    direction: int = 0,
    k: int | None = None,
    burn_in: int = 0,
    compare: bool = True,
    samples: slice | None = None,
) -> LyapunovSpectrum:
    """The k largest Lyapunov exponents (all S by default) of one layer-direction's recurrence.

    `burn_in` steps are propagated before the logs are accumulated: the frame Q needs a few steps
    to align with the expanding directions, and over a finite run that transient biases the
    exponents by about log(cos θ)/T otherwise. `compare` also measures the decay slope of the
    Jacobian norms for comparison with λ_max.

    Example:
        >>> import torch, bptt
        >>> from bptt.diagnostics import lyapunov
        >>> rnn = bptt.RNN(1, 3, nonlinearity="linear", bias=False)
        >>> with torch.no_grad():
        ...     _ = rnn.weight_hh_l0.copy_(torch.diag(torch.tensor([0.5, 0.9, 1.2])))
        >>> tr = bptt.trace(rnn, torch.randn(200, 1, 1), lambda out, h: out.sum())
        >>> [round(x, 4) for x in lyapunov(tr, burn_in=50, compare=False).mean.tolist()]  # log 1.2, log 0.9, log 0.5
        [0.1823, -0.1054, -0.6931]
    """
    step, tape, _ = trace.layer(layer, direction, samples)
    S = state_layout(step, tape).size
    k = S if k is None else min(k, S)
    B = tape.x.shape[1]
    order = list(tape.order)
    if not 0 <= burn_in < len(order):
        raise InputError(f"expected 0 ≤ burn_in < T = {len(order)}, got {burn_in}")
    g = torch.Generator().manual_seed(0)
    dev = tape.x.device  # a CUDA trace's Jacobians stay on its device
    Q = (
        torch.linalg.qr(torch.randn(S, k, generator=g, dtype=torch.float64))[0]
        .to(dev)
        .expand(B, S, k)
        .clone()
    )
    acc = torch.zeros(B, k, dtype=torch.float64, device=dev)
    for n, t in enumerate(order):
        J = step_jacobian(trace, t, layer, direction, samples).double()
        Q, R = torch.linalg.qr(J @ Q)
        if n >= burn_in:
            acc += R.diagonal(dim1=-2, dim2=-1).abs().clamp_min(1e-300).log()
    exponents = (acc / (len(order) - burn_in)).sort(dim=-1, descending=True).values
    slope = None
    if compare:
        log_norms = jacobian_norms(trace, "state", layer, direction, log=True, samples=samples)
        slope = decay_slope(log_norms, distances(tape))
    return LyapunovSpectrum(exponents, exponents.mean(0), len(order) - burn_in, slope)
