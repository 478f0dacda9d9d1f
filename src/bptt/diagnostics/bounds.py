"""The seeds' bounds: γ·λ1 for the Elman RNN, the forget gate for the LSTM's carousel.

For h_t = a(W_hh h_{t−1} + …), ∂h_t/∂h_{t−1} = diag(a'(z_t)) W_hh, so with ‖diag(a')‖ ≤ γ
(tanh 1, sigmoid 1/4, ReLU 1, linear 1) and λ1 the largest *singular value* of W_hh:

    γ·λ1 < 1  ⇒  every step shrinks the gradient: vanishing is guaranteed (sufficient);
    γ·λ1 > 1  ⇒  exploding becomes possible (necessary, not sufficient).

Seed 001 says "largest eigenvalue"; for a non-normal W_hh the spectral radius ρ can sit below 1/γ
while λ1 is above it, and the gradient can grow for many steps. Both are reported, with the
verdict the eigenvalue reading would give, so the difference shows.

For the LSTM the Constant Error Carousel path ∏ diag(f_i) is bounded by (max f)^distance; a trace
supplies max f. Along a trace the bound is also checked step by step: ‖diag(a'(z_t))‖ ≤ γ and
‖∂h_t/∂h_{t−1}‖ ≤ γ·λ1.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from .._checks import InputTypeError
from ..cells import registry
from ..cells.base import RecurrentBase
from .jacobian import sigma_max, state_layout, step_jacobian

if TYPE_CHECKING:
    from ..trace import Trace


def verdict(gamma: float, lam: float) -> str:
    g = gamma * lam
    if g < 1:
        return f"vanishing guaranteed (γ·λ = {g:.3g} < 1)"
    if g > 1:
        return f"exploding possible (γ·λ = {g:.3g} > 1; necessary, not sufficient)"
    return "on the boundary (γ·λ = 1)"


@dataclass(frozen=True)
class LayerBound:
    """The bound for one layer-direction (`name` like "l0" or "l1_reverse")."""

    name: str
    cell: str
    gamma: float | None  # sup |a'| of the Elman nonlinearity; None where the Elman bound does not apply
    lambda1: float  # largest singular value of W_hh
    spectral_radius: float | None  # largest |eigenvalue| of W_hh (square W_hh only)
    verdict: str
    eigen_verdict: str | None  # what seed 001's "eigenvalue" reading would conclude
    max_forget: float | None = None  # LSTM, from a trace: the CEC path is ≤ max_forget^distance
    act_grad: Tensor | None = None  # (B, T) ‖diag(a'(z_t))‖ measured along a trace (Elman)
    step_norm: Tensor | None = None  # (B, T) ‖∂h_t/∂h_{t−1}‖ measured along a trace

    @property
    def threshold(self) -> float | None:
        """1/γ, the value of λ1 that separates the verdicts."""
        return 1.0 / self.gamma if self.gamma else None


def bounds(model: nn.Module, trace: Trace | None = None, samples: slice | None = None) -> list[LayerBound]:
    """γ, λ1, ρ and the verdicts for every layer-direction; with a trace, also measured along it
    (for `samples` of its batch, all by default).

    Example:
        >>> import torch, bptt
        >>> from bptt.diagnostics import bounds
        >>> rnn = bptt.RNN(2, 4, nonlinearity="sigmoid")
        >>> with torch.no_grad():
        ...     _ = rnn.weight_hh_l0.copy_(3.9 * torch.eye(4))
        >>> bounds(rnn)[0].verdict
        'vanishing guaranteed (γ·λ = 0.975 < 1)'
    """
    from ..convert import from_torch, torch_recurrent

    if trace is not None:
        model = trace.model
    elif isinstance(model, torch_recurrent()):
        model = from_torch(model)
    if not isinstance(model, RecurrentBase):
        raise InputTypeError(f"expected a bptt or torch.nn RNN/LSTM/GRU, got {type(model).__name__}")
    out = []
    for plan in model.plans:
        if "weight_hh" in plan.suffixes:
            W = getattr(model, plan.names[plan.suffixes.index("weight_hh")]).detach().double()
            lam = float(torch.linalg.matrix_norm(W, ord=2))
            rho = float(torch.linalg.eigvals(W).abs().max()) if W.shape[0] == W.shape[1] else None
        else:  # no recurrent weights (minGRU, minLSTM, LRU): W_hh = 0; the cell's own note says what bounds it
            lam, rho = 0.0, None
        name = plan.names[0].removeprefix("weight_ih_")
        cell = registry.label(model.step)
        spec = registry.spec_of(model.step)
        gamma = spec.gamma(model.step) if spec is not None else None
        if gamma is not None:
            v, ev = verdict(gamma, lam), verdict(gamma, rho) if rho is not None else None
        else:
            v, ev = spec.bound_note if spec is not None else "no bound declared for this cell", None
        bound = LayerBound(name, cell, gamma, lam, rho, v, ev)
        if trace is not None:
            bound = _measured(bound, trace, plan.layer, int(plan.reverse), spec, samples)
        out.append(bound)
    return out


def _measured(
    bound: LayerBound,
    trace: Trace,
    layer: int,
    direction: int,
    spec: registry.CellSpec | None,
    samples: slice | None,
) -> LayerBound:
    """`bound` with what the trace measures along the way: step norms, a'(z_t), the largest forget gate."""
    step, tape, _ = trace.layer(layer, direction, samples)
    B, T = tape.x.shape[1], tape.steps
    layout = state_layout(step, tape)
    h = layout.span("h")
    norms = torch.empty(B, T, dtype=torch.float64)
    for t in tape.order:
        # ∂h_t/∂h_{t−1} (the h→h block for the LSTM)
        J = step_jacobian(trace, t, layer, direction, samples)[:, h, h]
        norms[:, t] = sigma_max(J.double())
    act_grad = max_forget = None
    if bound.gamma is not None and spec is not None and spec.activation_grad is not None:
        act = spec.activation_grad(step, tape.h)  # a'(z_t)
        act_grad = act.abs().amax(-1).double().T  # (B, T)
    if step.has_cell and spec is not None:
        f = step.gates(tape).get(spec.carry_gate) if spec.carry_gate is not None else None
        max_forget = float(f.max()) if f is not None else 1.0  # no forget gate: f = 1
    return dataclasses.replace(bound, step_norm=norms, act_grad=act_grad, max_forget=max_forget)
