"""The sLSTM of xLSTM (Beck et al. 2024): exponential gating with a normaliser and a log-space stabiliser.

One step, gate order i, f, g, o (xLSTM's i, f, z, o; the block input keeps PyTorch's letter g):

    ĩ, f̃, g̃, õ = W_ih x_t + b_ih + W_hh h_{t−1} + b_hh          (all gate blocks at once)
    log f_t = log σ(f̃)   (forget_gate="sigmoid")   or   f̃   (forget_gate="exp")
    m_t  = max(log f_t + m_{t−1}, ĩ)                              stabiliser (m_t = ĩ where n_{t−1} = 0)
    i'_t = exp(ĩ − m_t)                                           stabilised input gate, in (0, 1]
    f'_t = exp(log f_t + m_{t−1} − m_t)                           stabilised forget gate, in (0, 1]
    g_t  = tanh(g̃),  o_t = σ(õ)
    c_t  = f'_t ⊙ c_{t−1} + i'_t ⊙ g_t                            cell state
    n_t  = f'_t ⊙ n_{t−1} + i'_t                                  normaliser
    h_t  = o_t ⊙ c_t / n_t

The stabiliser cancels in h_t: c_t and n_t are the unstabilised c and n (f_t c_{t−1} + exp(ĩ) g_t, …)
times e^(−m_t), so the model is the paper's with i_t = exp(ĩ). Where the normaliser is still zero
(the zero initial state: nothing has entered the cell) m_t = ĩ_t and f'_t = 0, as xLSTM's own code
does at its first step; from then on n_t ≥ 1 for ever.

The normalised carry ĉ_t = c_t / n_t obeys ĉ_t = (1 − κ_t) ĉ_{t−1} + κ_t g_t with κ_t = i'_t / n_t
(while h_{t−1} is held), so along the carry ∂ĉ_T/∂ĉ_k = ∏_{s=k+1}^{T} (1 − κ_s) (`bptt theory`).

The cell state c of the module is the triple (c, n, m) side by side, (…, 3H): `c_0`, `c_n`,
`trace.c` and `trace.dc` hold [c | n | m] and [∂L/∂c | ∂L/∂n | ∂L/∂m]. W_hh is one dense head;
xLSTM's block-diagonal heads are the case with zero off-diagonal blocks and load exactly.
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

FORGET_GATES = ("sigmoid", "exp")


@dataclass(frozen=True)
class SLSTMStep:
    """One step of the sLSTM, forward and backward; the cell state is [c | n | m]."""

    forget_gate: str = "sigmoid"
    gate_names: tuple[str, ...] = ("i", "f", "g", "o")
    fold_bias_hh: bool = True
    separate_dgh: bool = False
    has_cell: bool = True

    def cell_size(self, hidden_size: int) -> int:
        return 3 * hidden_size

    def new_tape(
        self, x: Tensor, h0: Tensor | None, c0: Tensor | None, reverse: bool, params: Params
    ) -> Tape:
        assert h0 is not None  # no `zero_state`: the model passes zeros
        assert c0 is not None
        T, B = x.shape[:2]
        H = h0.shape[-1]
        c_buf, gates_buf = state_buffer(c0, T), x.new_empty((T + 1, B, 4 * H))  # gates: i', f', g, o
        tape = Tape(
            x=x,
            reverse=reverse,
            hidden_size=H,
            h_buf=state_buffer(h0, T),
            c_buf=c_buf,
            gates_buf=gates_buf,
            extras={
                "log_f": x.new_empty((T, B, H)),  # log f_t, for ∂L/∂f̃
                "i_wins": x.new_empty((T, B, H)),  # 1 where m_t = ĩ_t, 0 where m_t = log f_t + m_{t−1}
            },
        )
        start = tape.initial_slot()
        tape.h_buf[start], c_buf[start] = h0, c0
        gates_buf[start] = 0
        return tape

    def forward(self, t: int, gx: Tensor, gh: Tensor, tape: Tape, p: Params) -> None:
        H = tape.hidden_size
        c_prev, n_prev, m_prev = torch.split(tape.c_prev[t], H, dim=-1)
        pre = gx + gh  # ĩ, f̃, g̃, õ = W_ih x_t + b_ih + W_hh h_{t−1} + b_hh
        i_pre, f_pre, g_pre, o_pre = pre.chunk(4, dim=-1)
        log_f = F.logsigmoid(f_pre) if self.forget_gate == "sigmoid" else f_pre  # log f_t
        a = log_f + m_prev  # log f_t + m_{t−1}
        empty = n_prev == 0  # nothing has entered the cell yet
        i_wins = (i_pre >= a) | empty
        m = torch.where(i_wins, i_pre, a)  # m_t = max(log f_t + m_{t−1}, ĩ)
        i, f, g, o = tape.gates[t].chunk(4, dim=-1)
        torch.exp(i_pre - m, out=i)  # i'_t = exp(ĩ − m_t)
        torch.exp(a - m, out=f)  # f'_t = exp(log f_t + m_{t−1} − m_t)
        f.masked_fill_(empty, 0.0)  # an empty normaliser carries nothing
        torch.tanh(g_pre, out=g)  # g_t = tanh(g̃)
        torch.sigmoid(o_pre, out=o)  # o_t = σ(õ)
        c_new, n_new, m_new = torch.split(tape.c[t], H, dim=-1)
        torch.addcmul(i * g, f, c_prev, out=c_new)  # c_t = f'_t c_{t−1} + i'_t g_t
        torch.addcmul(i, f, n_prev, out=n_new)  # n_t = f'_t n_{t−1} + i'_t
        m_new.copy_(m)
        torch.div(c_new, n_new, out=tape.h[t]).mul_(o)  # h_t = o_t c_t / n_t
        tape.extras["log_f"][t] = log_f
        tape.extras["i_wins"][t] = i_wins

    def initial_state(self, h0: Tensor, c0: Tensor | None) -> Carry:
        assert c0 is not None
        return h0, c0

    def cell(self, gx: Tensor, gh: Tensor, state: Carry, p: Params) -> Carry:
        """`forward` out of place, for autograd: (h_{t−1}, [c | n | m]_{t−1}) → the same at t."""
        h_prev, cnm = state
        H = h_prev.shape[-1]
        c_prev, n_prev, m_prev = torch.split(cnm, H, dim=-1)
        pre = gx + gh  # ĩ, f̃, g̃, õ = W_ih x_t + b_ih + W_hh h_{t−1} + b_hh
        i_pre, f_pre, g_pre, o_pre = pre.chunk(4, dim=-1)
        log_f = F.logsigmoid(f_pre) if self.forget_gate == "sigmoid" else f_pre  # log f_t
        a = log_f + m_prev  # log f_t + m_{t−1}
        empty = n_prev == 0  # nothing has entered the cell yet
        m = torch.where((i_pre >= a) | empty, i_pre, a)  # m_t = max(log f_t + m_{t−1}, ĩ)
        i = torch.exp(i_pre - m)  # i'_t = exp(ĩ − m_t)
        f = torch.exp(a - m).masked_fill(empty, 0.0)  # f'_t = exp(log f_t + m_{t−1} − m_t); 0 if empty
        g = torch.tanh(g_pre)  # g_t = tanh(g̃)
        o = torch.sigmoid(o_pre)  # o_t = σ(õ)
        c = f * c_prev + i * g  # c_t = f'_t c_{t−1} + i'_t g_t
        n = f * n_prev + i  # n_t = f'_t n_{t−1} + i'_t
        return o * c / n, torch.cat([c, n, m], dim=-1)  # h_t = o_t c_t / n_t

    def initial_carry(self, tape: Tape, dc_n: Tensor | None) -> Carry:
        return (dc_n if dc_n is not None else torch.zeros_like(tape.c[0]),)

    def backward(self, t: int, dh: Tensor, carry: Carry, tape: Tape, p: Params) -> StepGrads:
        H = tape.hidden_size
        dc_next, dn_next, dm_next = torch.split(carry[0], H, dim=-1)  # ∂L/∂(c_t, n_t, m_t) through step t+1
        i, f, g, o = tape.gates[t].chunk(4, dim=-1)
        c, n, _ = torch.split(tape.c[t], H, dim=-1)
        c_prev, n_prev, _ = torch.split(tape.c_prev[t], H, dim=-1)
        w = tape.extras["i_wins"][t]
        c_hat = c / n
        dz_o = dh * c_hat * o * (1 - o)  # ∂L/∂õ = ∂L/∂h_t ⊙ c_t/n_t ⊙ σ'
        dc = dc_next + dh * o / n  # ∂L/∂c_t = ∂L/∂c_t via t+1 + ∂L/∂h_t ⊙ o_t / n_t
        dn = dn_next - dh * o * c_hat / n  # ∂L/∂n_t = ∂L/∂n_t via t+1 − ∂L/∂h_t ⊙ o_t c_t / n_t²
        dz_g = dc * i * (1 - g * g)  # ∂L/∂g̃ = ∂L/∂c_t ⊙ i'_t ⊙ tanh'
        di = dc * g + dn  # ∂L/∂i'_t
        df = dc * c_prev + dn * n_prev  # ∂L/∂f'_t
        # m_t enters i' and f' with derivative −i', −f': ∂L/∂m_t in all
        dm = dm_next - di * i - df * f
        dz_i = di * i + w * dm  # ∂L/∂ĩ: through i'_t, and through m_t where ĩ is the max
        da = df * f + (1 - w) * dm  # ∂L/∂(log f_t + m_{t−1})
        # ∂ log σ(f̃)/∂f̃ = 1 − σ(f̃) = 1 − exp(log f_t);  ∂f̃/∂f̃ = 1 for the exponential gate
        dz_f = da * (1 - tape.extras["log_f"][t].exp()) if self.forget_gate == "sigmoid" else da
        dgx = torch.cat([dz_i, dz_f, dz_g, dz_o], dim=-1)
        # ∂L/∂c_{t−1} = f'_t ∂L/∂c_t,  ∂L/∂n_{t−1} = f'_t ∂L/∂n_t,  ∂L/∂m_{t−1} = ∂L/∂(log f_t + m_{t−1})
        dprev = torch.cat([dc * f, dn * f, da], dim=-1)
        # the state's cotangents: h_t reads c_t and n_t, while m_t reaches L only through step t+1
        return StepGrads(dgx, dgx, torch.cat([dc, dn, dm_next], dim=-1), None, (dprev,))

    def grad_terms(self, tape: Tape, p: Params) -> dict[str, Term]:
        return projection_terms(tape, p)

    def gates(self, tape: Tape) -> dict[str, Tensor]:
        """The stabilised gates i', f' (both in [0, 1]), the block input g and the output gate o."""
        i, f, g, o = tape.gates.chunk(4, dim=-1)
        return {"i": i, "f": f, "g": g, "o": o}

    def carry_jacobian(self, tape: Tape, t: int, p: Params) -> Tensor:
        """(B, 3H, 3H) ∂(c, n, m)_t/∂(c, n, m)_{t−1} with h_{t−1} held: the carry path without W_hh.

        ∂c/∂c' = ∂n/∂n' = f'_t; through the stabiliser, where the forget branch sets m_t (w = 0)
        ∂c/∂m' = −i' g, ∂n/∂m' = −i', ∂m/∂m' = 1, and where ĩ sets it (w = 1) ∂c/∂m' = f' c',
        ∂n/∂m' = f' n', ∂m/∂m' = 0.
        """
        H = tape.hidden_size
        i, f, g, _ = tape.gates[t].chunk(4, dim=-1)
        c_prev, n_prev, _ = torch.split(tape.c_prev[t], H, dim=-1)
        w = tape.extras["i_wins"][t]
        zero = torch.zeros_like(f)
        dc_dm = (1 - w) * (-i * g) + w * f * c_prev
        dn_dm = (1 - w) * (-i) + w * f * n_prev
        rows = [
            torch.cat([torch.diag_embed(f), torch.diag_embed(zero), torch.diag_embed(dc_dm)], dim=-1),
            torch.cat([torch.diag_embed(zero), torch.diag_embed(f), torch.diag_embed(dn_dm)], dim=-1),
            torch.cat([torch.diag_embed(zero), torch.diag_embed(zero), torch.diag_embed(1 - w)], dim=-1),
        ]
        return torch.cat(rows, dim=-2)

    def carry_factor(self, tape: Tape) -> Tensor:
        """1 − κ_t = 1 − i'_t / n_t: the factor by which the normalised carry c/n keeps its past."""
        H = tape.hidden_size
        return 1 - tape.gates[..., :H] / tape.c[..., H : 2 * H]


