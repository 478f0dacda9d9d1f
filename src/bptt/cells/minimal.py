"""minGRU and minLSTM (Feng et al. 2024, "Were RNNs All We Needed?"): gates that do not read h_{t−1}.

    minGRU   z_t = σ(W_z x_t + b_z),  h̃_t = W_n x_t + b_n
             h_t = (1 − z_t) ⊙ h_{t−1} + z_t ⊙ h̃_t
    minLSTM  f_t = σ(W_f x_t + b_f),  i_t = σ(W_i x_t + b_i),  h̃_t = W_n x_t + b_n
             f'_t = f_t / (f_t + i_t),  i'_t = i_t / (f_t + i_t)
             h_t = f'_t ⊙ h_{t−1} + i'_t ⊙ h̃_t

There is no W_hh: ∂h_t/∂h_{t−1} = diag(1 − z_t) (minGRU) or diag(f'_t) (minLSTM) exactly, so
‖∂h_T/∂h_k‖ = max_j ∏_{s=k+1}^{T} (1 − z_s)_j, and the recurrence h_t = a_t ⊙ h_{t−1} + b_t is a
linear scan in h that a parallel prefix scan can compute (`parallel_scan`).

`candidate="g"` is the paper's log-space version (its appendix B.3, and the `mingru-pytorch` package):
h̃_t = g(W_n x_t + b_n) with g(u) = u + ½ for u ≥ 0 and σ(u) below, so that every h_t > 0.

Layout: `weight_ih_l{k}` (G·H, I) and `bias_ih_l{k}` (G·H,), gate blocks z, n (minGRU) or f, i, n
(minLSTM); no recurrent weights and no b_hh.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..engine.sweep import Carry, Params, StepGrads
from ..engine.tape import Tape, state_buffer
from ..engine.terms import Term, projection_terms
from . import registry
from .base import Option, RecurrentBase

CANDIDATES = ("linear", "g")


def _candidate(u: Tensor, candidate: str) -> Tensor:
    """h̃ = u, or g(u) = u + ½ (u ≥ 0), σ(u) (u < 0)."""
    if candidate == "linear":
        return u
    return torch.where(u >= 0, u + 0.5, torch.sigmoid(u))


def _candidate_grad(h_tilde: Tensor, candidate: str) -> Tensor:
    """h̃'(u) from h̃: 1 (linear, or g for u ≥ 0, where g ≥ ½); σ(1 − σ) where g = σ(u) < ½."""
    if candidate == "linear":
        return torch.ones_like(h_tilde)
    return torch.where(h_tilde >= 0.5, torch.ones_like(h_tilde), h_tilde * (1 - h_tilde))


@dataclass(frozen=True)
class _MinimalStep:
    """What minGRU and minLSTM share: the layout without W_hh and the tape of gate activations."""

    candidate: str = "linear"
    fold_bias_hh: bool = True
    separate_dgh: bool = False
    has_cell: bool = False

    @property
    def blocks(self) -> int:
        return len(self.gate_names)  # type: ignore[attr-defined]

    def parameter_shapes(self, input_size: int, hidden_size: int, bias: bool) -> dict[str, tuple[int, ...]]:
        G = self.blocks * hidden_size
        return {"weight_ih": (G, input_size), **({"bias_ih": (G,)} if bias else {})}

    def new_tape(
        self, x: Tensor, h0: Tensor | None, c0: Tensor | None, reverse: bool, params: Params
    ) -> Tape:
        assert h0 is not None  # no `zero_state`: the model passes zeros
        T, B = x.shape[:2]
        H = h0.shape[-1]
        gates_buf = x.new_empty((T + 1, B, self.blocks * H))
        tape = Tape(x=x, reverse=reverse, hidden_size=H, h_buf=state_buffer(h0, T), gates_buf=gates_buf)
        tape.h_buf[tape.initial_slot()] = h0
        gates_buf[tape.initial_slot()] = 0
        return tape

    def initial_state(self, h0: Tensor, c0: Tensor | None) -> Carry:
        return (h0,)

    def initial_carry(self, tape: Tape, dc_n: Tensor | None) -> Carry:
        return ()

    def grad_terms(self, tape: Tape, p: Params) -> dict[str, Term]:
        return projection_terms(tape, p)

    def carry_factor(self, tape: Tape) -> Tensor:
        raise NotImplementedError

    def carry_jacobian(self, tape: Tape, t: int, p: Params) -> Tensor:
        """∂h_t/∂h_{t−1} itself: the diagonal carry (no gate reads h_{t−1})."""
        return torch.diag_embed(self.carry_factor(tape)[t])


