"""The Linear Recurrent Unit (Orvieto et al. 2023, "Resurrecting Recurrent Neural Networks for Long Sequences").

A diagonal complex linear recurrence with exponentially parametrised eigenvalues and the γ normalisation:

    λ_j = exp(−exp(ν_j) + i·exp(θ_j))                 |λ_j| = exp(−exp(ν_j)) < 1 for every ν
    x_t = λ ⊙ x_{t−1} + γ ⊙ (B u_t),   γ_j = exp(γ_log_j), initialised to √(1 − |λ_j|²)
    y_t = Re(C x_t) + D u_t

x_t ∈ ℂ^N is the cell state (stored as [Re x | Im x], (…, 2N)); y_t ∈ ℝ^H is the output h_t. The
state Jacobian ∂x_t/∂x_{t−1} = diag(λ) (a rotation by arg λ_j scaled by |λ_j| in each coordinate
pair) does not depend on the inputs, so ‖∂x_T/∂x_k‖ = max_j |λ_j|^(T−k) exactly (`bptt theory`).

Layout per layer (the paper's parameters, PyTorch-style names):
`weight_ih_l{k}` (2N + H, I) = [B_re; B_im; D], so that one product gives B u_t and D u_t for all t;
`weight_hc_l{k}` (H, 2N) = [C_re | C_im]; `nu_log_l{k}`, `theta_log_l{k}`, `gamma_log_l{k}` (N,).
Initialisation as the paper: |λ| uniform on the ring [r_min, r_max] (in area), phase uniform in
[0, θ_max], γ = √(1 − |λ|²); B_re, B_im Gaussian with variance 1/(2I), C_re, C_im with variance 1/N,
D with variance 1/I.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .. import _checks
from .._checks import InputError
from ..engine.sweep import Carry, Params, StepGrads
from ..engine.tape import Tape, state_buffer
from ..engine.terms import Outer, Sum, Term, projection_terms
from . import registry
from .base import RecurrentBase


@dataclass(frozen=True)
class LRUStep:
    """One step of the LRU, forward and backward; the cell state is [Re x | Im x]."""

    state_size: int
    gate_names: tuple[str, ...] = ()
    fold_bias_hh: bool = True
    separate_dgh: bool = False
    has_cell: bool = True

    def cell_size(self, hidden_size: int) -> int:
        return 2 * self.state_size

    def projection_width(self, hidden_size: int) -> int:
        return 2 * self.state_size + hidden_size  # B u_t (real and imaginary parts) and D u_t

    def parameter_shapes(self, input_size: int, hidden_size: int, bias: bool) -> dict[str, tuple[int, ...]]:
        N, H = self.state_size, hidden_size
        return {
            "weight_ih": (2 * N + H, input_size),
            "weight_hc": (H, 2 * N),
            "nu_log": (N,),
            "theta_log": (N,),
            "gamma_log": (N,),
        }

    @staticmethod
    def eigenvalues(p: Params) -> tuple[Tensor, Tensor]:
        """(Re λ, Im λ) from ν and θ: λ = exp(−exp(ν)) (cos exp(θ) + i sin exp(θ))."""
        modulus = torch.exp(-torch.exp(p["nu_log"]))
        phase = torch.exp(p["theta_log"])
        return modulus * torch.cos(phase), modulus * torch.sin(phase)

    def new_tape(
        self, x: Tensor, h0: Tensor | None, c0: Tensor | None, reverse: bool, params: Params
    ) -> Tape:
        assert h0 is not None  # no `zero_state`: the model passes zeros
        assert c0 is not None
        T = x.shape[0]
        c_buf = state_buffer(c0, T)
        tape = Tape(x=x, reverse=reverse, hidden_size=h0.shape[-1], h_buf=state_buffer(h0, T), c_buf=c_buf)
        start = tape.initial_slot()
        tape.h_buf[start], c_buf[start] = h0, c0
        modulus = torch.exp(-torch.exp(params["nu_log"].detach()))
        tape.extras["modulus"] = modulus.expand(T, x.shape[1], self.state_size)  # |λ|, a view
        return tape

    def forward(self, t: int, gx: Tensor, gh: Tensor, tape: Tape, p: Params) -> None:
        N = self.state_size
        lam_re, lam_im = self.eigenvalues(p)
        gamma = torch.exp(p["gamma_log"])
        bu_re, bu_im, du = gx[..., :N], gx[..., N : 2 * N], gx[..., 2 * N :]  # B u_t = bu_re + i·bu_im, D u_t
        x_re, x_im = torch.split(tape.c_prev[t], N, dim=-1)
        new_re, new_im = torch.split(tape.c[t], N, dim=-1)
        # x_t = λ x_{t−1} + γ B u_t, in real and imaginary parts
        torch.addcmul(gamma * bu_re, lam_re, x_re, out=new_re).addcmul_(lam_im, x_im, value=-1)
        torch.addcmul(gamma * bu_im, lam_re, x_im, out=new_im).addcmul_(lam_im, x_re)
        # y_t = Re(C x_t) + D u_t = [C_re | −C_im] [x_re; x_im] + D u_t
        torch.addmm(du, tape.c[t], (p["weight_hc"] * _signs(N, du)).T, out=tape.h[t])

    def initial_state(self, h0: Tensor, c0: Tensor | None) -> Carry:
        assert c0 is not None
        return h0, c0  # (y_0, [Re x_0 | Im x_0]); y_0 is not read

    def cell(self, gx: Tensor, gh: Tensor, state: Carry, p: Params) -> Carry:
        """`forward` out of place, for autograd: (y_{t−1}, [Re x | Im x]_{t−1}) → (y_t, [Re x | Im x]_t).

        The output y_t comes first, where the other cells keep h_t; gh is empty (no W_hh).
        """
        N = self.state_size
        lam_re, lam_im = self.eigenvalues(p)
        gamma = torch.exp(p["gamma_log"])
        bu_re, bu_im, du = gx[..., :N], gx[..., N : 2 * N], gx[..., 2 * N :]  # B u_t = bu_re + i·bu_im, D u_t
        x_re, x_im = torch.split(state[1], N, dim=-1)
        # x_t = λ x_{t−1} + γ B u_t, in real and imaginary parts
        new_re = gamma * bu_re + lam_re * x_re - lam_im * x_im
        new_im = gamma * bu_im + lam_re * x_im + lam_im * x_re
        x = torch.cat([new_re, new_im], dim=-1)
        # y_t = Re(C x_t) + D u_t = [C_re | −C_im] [x_re; x_im] + D u_t
        return du + x @ (p["weight_hc"] * _signs(N, du)).T, x

    def initial_carry(self, tape: Tape, dc_n: Tensor | None) -> Carry:
        return (dc_n if dc_n is not None else torch.zeros_like(tape.c[0]),)

    def backward(self, t: int, dh: Tensor, carry: Carry, tape: Tape, p: Params) -> StepGrads:
        N = self.state_size
        lam_re, lam_im = self.eigenvalues(p)
        gamma = torch.exp(p["gamma_log"])
        # ∂L/∂x_t = ∂L/∂x_t via t+1 + [C_re; −C_im]ᵀ ∂L/∂y_t   (y_t = C_re Re x_t − C_im Im x_t + D u_t)
        dx = carry[0] + dh @ (p["weight_hc"] * _signs(N, dh))
        dx_re, dx_im = torch.split(dx, N, dim=-1)
        # ∂L/∂(B u_t) = γ ⊙ ∂L/∂x_t;  ∂L/∂(D u_t) = ∂L/∂y_t
        dgx = torch.cat([gamma * dx_re, gamma * dx_im, dh], dim=-1)
        # ∂L/∂x_{t−1} = λ̄ ⊙ ∂L/∂x_t  (the transpose of the rotation-scaling)
        dprev = torch.cat([lam_re * dx_re + lam_im * dx_im, lam_re * dx_im - lam_im * dx_re], dim=-1)
        return StepGrads(dgx, dgx, dx, None, (dprev,))

    def grad_terms(self, tape: Tape, p: Params) -> dict[str, Term]:
        N = self.state_size
        assert tape.dc is not None and tape.dgx is not None and tape.dh is not None
        terms = projection_terms(tape, p)
        lam_re, lam_im = self.eigenvalues(p)
        gamma = torch.exp(p["gamma_log"])
        dx, dy = tape.dc, tape.dh
        if tape.lengths is not None:  # a held step (after its sequence's end) adds nothing to λ, γ or C
            T = tape.steps
            alive = (torch.arange(T, device=dx.device)[:, None] < tape.lengths[None, :]).unsqueeze(-1)
            dx, dy = dx.where(alive, 0), dy.where(alive, 0)
        dx_re, dx_im = torch.split(dx, N, dim=-1)  # ∂L/∂x_t, total
        x_re, x_im = torch.split(tape.c_prev, N, dim=-1)  # x_{t−1}
        # ∂L/∂Re λ = Σ dx_re x_re' + dx_im x_im';  ∂L/∂Im λ = Σ dx_im x_re' − dx_re x_im'
        d_lre = dx_re * x_re + dx_im * x_im
        d_lim = dx_im * x_re - dx_re * x_im
        # λ = exp(−e^ν) e^(i e^θ): ∂λ/∂ν = −e^ν λ, ∂λ/∂θ = i e^θ λ
        terms["nu_log"] = Sum(-torch.exp(p["nu_log"]) * (d_lre * lam_re + d_lim * lam_im))
        terms["theta_log"] = Sum(torch.exp(p["theta_log"]) * (d_lim * lam_re - d_lre * lam_im))
        b_re, b_im = self._bu(tape, p)
        terms["gamma_log"] = Sum(gamma * (dx_re * b_re + dx_im * b_im))  # ∂L/∂γ_log = γ ⊙ Σ ∂L/∂x ⊙ B u
        terms["weight_hc"] = Outer(dy, tape.c * _signs(N, tape.c))  # ∂L/∂[C_re | C_im] = Σ dy [x_re | −x_im]ᵀ
        return terms

    def _bu(self, tape: Tape, p: Params) -> tuple[Tensor, Tensor]:
        """B u_t for every step, (T, B, N) twice: recomputed from the input, one matmul."""
        N = self.state_size
        W = p["weight_ih"][: 2 * N]
        bu = tape.x @ W.T
        return bu[..., :N], bu[..., N:]

    def gates(self, tape: Tape) -> dict[str, Tensor]:
        return {}

    def carry_jacobian(self, tape: Tape, t: int, p: Params) -> Tensor:
        """(B, 2N, 2N) ∂x_t/∂x_{t−1}: [[Re λ, −Im λ], [Im λ, Re λ]] in diagonal blocks."""
        lam_re, lam_im = (v.detach() for v in self.eigenvalues(p))
        J = torch.cat(
            [
                torch.cat([torch.diag(lam_re), -torch.diag(lam_im)], dim=1),
                torch.cat([torch.diag(lam_im), torch.diag(lam_re)], dim=1),
            ]
        )
        return J.expand(tape.x.shape[1], *J.shape)

    def carry_factor(self, tape: Tape) -> Tensor:
        """|λ_j| at every step: ∂x_t/∂x_{t−1} scales coordinate pair j by |λ_j| (and rotates it)."""
        return tape.extras["modulus"]


class LRU(RecurrentBase):
    """The Linear Recurrent Unit: x_t = λ ⊙ x_{t−1} + γ ⊙ B u_t, y_t = Re(C x_t) + D u_t.

    Arguments:
        input_size: features of u_t.
        hidden_size: features of the output y_t (the h_t of the other cells).
        state_size: N, the complex state's dimension (default: hidden_size).
        num_layers, batch_first, dropout, bidirectional: as `torch.nn.RNN`.
        r_min, r_max: the ring of the eigenvalues' moduli at initialisation, 0 ≤ r_min < r_max ≤ 1.
        max_phase: the largest initial phase θ_max.

    Shapes: input (T, B, input_size); hx = (h_0, c_0) with h_0 (num_layers·D, B, hidden_size) (not
    read: y_t depends on x_t and u_t only) and c_0 = [Re x_0 | Im x_0] (num_layers·D, B, 2·state_size).
    Returns output (T, B, D·hidden_size) and (h_n, c_n).

    Example:
        >>> import torch, bptt
        >>> lru = bptt.LRU(2, 8, state_size=16, r_min=0.9, r_max=0.99)
        >>> output, (h_n, c_n) = lru(torch.randn(50, 4, 2))
        >>> output.shape, c_n.shape
        (torch.Size([50, 4, 8]), torch.Size([1, 4, 32]))
        >>> modulus = torch.exp(-torch.exp(lru.nu_log_l0))
        >>> bool(((modulus >= 0.9) & (modulus <= 0.99)).all())
        True
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        state_size: int | None = None,
        num_layers: int = 1,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        r_min: float = 0.0,
        r_max: float = 1.0,
        max_phase: float = 2 * math.pi,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        N = _checks.positive_int("state_size", hidden_size if state_size is None else state_size)
        if not (0.0 <= r_min < r_max <= 1.0):
            raise InputError(f"expected 0 ≤ r_min < r_max ≤ 1, got r_min = {r_min}, r_max = {r_max}")
        if not (max_phase > 0 and math.isfinite(max_phase)):
            raise InputError(f"expected a positive max_phase, got {max_phase}")
        self.state_size, self.r_min, self.r_max, self.max_phase = (
            N,
            float(r_min),
            float(r_max),
            float(max_phase),
        )
        args = (input_size, hidden_size, num_layers, False, batch_first, dropout, bidirectional)  # no bias
        super().__init__(LRUStep(N), *args, device=device, dtype=dtype)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The paper's initialisation (its appendix A), every layer and direction."""
        N = self.state_size
        for plan in self.plans:
            p: dict[str, nn.Parameter] = {
                s: getattr(self, n) for s, n in zip(plan.suffixes, plan.names, strict=True)
            }
            I = p["weight_ih"].shape[1]
            # |λ|² uniform on [r_min², r_max²]: ν = log(−½ log(u (r_max² − r_min²) + r_min²))
            u = torch.rand(N, dtype=torch.float64)
            modulus_sq = u * (self.r_max**2 - self.r_min**2) + self.r_min**2
            modulus_sq = modulus_sq.clamp(1e-12, 1 - 1e-12)
            p["nu_log"].copy_(torch.log(-0.5 * torch.log(modulus_sq)))
            p["theta_log"].copy_(
                torch.log(self.max_phase * torch.rand(N, dtype=torch.float64).clamp_min(1e-12))
            )
            p["gamma_log"].copy_(0.5 * torch.log1p(-modulus_sq))  # γ = √(1 − |λ|²)
            W = p["weight_ih"]
            nn.init.normal_(W[: 2 * N], std=1 / math.sqrt(2 * I))  # B_re, B_im
            nn.init.normal_(W[2 * N :], std=1 / math.sqrt(I))  # D
            nn.init.normal_(p["weight_hc"], std=1 / math.sqrt(N))  # C_re, C_im

    def extra_repr(self) -> str:
        return super().extra_repr() + f", state_size={self.state_size}"


def _signs(N: int, like: Tensor) -> Tensor:
    """[+1]·N followed by [−1]·N: Re(C x) = C_re x_re − C_im x_im."""
    return torch.cat([like.new_ones(N), -like.new_ones(N)])


def _ranges(step: LRUStep) -> dict[str, tuple[float, float] | None]:
    return {"h": None}  # no gates; y_t is unbounded


SPEC = registry.register(
    registry.CellSpec(
        name="lru",
        summary="Orvieto et al. 2023's Linear Recurrent Unit: x_t = λ ⊙ x_{t−1} + γ ⊙ B u_t, y_t = Re(C x_t) + D u_t",
        step=LRUStep,
        module=LRU,
        gate_ranges=_ranges,
        bound_note="a linear recurrence: ‖∂x_T/∂x_t‖ = max_j |λ_j|^(T−t) < 1 for every ν",
        inits=("default",),
    )
)