class sLSTM(RecurrentBase):
    """The sLSTM (xLSTM, Beck et al. 2024) with PyTorch's layout: W_ih (4H, I), W_hh (4H, H), gates i, f, g, o.

    Arguments:
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional: as `torch.nn.LSTM`.
        forget_gate: `"sigmoid"` (f = σ(f̃), xLSTM's default) or `"exp"` (f = exp(f̃)).

    Shapes: as `bptt.LSTM`, except that the cell state c is [c | n | m], (…, 3·hidden_size): hx is
    (h_0, c_0) with c_0 (num_layers·D, B, 3·hidden_size); zeros by default (an empty normaliser).

    Example:
        >>> import torch, bptt
        >>> cell = bptt.sLSTM(2, 8)
        >>> output, (h_n, c_n) = cell(torch.randn(10, 4, 2))
        >>> output.shape, c_n.shape  # c_n = [c | n | m]
        (torch.Size([10, 4, 8]), torch.Size([1, 4, 24]))
        >>> bool((c_n[..., 8:16] >= 1).all())  # the normaliser, ≥ 1 once anything entered
        True
    """

    OPTION = Option("forget_gate", FORGET_GATES)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        forget_gate: str = "sigmoid",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        args = (input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional)
        super().__init__(SLSTMStep(self._option(forget_gate)), *args, device=device, dtype=dtype)
        self.forget_gate = forget_gate


def _ranges(step: SLSTMStep) -> dict[str, tuple[float, float] | None]:
    return {
        "i": (0.0, 1.0),
        "f": (0.0, 1.0),
        "g": (-1.0, 1.0),
        "o": (0.0, 1.0),
    }  # i', f' ≤ 1 by the stabiliser


def _label(step: SLSTMStep) -> str:
    return "slstm" if step.forget_gate == "sigmoid" else f"slstm ({step.forget_gate} forget gate)"


SPEC = registry.register(
    registry.CellSpec(
        name="slstm",
        summary="xLSTM's sLSTM (Beck et al. 2024): exponential input gate, normaliser n_t, stabiliser m_t",
        step=SLSTMStep,
        module=sLSTM,
        aliases={"slstm-exp": {"forget_gate": "exp"}},
        roles={"input": "i", "forget": "f", "candidate": "g", "output": "o"},
        carry_gate="f",
        gate_ranges=_ranges,
        label=_label,
        bound_note="the Elman bound does not apply; the normalised carry c/n keeps 1 − i'/n of its past",
    )
)