@dataclass(frozen=True)
class MinGRUStep(_MinimalStep):
    """One step of the minGRU, forward and backward; the tape keeps z_t and h̃_t."""

    gate_names: tuple[str, ...] = ("z", "n")

    def forward(self, t: int, gx: Tensor, gh: Tensor, tape: Tape, p: Params) -> None:
        z_pre, n_pre = gx.chunk(2, dim=-1)
        z, h_tilde = tape.gates[t].chunk(2, dim=-1)
        torch.sigmoid(z_pre, out=z)  # z_t = σ(W_z x_t + b_z)
        h_tilde.copy_(_candidate(n_pre, self.candidate))  # h̃_t = W_n x_t + b_n  (or g of it)
        h_prev = tape.h_prev[t]
        torch.sub(h_tilde, h_prev, out=tape.h[t]).mul_(z).add_(h_prev)  # h_t = h_{t−1} + z_t (h̃_t − h_{t−1})

    def cell(self, gx: Tensor, gh: Tensor, state: Carry, p: Params) -> Carry:
        """`forward` out of place, for autograd: (h_{t−1},) → (h_t,); gh is empty (no W_hh)."""
        (h_prev,) = state
        z_pre, n_pre = gx.chunk(2, dim=-1)
        z = torch.sigmoid(z_pre)  # z_t = σ(W_z x_t + b_z)
        h_tilde = _candidate(n_pre, self.candidate)  # h̃_t = W_n x_t + b_n  (or g of it)
        return (h_prev + z * (h_tilde - h_prev),)  # h_t = h_{t−1} + z_t (h̃_t − h_{t−1})

    def backward(self, t: int, dh: Tensor, carry: Carry, tape: Tape, p: Params) -> StepGrads:
        z, h_tilde = tape.gates[t].chunk(2, dim=-1)
        dz = dh * (h_tilde - tape.h_prev[t]) * z * (1 - z)  # ∂L/∂z̃ = ∂L/∂h_t ⊙ (h̃_t − h_{t−1}) ⊙ σ'
        dn = dh * z * _candidate_grad(h_tilde, self.candidate)  # ∂L/∂ñ = ∂L/∂h_t ⊙ z_t ⊙ h̃'
        dgx = torch.cat([dz, dn], dim=-1)
        return StepGrads(dgx, dgx, None, dh * (1 - z), carry)  # ∂h_t/∂h_{t−1} = diag(1 − z_t)

    def gates(self, tape: Tape) -> dict[str, Tensor]:
        return {"z": tape.gates.chunk(2, dim=-1)[0]}

    def carry_factor(self, tape: Tape) -> Tensor:
        """1 − z_t: ∂h_t/∂h_{t−1} = diag(1 − z_t)."""
        return 1 - tape.gates.chunk(2, dim=-1)[0]


