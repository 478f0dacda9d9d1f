"""The time loop: one forward sweep and one backward sweep, shared by every cell.

The loop does what all cells have in common — the recurrent projection gh_t = W_hh h_{t−1} (+ b_hh)
on the way forward, and ∂L/∂h_{t−1} = W_hhᵀ ∂L/∂gh_t on the way back — and hands everything
elementwise to the cell's `Step` (cells/rnn.py, cells/lstm.py, cells/gru.py), which writes the step's
equations and their derivatives.

The input projection of all steps is one matmul before the forward sweep, and the weight gradients
are one matmul each after the backward sweep (engine/function.py); the sweeps only walk time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import torch
from torch import Tensor

from .tape import Tape
from .terms import Term

Params = Mapping[str, Tensor]
Carry = tuple[Tensor, ...]


class Step(Protocol):
    """One time step of a cell family: its equations forward and backward.

    `kind` names the family. `gate_names` lists the G blocks of rows in `weight_ih`/`weight_hh`, in PyTorch's order.
    `fold_bias_hh` says that b_hh may join b_ih in the input projection (not for the GRU, whose
    b_hn sits inside r ⊙ (W_hn h + b_hn)). `separate_dgh` says that ∂L/∂gh_t differs from ∂L/∂gx_t.
    """

    kind: str  # "rnn", "lstm" or "gru": which native sweep runs it
    gate_names: tuple[str, ...]
    fold_bias_hh: bool
    separate_dgh: bool
    has_cell: bool

    def new_tape(self, x: Tensor, h0: Tensor, c0: Tensor | None, reverse: bool, params: Params) -> Tape: ...

    def forward(self, t: int, gx: Tensor, gh: Tensor, tape: Tape, p: Params) -> None: ...

    def initial_carry(self, tape: Tape, dc_n: Tensor | None) -> Carry: ...

    def backward(
        self, t: int, dh: Tensor, carry: Carry, tape: Tape, p: Params
    ) -> tuple[Tensor | None, Carry]: ...

    def grad_terms(self, tape: Tape, p: Params) -> dict[str, Term]: ...


def forward_sweep(step: Step, tape: Tape, gx: Tensor, p: Params) -> None:
    """Run the recurrence over all steps of `tape`, in its direction, given gx = W_ih x + b (T, B, G·H)."""
    W_hh = p["weight_hh"]
    b_hh = None if step.fold_bias_hh else p.get("bias_hh")
    h_prev = tape.h_prev
    gh = gx.new_empty(gx.shape[1:])  # (B, G·H), reused every step
    for t in tape.order:
        # gh_t = W_hh h_{t−1} + b_hh
        if b_hh is None:
            torch.mm(h_prev[t], W_hh.T, out=gh)
        else:
            torch.addmm(b_hh, h_prev[t], W_hh.T, out=gh)
        step.forward(t, gx[t], gh, tape, p)


def backward_sweep(
    step: Step, tape: Tape, grad_out: Tensor, dh_n: Tensor, dc_n: Tensor | None, p: Params
) -> tuple[Tensor, Carry]:
    """Walk back through time from the given ∂L/∂output, ∂L/∂h_n and ∂L/∂c_n.

    Fills tape.dh, tape.dc, tape.dgx, tape.dgh and returns ∂L/∂h_0 and the cell's carry at t = 0
    (∂L/∂c_0 first for the LSTM).
    """
    T, B = tape.steps, tape.x.shape[1]
    G_H = len(step.gate_names) * tape.hidden_size
    tape.dh = torch.empty_like(tape.h)
    tape.dgx = grad_out.new_empty((T, B, G_H))
    tape.dgh = torch.empty_like(tape.dgx) if step.separate_dgh else tape.dgx
    if step.has_cell:
        tape.dc = torch.empty_like(tape.c)
    W_hh = p["weight_hh"]
    dh_next = dh_n  # ∂L/∂h_t through the steps after t; at the last step, ∂L/∂h_n
    carry = step.initial_carry(tape, dc_n)
    for t in reversed(tape.order):
        dh = tape.dh[t]
        # ∂L/∂h_t = ∂ℓ/∂h_t (this step's output, from the loss or the layer above) + ∂L/∂h_t via step t+1
        torch.add(grad_out[t], dh_next, out=dh)
        direct, carry = step.backward(t, dh, carry, tape, p)
        # ∂L/∂h_{t−1} = W_hhᵀ ∂L/∂gh_t (+ a direct path such as the GRU's z_t ⊙ ∂L/∂h_t)
        dh_next = tape.dgh[t] @ W_hh
        if direct is not None:
            dh_next += direct
    return dh_next, carry
