"""The seeds' bounds: γ·λ1 for the Elman RNN, the forget gate for the LSTM's carousel.

For h_t = a(W_hh h_{t−1} + …), ∂h_t/∂h_{t−1} = diag(a'(z_t)) W_hh, so with ‖diag(a')‖ ≤ γ
(tanh 1, sigmoid 1/4, ReLU 1, linear 1) and λ1 the largest *singular value* of W_hh:

    γ·λ1 < 1  ⇒  every step shrinks the gradient: vanishing is guaranteed (sufficient);
    γ·λ1 > 1  ⇒  exploding becomes possible (necessary, not sufficient).

Seed 001 says "largest eigenvalue"; for a non-normal W_hh the spectral radius ρ can sit below 1/γ
while λ1 is above it, and the gradient can grow for many steps. Both are reported, with the
verdict the eigenvalue reading would give, so the difference shows.

The bound needs the Elman form; a gated cell has none. Its W_hh stacks one H×P block per gate
(the GRU's W_hr, W_hz, W_hn; the LSTM's W_hi, W_hf, W_hg, W_ho), and the largest singular value of
the stack says nothing a reader can use, so for a gated cell λ1 is given per block
(`gate_lambda1`) and the verdict says what does bound it: for the LSTM the Constant Error Carousel
path ∏ diag(f_i) ≤ (max f)^distance (a trace supplies max f), and for every cell, along a trace, the
measured step Jacobians: ‖∂s_T/∂s_k‖ ≤ ∏_{t>k} ‖∂s_t/∂s_{t−1}‖, whose geometric mean per step is
`step_rate`. Along a trace the Elman bound is also checked step by step: ‖diag(a'(z_t))‖ ≤ γ and
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
from .progress import task

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
    gate_lambda1: dict[str, float] | None = None  # gated cells: λ1 of each gate's block of W_hh
    step_rate: float | None = None  # along a trace: exp(mean over samples and steps of log ‖∂s_t/∂s_{t−1}‖)
    measured_verdict: str | None = None  # along a trace: what the measured step Jacobians guarantee

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
        gate_lambda1 = None
        if "weight_hh" in plan.suffixes:
            W = getattr(model, plan.names[plan.suffixes.index("weight_hh")]).detach().double()
            lam = float(torch.linalg.matrix_norm(W, ord=2))
            rho = float(torch.linalg.eigvals(W).abs().max()) if W.shape[0] == W.shape[1] else None
            gate_lambda1 = gate_blocks_lambda1(W, model.step.gate_names, model.hidden_size)
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
        bound = LayerBound(name, cell, gamma, lam, rho, v, ev, gate_lambda1=gate_lambda1)
        if trace is not None:
            bound = _measured(bound, trace, plan.layer, int(plan.reverse), spec, samples)
        out.append(bound)
    return out


def gate_blocks_lambda1(W: Tensor, gate_names: tuple[str, ...], hidden_size: int) -> dict[str, float] | None:
    """λ1 = ‖W_h·‖₂ of each gate's H×P block of a stacked W_hh (G·H × P), in `gate_names` order; None
    for a single block (the Elman RNN, whose λ1 is the whole W_hh's).

    Example:
        >>> import torch
        >>> W = torch.cat([2 * torch.eye(2), 3 * torch.eye(2), torch.eye(2)])  # the GRU's W_hr, W_hz, W_hn
        >>> gate_blocks_lambda1(W, ("r", "z", "n"), 2)
        {'r': 2.0, 'z': 3.0, 'n': 1.0}
    """
    if len(gate_names) < 2 or W.shape[0] != len(gate_names) * hidden_size:
        return None
    blocks = W.reshape(len(gate_names), hidden_size, W.shape[-1])
    lam = torch.linalg.matrix_norm(blocks.double(), ord=2)
    return {g: float(v) for g, v in zip(gate_names, lam, strict=True)}


def measured_verdict(step_rate: float, steps: int, max_forget: float | None) -> str:
    """What the measured step Jacobians guarantee: ‖∂s_T/∂s_0‖ ≤ ∏_t ‖∂s_t/∂s_{t−1}‖ = step_rate^steps.

    Example:
        >>> measured_verdict(0.9, 100, None)
        'along these inputs vanishing guaranteed: ∏‖∂s_t/∂s_{t−1}‖ = 0.9^100 = 2.66e-05'
    """
    whole = step_rate**steps
    product = f"∏‖∂s_t/∂s_{{t−1}}‖ = {step_rate:.3g}^{steps} = {whole:.3g}"
    if step_rate < 1:
        text = f"along these inputs vanishing guaranteed: {product}"
    else:
        text = (
            f"along these inputs growth possible: {product} (a bound; the measured products may still shrink)"
        )
    if max_forget is not None:
        text += f"; the carry path ∏ f ≤ {max_forget:.3g}^distance"
    return text


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
    whole = torch.empty(B, T, dtype=torch.float64)
    with task(f"step Jacobians {bound.name}", T) as advance:
        for t in tape.order:
            J = step_jacobian(trace, t, layer, direction, samples).double()  # ∂s_t/∂s_{t−1}
            whole[:, t] = sigma_max(J)
            norms[:, t] = (
                sigma_max(J[:, h, h]) if J.shape[-1] != h.stop - h.start else whole[:, t]
            )  # ∂h_t/∂h_{t−1}
            advance(1)
    rate = float(whole.clamp_min(1e-300).log().mean().exp())
    act_grad = max_forget = None
    if bound.gamma is not None and spec is not None and spec.activation_grad is not None:
        act = spec.activation_grad(step, tape.h)  # a'(z_t)
        act_grad = act.abs().amax(-1).double().T  # (B, T)
    if step.has_cell and spec is not None:
        f = step.gates(tape).get(spec.carry_gate) if spec.carry_gate is not None else None
        max_forget = float(f.max()) if f is not None else 1.0  # no forget gate: f = 1
    return dataclasses.replace(
        bound,
        step_norm=norms,
        act_grad=act_grad,
        max_forget=max_forget,
        step_rate=rate,
        measured_verdict=measured_verdict(rate, T, max_forget),
    )
