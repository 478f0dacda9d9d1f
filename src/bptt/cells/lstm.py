"""The LSTM family: PyTorch's LSTM, the 1997 original, and Greff et al.'s (2015) peephole variants.

One step, with every piece a variant may drop written as optional (Greff et al., "LSTM: A Search
Space Odyssey", with PyTorch's gate order i, f, g, o):

    z_t = W_ih x_t + b_ih + W_hh h_{t−1} + b_hh              (all gate blocks at once)
    i_t = σ(z_i + p_i ⊙ c_{t−1})                             input gate
    f_t = σ(z_f + p_f ⊙ c_{t−1})                             forget gate
    g_t = tanh(z_g)                                          block input
    c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t                          cell state, the Constant Error Carousel
    o_t = σ(z_o + p_o ⊙ c_t)                                 output gate
    m_t = o_t ⊙ tanh(c_t)                                    block output
    h_t = m_t, or W_hr m_t with `proj_size`

`vanilla` (alias `np`) is exactly `torch.nn.LSTM` (no peepholes). `peephole` is Greff's vanilla LSTM.
The others modify `peephole`: `nig` i = 1, `nfg` f = 1, `nog` o = 1, `niaf` g = z_g, `noaf`
m = o ⊙ c, `cifg` f = 1 − i, `fgr` every gate also reads all gates at t − 1. `original` is
Hochreiter & Schmidhuber (1997): no forget gate and no peepholes, so ∂c_t/∂c_{t−1} = 1 along the
carousel.

Note: the 1997 paper squashed g into [−2, 2] and h into [−1, 1] with scaled sigmoids and truncated
the gradient that leaves the cell through the gates; `original` uses tanh, as Greff et al. do, and
the full gradient, so that it stays comparable with the other variants. The paper's own networks
(memory blocks of cells sharing their gates, the scaled sigmoids, the truncated gradient) are
`bptt.cells.hs97.MemoryBlockLSTM`, which `bptt reproduce hs97-adding` trains.

Gates a variant drops have no rows in `weight_ih`/`weight_hh` (the remaining gates keep the order
i, f, g, o). Extra parameters: peepholes `weight_ci_l{k}`, `weight_cf_l{k}`, `weight_co_l{k}` (H,);
FGR's gate-to-gate matrix `weight_gg_l{k}` (3H, 3H), rows i, f, o at t from columns i, f, o at t − 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from .. import _checks
from ..engine import dispatch, gpu, native
from ..engine.sweep import Carry, Params, StepGrads
from ..engine.tape import Tape, block_buffers, state_buffer
from ..engine.terms import Outer, Sum, Term, projection_terms
from . import registry
from .base import Option, RecurrentBase


@dataclass(frozen=True)
class LSTMVariant:
    """Which pieces of the peephole LSTM a variant keeps."""

    name: str
    summary: str
    gates: str = "ifgo"  # gate blocks with weights, in PyTorch's order
    peephole: bool = False  # p_i, p_f, p_o for the gates that exist
    coupled: bool = False  # CIFG: f = 1 − i
    input_activation: bool = True  # g = tanh(z_g); False: g = z_g (NIAF)
    output_activation: bool = True  # m = o ⊙ tanh(c); False: m = o ⊙ c (NOAF)
    gate_recurrence: bool = False  # FGR: z_{i,f,o} += R_g [i, f, o]_{t−1}


VARIANTS: dict[str, LSTMVariant] = {
    v.name: v
    for v in [
        LSTMVariant("vanilla", "torch.nn.LSTM: input, forget and output gates, no peepholes"),
        LSTMVariant("np", "NP: no peepholes (the same equations as vanilla)"),
        LSTMVariant("peephole", "Greff et al.'s vanilla LSTM: gates with peepholes", peephole=True),
        LSTMVariant(
            "original",
            "Hochreiter & Schmidhuber 1997: no forget gate, c_t = c_{t−1} + i_t ⊙ g_t",
            gates="igo",
        ),
        LSTMVariant("nig", "NIG: no input gate (i = 1)", gates="fgo", peephole=True),
        LSTMVariant("nfg", "NFG: no forget gate (f = 1)", gates="igo", peephole=True),
        LSTMVariant("nog", "NOG: no output gate (o = 1)", gates="ifg", peephole=True),
        LSTMVariant("niaf", "NIAF: no input activation (g = z_g)", input_activation=False, peephole=True),
        LSTMVariant("noaf", "NOAF: no output activation (m = o ⊙ c)", output_activation=False, peephole=True),
        LSTMVariant(
            "cifg",
            "CIFG: coupled input and forget gate (f = 1 − i)",
            gates="igo",
            coupled=True,
            peephole=True,
        ),
        LSTMVariant(
            "fgr", "FGR: full gate recurrence from i, f, o at t − 1", gate_recurrence=True, peephole=True
        ),
    ]
}


def _sig_grad(s: Tensor) -> Tensor:
    return s * (1 - s)  # σ'(z) = σ(z)(1 − σ(z))


@dataclass(frozen=True)
class LSTMStep:
    """One step of an LSTM variant, forward and backward."""

    variant: LSTMVariant
    proj_size: int = 0
    fold_bias_hh: bool = True
    separate_dgh: bool = False
    has_cell: bool = True
    gate_names: tuple[str, ...] = field(init=False)
    zero_state: ClassVar[bool] = True  # new_tape takes h0 = c0 = None for zeros

    def __post_init__(self) -> None:
        object.__setattr__(self, "gate_names", tuple(self.variant.gates))

    # -- layout ----------------------------------------------------------------------------------

    def extra_params(self, hidden_size: int) -> dict[str, tuple[int, ...]]:
        v = self.variant
        shapes: dict[str, tuple[int, ...]] = {}
        if v.peephole:
            shapes.update({f"weight_c{gate}": (hidden_size,) for gate in "ifo" if gate in self.gate_names})
        if v.gate_recurrence:
            shapes["weight_gg"] = (3 * hidden_size, 3 * hidden_size)
        return shapes

    def block(self, z: Tensor, gate: str, H: int) -> Tensor | None:
        """The columns of gate `gate` in a (…, G·H) tensor, or None if the variant has no such gate."""
        if gate not in self.gate_names:
            return None
        k = self.gate_names.index(gate)
        return z[..., k * H : (k + 1) * H]

    def _ifo(self, z: Tensor, H: int) -> list[Tensor]:
        """The i, f, o columns (FGR variants have all four gates)."""
        return [z[..., "ifgo".index(gate) * H : ("ifgo".index(gate) + 1) * H] for gate in "ifo"]

    # -- forward ---------------------------------------------------------------------------------

    def new_tape(
        self, x: Tensor, h0: Tensor | None, c0: Tensor | None, reverse: bool, params: Params
    ) -> Tape:
        T, B = x.shape[:2]
        G = len(self.gate_names)
        if h0 is None:  # a zero state: the whole tape zeroed at once, no initial slots to copy
            H, P = params["weight_hh"].shape[0] // G, params["weight_hh"].shape[1]
            h_buf, c_buf, gates_buf = block_buffers(
                x, (T + 1, B, P), (T + 1, B, H), (T + 1, B, G * H), zeroed=True
            )
        else:
            assert c0 is not None
            H = c0.shape[-1]
            h_buf, c_buf, gates_buf = state_buffer(h0, T), state_buffer(c0, T), x.new_empty((T + 1, B, G * H))
        tape = Tape(x=x, reverse=reverse, hidden_size=H, h_buf=h_buf, c_buf=c_buf, gates_buf=gates_buf)
        if h0 is not None and c0 is not None:
            start = tape.initial_slot()
            h_buf[start], c_buf[start] = h0, c0
            # the gates "before" the first step: zero (FGR reads them; so do the diagnostics of packed batches)
            gates_buf[start] = 0
        if self.proj_size:
            tape.extras["m"] = x.new_empty((T, B, H))
        return tape

    def forward(self, t: int, gx: Tensor, gh: Tensor, tape: Tape, p: Params) -> None:
        v, H = self.variant, tape.hidden_size
        c_prev, c = tape.c_prev[t], tape.c[t]
        z = tape.gates[t]  # pre-activations, turned into the gate activations in place
        torch.add(gx, gh, out=z)  # z_t = W_ih x_t + b_ih + W_hh h_{t−1} + b_hh
        if v.gate_recurrence:
            a_prev = torch.cat(self._ifo(tape.gates_prev[t], H), dim=-1)  # [i, f, o]_{t−1}
            for zg, r in zip(self._ifo(z, H), torch.split(a_prev @ p["weight_gg"].T, H, dim=-1), strict=True):
                zg += r  # z_{i,f,o} += R_g [i, f, o]_{t−1}
        i, f, g, o = (self.block(z, gate, H) for gate in "ifgo")
        if i is not None:
            if v.peephole:
                i.addcmul_(p["weight_ci"], c_prev)  # z_i + p_i ⊙ c_{t−1}
            i.sigmoid_()  # i_t = σ(·)
        if f is not None:
            if v.peephole:
                f.addcmul_(p["weight_cf"], c_prev)  # z_f + p_f ⊙ c_{t−1}
            f.sigmoid_()  # f_t = σ(·)
        elif v.coupled:
            assert i is not None
            f = 1 - i  # CIFG: f_t = 1 − i_t
        assert g is not None
        if v.input_activation:
            g.tanh_()  # g_t = tanh(z_g)
        # c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t   (f = 1 without a forget gate, i = 1 without an input gate)
        if f is not None:
            torch.mul(f, c_prev, out=c)
        else:
            c.copy_(c_prev)
        if i is not None:
            c.addcmul_(i, g)
        else:
            c.add_(g)
        if o is not None:
            if v.peephole:
                o.addcmul_(p["weight_co"], c)  # z_o + p_o ⊙ c_t
            o.sigmoid_()  # o_t = σ(·)
        # m_t = o_t ⊙ tanh(c_t)
        m = tape.extras["m"][t] if self.proj_size else tape.h[t]
        if v.output_activation:
            torch.tanh(c, out=m)
        else:
            m.copy_(c)
        if o is not None:
            m.mul_(o)
        if self.proj_size:
            torch.mm(m, p["weight_hr"].T, out=tape.h[t])  # h_t = W_hr m_t

    def initial_state(self, h0: Tensor, c0: Tensor | None) -> Carry:
        assert c0 is not None
        if self.variant.gate_recurrence:  # FGR: the gates "before" the first step are zero
            return h0, c0, c0.new_zeros((*c0.shape[:-1], 3 * c0.shape[-1]))
        return h0, c0

    def cell(self, gx: Tensor, gh: Tensor, state: Carry, p: Params) -> Carry:
        """`forward` out of place, for autograd: (h_{t−1}, c_{t−1}[, [i, f, o]_{t−1}]) → the same at t."""
        v = self.variant
        c_prev = state[1]
        H = c_prev.shape[-1]
        zz = gx + gh  # z_t = W_ih x_t + b_ih + W_hh h_{t−1} + b_hh
        z = {gate: zz[..., k * H : (k + 1) * H] for k, gate in enumerate(self.gate_names)}
        if v.gate_recurrence:
            rg: Tensor = state[2] @ p["weight_gg"].T
            r_i, r_f, r_o = rg[..., :H], rg[..., H : 2 * H], rg[..., 2 * H :]  # R_g [i, f, o]_{t−1}
            z.update(i=z["i"] + r_i, f=z["f"] + r_f, o=z["o"] + r_o)
        i = f = o = None
        if "i" in z:
            i = torch.sigmoid(z["i"] + p["weight_ci"] * c_prev if v.peephole else z["i"])  # i_t
        if "f" in z:
            f = torch.sigmoid(z["f"] + p["weight_cf"] * c_prev if v.peephole else z["f"])  # f_t
        elif v.coupled:
            assert i is not None
            f = 1 - i  # CIFG: f_t = 1 − i_t
        g = torch.tanh(z["g"]) if v.input_activation else z["g"]  # g_t
        # c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t   (f = 1 without a forget gate, i = 1 without an input gate)
        c = (c_prev if f is None else f * c_prev) + (g if i is None else i * g)
        if "o" in z:
            o = torch.sigmoid(z["o"] + p["weight_co"] * c if v.peephole else z["o"])  # o_t
        m = torch.tanh(c) if v.output_activation else c
        if o is not None:
            m = o * m  # m_t = o_t ⊙ tanh(c_t)
        h = m @ p["weight_hr"].T if self.proj_size else m  # h_t = W_hr m_t
        if v.gate_recurrence:
            assert i is not None and f is not None and o is not None
            return h, c, torch.cat([i, f, o], dim=-1)
        return h, c

    # -- backward --------------------------------------------------------------------------------

    def initial_carry(self, tape: Tape, dc_n: Tensor | None) -> Carry:
        dc = dc_n if dc_n is not None else torch.zeros_like(tape.c[0])
        if self.variant.gate_recurrence:
            return dc, dc.new_zeros((*dc.shape[:-1], 3 * dc.shape[-1]))
        return (dc,)

    def backward(self, t: int, dh: Tensor, carry: Carry, tape: Tape, p: Params) -> StepGrads:
        v, H = self.variant, tape.hidden_size
        dc_next = carry[0]  # ∂L/∂c_t through step t+1
        a = tape.gates[t]
        i, f, g, o = (self.block(a, gate, H) for gate in "ifgo")
        f_eff = 1 - i if v.coupled and i is not None else f  # CIFG: f_t = 1 − i_t
        c, c_prev = tape.c[t], tape.c_prev[t]
        # FGR: the gates at t also feed step t+1: ∂L/∂[i, f, o]_t from there
        da_i, da_f, da_o = torch.split(carry[1], H, dim=-1) if v.gate_recurrence else (None, None, None)

        dm = dh @ p["weight_hr"] if self.proj_size else dh  # ∂L/∂m_t = W_hrᵀ ∂L/∂h_t
        act_c = torch.tanh(c) if v.output_activation else c
        # ∂L/∂c_t = ∂L/∂m_t ⊙ o_t ⊙ tanh'(c_t) + ∂L/∂c_t via step t+1 (+ p_o ⊙ ∂L/∂z_o)
        dc = dm * (1 - act_c * act_c) if v.output_activation else dm
        dz: dict[str, Tensor] = {}
        if o is not None:
            dc = dc * o
            do = dm * act_c  # ∂L/∂o_t = ∂L/∂m_t ⊙ tanh(c_t)
            if da_o is not None:
                do = do + da_o
            dz["o"] = do * _sig_grad(o)  # ∂L/∂z_o = ∂L/∂o_t ⊙ σ'
            if v.peephole:
                dc = dc + p["weight_co"] * dz["o"]  # o_t reads c_t through p_o
        dc = dc + dc_next

        assert g is not None
        dg = dc * i if i is not None else dc  # ∂L/∂g_t = ∂L/∂c_t ⊙ i_t
        dz["g"] = dg * (1 - g * g) if v.input_activation else dg  # ∂L/∂z_g = ∂L/∂g_t ⊙ tanh'(z_g)
        if i is not None:
            di = dc * g  # ∂L/∂i_t = ∂L/∂c_t ⊙ g_t
            if v.coupled:
                di = di - dc * c_prev  # CIFG: f_t = 1 − i_t, so ∂L/∂i_t −= ∂L/∂c_t ⊙ c_{t−1}
            if da_i is not None:
                di = di + da_i
            dz["i"] = di * _sig_grad(i)  # ∂L/∂z_i = ∂L/∂i_t ⊙ σ'
        if f is not None:
            df = dc * c_prev  # ∂L/∂f_t = ∂L/∂c_t ⊙ c_{t−1}
            if da_f is not None:
                df = df + da_f
            dz["f"] = df * _sig_grad(f)  # ∂L/∂z_f = ∂L/∂f_t ⊙ σ'

        # ∂L/∂c_{t−1} = f_t ⊙ ∂L/∂c_t + p_i ⊙ ∂L/∂z_i + p_f ⊙ ∂L/∂z_f   (f = 1 − i for CIFG, 1 without f)
        dc_prev = dc * f_eff if f_eff is not None else dc
        if v.peephole:
            if "i" in dz:
                dc_prev = dc_prev + p["weight_ci"] * dz["i"]
            if "f" in dz:
                dc_prev = dc_prev + p["weight_cf"] * dz["f"]
        dgx = torch.cat([dz[gate] for gate in self.gate_names], dim=-1)
        if v.gate_recurrence:
            # ∂L/∂[i, f, o]_{t−1} = R_gᵀ ∂L/∂z_{i,f,o}
            da_prev = torch.cat([dz["i"], dz["f"], dz["o"]], dim=-1) @ p["weight_gg"]
            return StepGrads(dgx, dgx, dc, None, (dc_prev, da_prev))
        return StepGrads(dgx, dgx, dc, None, (dc_prev,))

    def grad_terms(self, tape: Tape, p: Params) -> dict[str, Term]:
        v, H = self.variant, tape.hidden_size
        terms = projection_terms(tape, p)
        assert tape.dgx is not None and tape.dh is not None
        if self.proj_size:
            terms["weight_hr"] = Outer(tape.dh, tape.extras["m"])  # ∂L/∂W_hr = Σ_k ∂L/∂h_k m_kᵀ
        if v.peephole:
            dz = {gate: self.block(tape.dgx, gate, H) for gate in "ifo"}
            for gate, c in (("i", tape.c_prev), ("f", tape.c_prev), ("o", tape.c)):
                dzg = dz[gate]
                if dzg is not None:
                    terms[f"weight_c{gate}"] = Sum(dzg * c)  # ∂L/∂p = Σ_k ∂L/∂z_k ⊙ c_{k−1} (c_k for o)
        if v.gate_recurrence:
            # ∂L/∂R_g = Σ_k ∂L/∂z_{ifo,k} [i, f, o]_{k−1}ᵀ
            terms["weight_gg"] = Outer(
                torch.cat(self._ifo(tape.dgx, H), dim=-1), torch.cat(self._ifo(tape.gates_prev, H), dim=-1)
            )
        return terms

    def gates(self, tape: Tape) -> dict[str, Tensor]:
        """Gate activations by name, (T, B, H) each; CIFG's f = 1 − i included, constant gates left out."""
        H = tape.hidden_size
        out = {gate: a for gate in "ifgo" if (a := self.block(tape.gates, gate, H)) is not None}
        if self.variant.coupled:
            out["f"] = 1 - out["i"]
        return out