@dataclass(frozen=True)
class MinLSTMStep(_MinimalStep):
    """One step of the minLSTM, forward and backward; the tape keeps f_t, i_t and h̃_t."""

    gate_names: tuple[str, ...] = ("f", "i", "n")

    def forward(self, t: int, gx: Tensor, gh: Tensor, tape: Tape, p: Params) -> None:
        f_pre, i_pre, n_pre = gx.chunk(3, dim=-1)
        f, i, h_tilde = tape.gates[t].chunk(3, dim=-1)
        torch.sigmoid(f_pre, out=f)  # f_t = σ(W_f x_t + b_f)
        torch.sigmoid(i_pre, out=i)  # i_t = σ(W_i x_t + b_i)
        h_tilde.copy_(_candidate(n_pre, self.candidate))  # h̃_t = W_n x_t + b_n  (or g of it)
        # h_t = (f_t h_{t−1} + i_t h̃_t) / (f_t + i_t) = f'_t h_{t−1} + i'_t h̃_t
        torch.addcmul(i * h_tilde, f, tape.h_prev[t], out=tape.h[t]).div_(f + i)

    def cell(self, gx: Tensor, gh: Tensor, state: Carry, p: Params) -> Carry:
        """`forward` out of place, for autograd: (h_{t−1},) → (h_t,); gh is empty (no W_hh)."""
        (h_prev,) = state
        f_pre, i_pre, n_pre = gx.chunk(3, dim=-1)
        f = torch.sigmoid(f_pre)  # f_t = σ(W_f x_t + b_f)
        i = torch.sigmoid(i_pre)  # i_t = σ(W_i x_t + b_i)
        h_tilde = _candidate(n_pre, self.candidate)  # h̃_t = W_n x_t + b_n  (or g of it)
        # h_t = (f_t h_{t−1} + i_t h̃_t) / (f_t + i_t) = f'_t h_{t−1} + i'_t h̃_t
        return ((f * h_prev + i * h_tilde) / (f + i),)

    def backward(self, t: int, dh: Tensor, carry: Carry, tape: Tape, p: Params) -> StepGrads:
        f, i, h_tilde = tape.gates[t].chunk(3, dim=-1)
        s = f + i
        # ∂L/∂f'_t − ∂L/∂i'_t = ∂L/∂h_t ⊙ (h_{t−1} − h̃_t);  ∂f'/∂f = i/s², ∂i'/∂f = −i/s², and alike for i
        d_diff = dh * (tape.h_prev[t] - h_tilde) / (s * s)
        dz_f = d_diff * i * f * (1 - f)  # ∂L/∂f̃ = (∂L/∂f' − ∂L/∂i') ⊙ i/s² ⊙ σ'
        dz_i = -d_diff * f * i * (1 - i)  # ∂L/∂ĩ = (∂L/∂i' − ∂L/∂f') ⊙ f/s² ⊙ σ'
        dn = dh * (i / s) * _candidate_grad(h_tilde, self.candidate)  # ∂L/∂ñ = ∂L/∂h_t ⊙ i'_t ⊙ h̃'
        dgx = torch.cat([dz_f, dz_i, dn], dim=-1)
        return StepGrads(dgx, dgx, None, dh * (f / s), carry)  # ∂h_t/∂h_{t−1} = diag(f'_t)

    def gates(self, tape: Tape) -> dict[str, Tensor]:
        """The normalised gates f' and i' (f' + i' = 1)."""
        f, i, _ = tape.gates.chunk(3, dim=-1)
        return {"f": f / (f + i), "i": i / (f + i)}

    def carry_factor(self, tape: Tape) -> Tensor:
        """f'_t: ∂h_t/∂h_{t−1} = diag(f'_t)."""
        f, i, _ = tape.gates.chunk(3, dim=-1)
        return f / (f + i)


class _Minimal(RecurrentBase):
    """minGRU and minLSTM: `torch.nn.GRU`'s arguments and a candidate; the subclass names its step."""

    STEP: type[MinGRUStep] | type[MinLSTMStep]
    OPTION = Option("candidate", CANDIDATES)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        candidate: str = "linear",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        args = (input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional)
        super().__init__(self.STEP(self._option(candidate)), *args, device=device, dtype=dtype)
        self.candidate = candidate


class MinGRU(_Minimal):
    """The minGRU: h_t = (1 − z_t) h_{t−1} + z_t h̃_t, gate and candidate from x_t alone.

    Arguments:
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional: as `torch.nn.GRU`.
        candidate: `"linear"` (h̃ = W_n x + b_n, the paper's minGRU) or `"g"` (its log-space version).

    Parameters per layer: `weight_ih_l{k}` (2H, I) with blocks z, n, and `bias_ih_l{k}` (2H,).

    Example:
        >>> import torch, bptt
        >>> cell = bptt.MinGRU(3, 8)
        >>> output, h_n = cell(torch.randn(10, 4, 3))
        >>> output.shape, sorted(n for n, _ in cell.named_parameters())
        (torch.Size([10, 4, 8]), ['bias_ih_l0', 'weight_ih_l0'])
    """

    STEP = MinGRUStep


