"""The GRU with PyTorch's reset-after equations (gate order r, z, n):

    r_t = σ(W_ir x_t + b_ir + W_hr h_{t−1} + b_hr)
    z_t = σ(W_iz x_t + b_iz + W_hz h_{t−1} + b_hz)
    n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t−1} + b_hn))
    h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t−1}

Because b_hn sits inside r_t ⊙ (·), the GRU keeps ∂L/∂gh_t apart from ∂L/∂gx_t (`separate_dgh`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ..engine import dispatch, gpu, native
from ..engine.sweep import Carry, Params, StepGrads
from ..engine.tape import Tape, block_buffers, state_buffer
from ..engine.terms import Term, projection_terms
from . import registry
from .base import RecurrentBase


@dataclass(frozen=True)
class GRUStep:
    """One step of the GRU, forward and backward."""

    gate_names: tuple[str, ...] = ("r", "z", "n")
    fold_bias_hh: bool = False
    separate_dgh: bool = True
    has_cell: bool = False
    zero_state: ClassVar[bool] = True  # new_tape takes h0 = None for zeros

    def new_tape(
        self, x: Tensor, h0: Tensor | None, c0: Tensor | None, reverse: bool, params: Params
    ) -> Tape:
        T, B = x.shape[:2]
        if h0 is None:  # a zero state: the whole tape zeroed at once, no initial slot to copy
            H = params["weight_hh"].shape[1]
            h_buf, gates_buf, ghn = block_buffers(x, (T + 1, B, H), (T + 1, B, 3 * H), (T, B, H), zeroed=True)
        else:
            H = h0.shape[-1]
            h_buf, gates_buf, ghn = (
                state_buffer(h0, T),
                x.new_empty((T + 1, B, 3 * H)),
                x.new_empty((T, B, H)),
            )
        tape = Tape(
            x=x,
            reverse=reverse,
            hidden_size=H,
            h_buf=h_buf,
            gates_buf=gates_buf,
            extras={"ghn": ghn},  # W_hn h_{t−1} + b_hn, needed for ∂L/∂r_t
        )
        if h0 is not None:
            tape.h_buf[tape.initial_slot()] = h0
            gates_buf[tape.initial_slot()] = 0
        return tape

    def forward(self, t: int, gx: Tensor, gh: Tensor, tape: Tape, p: Params) -> None:
        gx_r, gx_z, gx_n = gx.chunk(3, dim=-1)
        gh_r, gh_z, gh_n = gh.chunk(3, dim=-1)
        r, z, n = tape.gates[t].chunk(3, dim=-1)
        torch.add(gx_r, gh_r, out=r).sigmoid_()  # r_t = σ(W_ir x_t + b_ir + W_hr h_{t−1} + b_hr)
        torch.add(gx_z, gh_z, out=z).sigmoid_()  # z_t = σ(W_iz x_t + b_iz + W_hz h_{t−1} + b_hz)
        tape.extras["ghn"][t] = gh_n
        torch.addcmul(
            gx_n, r, gh_n, out=n
        ).tanh_()  # n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t−1} + b_hn))
        h = tape.h[t]
        torch.sub(tape.h_prev[t], n, out=h)  # h_t = n_t + z_t ⊙ (h_{t−1} − n_t)
        h.mul_(z).add_(n)

    def initial_state(self, h0: Tensor, c0: Tensor | None) -> Carry:
        return (h0,)

    def cell(self, gx: Tensor, gh: Tensor, state: Carry, p: Params) -> Carry:
        """`forward` out of place, for autograd: (h_{t−1},) → (h_t,)."""
        (h_prev,) = state
        gx_r, gx_z, gx_n = gx.chunk(3, dim=-1)
        gh_r, gh_z, gh_n = gh.chunk(3, dim=-1)
        r = torch.sigmoid(gx_r + gh_r)  # r_t = σ(W_ir x_t + b_ir + W_hr h_{t−1} + b_hr)
        z = torch.sigmoid(gx_z + gh_z)  # z_t = σ(W_iz x_t + b_iz + W_hz h_{t−1} + b_hz)
        n = torch.tanh(gx_n + r * gh_n)  # n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t−1} + b_hn))
        return (n + z * (h_prev - n),)  # h_t = n_t + z_t ⊙ (h_{t−1} − n_t)

    def initial_carry(self, tape: Tape, dc_n: Tensor | None) -> Carry:
        return ()

    def backward(self, t: int, dh: Tensor, carry: Carry, tape: Tape, p: Params) -> StepGrads:
        r, z, n = tape.gates[t].chunk(3, dim=-1)
        h_prev, ghn = tape.h_prev[t], tape.extras["ghn"][t]
        dz_z = dh * (h_prev - n) * z * (1 - z)  # ∂L/∂z_z = ∂L/∂h_t ⊙ (h_{t−1} − n_t) ⊙ σ'
        dz_n = dh * (1 - z) * (1 - n * n)  # ∂L/∂z_n = ∂L/∂h_t ⊙ (1 − z_t) ⊙ tanh'
        dz_r = dz_n * ghn * r * (1 - r)  # ∂L/∂z_r = ∂L/∂z_n ⊙ (W_hn h_{t−1} + b_hn) ⊙ σ'
        dgx = torch.cat([dz_r, dz_z, dz_n], dim=-1)
        dgh = torch.cat([dz_r, dz_z, dz_n * r], dim=-1)  # ∂L/∂(W_hn h_{t−1} + b_hn) = ∂L/∂z_n ⊙ r_t
        return StepGrads(dgx, dgh, None, dh * z, carry)  # the direct path: ∂h_t/∂h_{t−1} ⊃ diag(z_t)

    def grad_terms(self, tape: Tape, p: Params) -> dict[str, Term]:
        return projection_terms(tape, p)

    def gates(self, tape: Tape) -> dict[str, Tensor]:
        r, z, n = tape.gates.chunk(3, dim=-1)
        return {"r": r, "z": z, "n": n}


class GRU(RecurrentBase):
    """A GRU with `torch.nn.GRU`'s arguments, parameters (gate order r, z, n) and forward contract.

    Arguments: input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional as
    `torch.nn.GRU`. Shapes as `bptt.RNN`.

    Example:
        >>> import torch, bptt
        >>> gru = bptt.GRU(3, 8, num_layers=2, batch_first=True)
        >>> output, h_n = gru(torch.randn(4, 12, 3))
        >>> output.shape, h_n.shape
        (torch.Size([4, 12, 8]), torch.Size([2, 4, 8]))
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        proj_size: int | None = None,
    ) -> None:
        self._no_projection(proj_size)
        args = (input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional)
        super().__init__(GRUStep(), *args, device=device, dtype=dtype)


def _ranges(step: GRUStep) -> dict[str, tuple[float, float] | None]:
    return {"r": (0.0, 1.0), "z": (0.0, 1.0), "n": (-1.0, 1.0)}  # σ, σ, tanh


def _twin_arguments(options: Mapping[str, str]) -> dict[str, object]:
    return {}


SPEC = registry.register(
    registry.CellSpec(
        name="gru",
        summary="PyTorch's reset-after GRU",
        step=GRUStep,
        module=GRU,
        roles={"reset": "r", "update": "z", "candidate": "n"},
        gate_ranges=_ranges,
        bound_note="the Elman bound does not apply (z_t mixes the old and new state)",
        torch_twin=torch.nn.GRU,
        twin_arguments=_twin_arguments,
        twin_gates=3,
    )
)

dispatch.register(
    dispatch.Kernel(
        "native", GRUStep, "cpu", native.gru_forward_sweep, native.gru_backward_sweep, available=native.usable
    )
)

gpu.register(GRUStep, "gru")  # the Triton sweeps on CUDA (engine/gpu.py)