class LSTM(RecurrentBase):
    """An LSTM with `torch.nn.LSTM`'s arguments, parameters and forward contract, in any variant.

    Arguments:
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, proj_size:
            as `torch.nn.LSTM`.
        variant: one of `bptt.lstm_variants()`: `"vanilla"` (default, = torch.nn.LSTM, alias `"np"`),
            `"peephole"`, `"original"`, `"nig"`, `"nfg"`, `"nog"`, `"niaf"`, `"noaf"`, `"cifg"`, `"fgr"`.

    Shapes: input (T, B, input_size) (batch_first: (B, T, ·); unbatched: (T, ·)); hx = (h_0, c_0) with
    h_0 (num_layers·D, B, P), c_0 (num_layers·D, B, hidden_size), P = proj_size or hidden_size.
    Returns output (T, B, D·P) and (h_n, c_n).

    Example:
        >>> import torch, bptt
        >>> lstm = bptt.LSTM(2, 16, variant="cifg")
        >>> output, (h_n, c_n) = lstm(torch.randn(10, 4, 2))
        >>> sorted(n for n, _ in lstm.named_parameters())
        ['bias_hh_l0', 'bias_ih_l0', 'weight_ci_l0', 'weight_co_l0', 'weight_hh_l0', 'weight_ih_l0']
        >>> lstm.weight_ih_l0.shape  # gates i, g, o: CIFG has no forget-gate weights
        torch.Size([48, 2])
    """

    OPTION = Option("variant", tuple(VARIANTS))

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        variant: str = "vanilla",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        step = LSTMStep(VARIANTS[self._option(variant)], proj_size if isinstance(proj_size, int) else 0)
        extra = step.extra_params(_checks.positive_int("hidden_size", hidden_size))
        args = (input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional)
        super().__init__(step, *args, proj_size, extra, device, dtype)
        self.variant = variant