class MinLSTM(_Minimal):
    """The minLSTM: h_t = f'_t h_{t−1} + i'_t h̃_t with f' + i' = 1, gates and candidate from x_t alone.

    Arguments:
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional: as `torch.nn.LSTM`.
        candidate: `"linear"` (h̃ = W_n x + b_n, the paper's minLSTM) or `"g"` (its log-space version).

    Parameters per layer: `weight_ih_l{k}` (3H, I) with blocks f, i, n, and `bias_ih_l{k}` (3H,).

    Example:
        >>> import torch, bptt
        >>> cell = bptt.MinLSTM(3, 8)
        >>> output, h_n = cell(torch.randn(10, 4, 3))
        >>> cell.weight_ih_l0.shape
        torch.Size([24, 3])
    """

    STEP = MinLSTMStep


def parallel_scan(log_a: Tensor, b: Tensor, h0: Tensor | None = None) -> Tensor:
    """h_t = a_t ⊙ h_{t−1} + b_t for all t at once (time-major, (T, B, H)), from log a_t (real or complex).

    Heinsen's log-space prefix scan: h_t = A_t (h_0 + Σ_{s≤t} b_s / A_s) with log A_t = Σ_{s≤t} log a_s,
    the sum taken as a logcumsumexp of complex logarithms so that b may have either sign. This is
    the parallel form of minGRU (log a = log(1 − z), b = z h̃) and minLSTM (log a = log f', b = i' h̃),
    in O(log T) depth; `bptt bench --successors` times it beside the sequential sweep. Complex
    log a and b (the LRU's λ and γ B u) give a complex h.

    Example:
        >>> import torch
        >>> a, b = torch.rand(6, 2, 3), torch.randn(6, 2, 3)
        >>> h, ref = parallel_scan(a.log(), b), torch.zeros(2, 3)
        >>> for t in range(6):
        ...     ref = a[t] * ref + b[t]
        >>> torch.allclose(h[-1], ref, atol=1e-5)
        True
    """
    a_star = log_a.cumsum(0)  # log A_t
    values = b.to(torch.promote_types(b.dtype, torch.complex64)).log()  # log b_t, complex for b < 0
    if h0 is not None:
        values = torch.cat([h0.to(values.dtype).log()[None], values])
        a_star = F.pad(a_star, (0, 0, 0, 0, 1, 0))
    h = (a_star + (values - a_star).logcumsumexp(0)).exp()
    h = h[1:] if h0 is not None else h
    return h if b.is_complex() else h.real.to(b.dtype)


def _label(step: _MinimalStep) -> str:
    name = "mingru" if isinstance(step, MinGRUStep) else "minlstm"
    return name if step.candidate == "linear" else f"{name} (g candidate)"


def _mingru_ranges(step: MinGRUStep) -> dict[str, tuple[float, float] | None]:
    return {"z": (0.0, 1.0)}


def _minlstm_ranges(step: MinLSTMStep) -> dict[str, tuple[float, float] | None]:
    return {"f": (0.0, 1.0), "i": (0.0, 1.0)}  # f' and i', f' + i' = 1


MINGRU_SPEC = registry.register(
    registry.CellSpec(
        name="mingru",
        summary="Feng et al. 2024's minGRU: h_t = (1 − z_t) h_{t−1} + z_t h̃_t, gates from x_t alone",
        step=MinGRUStep,
        module=MinGRU,
        aliases={"mingru-g": {"candidate": "g"}},
        roles={"update": "z", "candidate": "n"},
        gate_ranges=_mingru_ranges,
        label=_label,
        bound_note="no recurrent weights: ∂h_t/∂h_{t−1} = diag(1 − z_t) exactly",
        inits=("default",),
    )
)

MINLSTM_SPEC = registry.register(
    registry.CellSpec(
        name="minlstm",
        summary="Feng et al. 2024's minLSTM: h_t = f'_t h_{t−1} + i'_t h̃_t, f' + i' = 1, gates from x_t alone",
        step=MinLSTMStep,
        module=MinLSTM,
        aliases={"minlstm-g": {"candidate": "g"}},
        roles={"forget": "f", "input": "i", "candidate": "n"},
        carry_gate="f",
        gate_ranges=_minlstm_ranges,
        label=_label,
        bound_note="no recurrent weights: ∂h_t/∂h_{t−1} = diag(f'_t) exactly",
        inits=("default",),
    )
)