def _label(step: LSTMStep) -> str:
    return f"lstm ({step.variant.name})"


def _ranges(step: LSTMStep) -> dict[str, tuple[float, float] | None]:
    ranges: dict[str, tuple[float, float] | None] = {"i": (0.0, 1.0), "f": (0.0, 1.0), "o": (0.0, 1.0)}
    ranges["g"] = (-1.0, 1.0) if step.variant.input_activation else None  # NIAF: g = z_g is not squashed
    return {
        gate: ranges[gate]
        for gate in "ifgo"
        if gate in step.gate_names or (gate == "f" and step.variant.coupled)
    }


def _twin_options(module: torch.nn.Module) -> dict[str, object]:
    return {"proj_size": module.proj_size}


def _twin_arguments(options: Mapping[str, str]) -> dict[str, object] | None:
    return {} if options["variant"] in ("vanilla", "np") else None  # torch.nn.LSTM has no other variant


SPEC = registry.register(
    registry.CellSpec(
        name="lstm",
        summary="the LSTM: torch.nn.LSTM, the 1997 original and Greff et al.'s variants",
        step=LSTMStep,
        module=LSTM,
        aliases={name: {"variant": name} for name in VARIANTS if name not in ("vanilla", "np")},
        roles={"input": "i", "forget": "f", "candidate": "g", "output": "o"},
        carry_gate="f",
        gate_ranges=_ranges,
        label=_label,
        bound_note="the Elman bound does not apply; the CEC path is bounded by the forget gate",
        torch_twin=torch.nn.LSTM,
        twin_options=_twin_options,
        twin_arguments=_twin_arguments,
        twin_gates=4,
    )
)


def _native_accepts(step: LSTMStep) -> bool:
    """Only variants of exactly `LSTMVariant` whose flags the library was compiled for."""
    return (
        type(step.variant) is LSTMVariant and native.lstm_flags(step.variant) in native.lstm_compiled_flags()
    )


dispatch.register(
    dispatch.Kernel(
        "native",
        LSTMStep,
        "cpu",
        native.lstm_forward_sweep,
        native.lstm_backward_sweep,
        accepts=_native_accepts,
        available=native.usable,
    )
)

# the Triton sweeps on CUDA (engine/gpu.py), for the variants of exactly `LSTMVariant`
gpu.register(LSTMStep, "lstm", accepts=lambda step: type(step.variant) is LSTMVariant)
