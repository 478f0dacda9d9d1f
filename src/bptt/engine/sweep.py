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
from typing import NamedTuple, Protocol

import torch
from torch import Tensor

from .tape import Tape
from .terms import Term

Params = Mapping[str, Tensor]
Carry = tuple[Tensor, ...]


class StepGrads(NamedTuple):
    """What one backward step gives, for any leading batch of cotangents (…, B, ·).

    dgx = ∂L/∂gx_t and dgh = ∂L/∂gh_t (the same tensor unless the cell separates them), dc the
    total ∂L/∂c_t (LSTM), direct the part of ∂L/∂h_{t−1} that bypasses W_hh (GRU's z_t ⊙ ∂L/∂h_t),
    carry the cell's cotangents at t − 1 besides h (∂L/∂c_{t−1}; FGR adds ∂L/∂[i, f, o]_{t−1}).
    """

    dgx: Tensor
    dgh: Tensor
    dc: Tensor | None
    direct: Tensor | None
    carry: Carry


class Step(Protocol):
    """One time step of a cell family: its equations forward and backward.

    `gate_names` lists the G blocks of rows in `weight_ih`/`weight_hh`, in PyTorch's order.
    `fold_bias_hh` says that b_hh may join b_ih in the input projection (not for the GRU, whose
    b_hn sits inside r ⊙ (W_hn h + b_hn)). `separate_dgh` says that ∂L/∂gh_t differs from ∂L/∂gx_t.
    """

    gate_names: tuple[str, ...]
    fold_bias_hh: bool
    separate_dgh: bool
    has_cell: bool

    def new_tape(self, x: Tensor, h0: Tensor, c0: Tensor | None, reverse: bool, params: Params) -> Tape: ...

    def forward(self, t: int, gx: Tensor, gh: Tensor, tape: Tape, p: Params) -> None: ...

    def initial_carry(self, tape: Tape, dc_n: Tensor | None) -> Carry: ...

    def backward(self, t: int, dh: Tensor, carry: Carry, tape: Tape, p: Params) -> StepGrads: ...

    def grad_terms(self, tape: Tape, p: Params) -> dict[str, Term]: ...


def forward_sweep(step: Step, tape: Tape, gx: Tensor, p: Params) -> None:
    """Run the recurrence over all steps of `tape`, in its direction, given gx = W_ih x + b (T, B, G·H)."""
    W_hh = p.get("weight_hh")
    b_hh = None if step.fold_bias_hh else p.get("bias_hh")
    h_prev = tape.h_prev
    if W_hh is None:  # a cell whose gates do not read h_{t−1} (minGRU, minLSTM, LRU): gh is (B, 0)
        gh = gx.new_empty((gx.shape[1], 0))
        for t in tape.order:
            step.forward(t, gx[t], gh, tape, p)
        return
    gh = gx.new_empty(gx.shape[1:])  # (B, G·H), reused every step
    for t in tape.order:
        # gh_t = W_hh h_{t−1} + b_hh
        if b_hh is None:
            torch.mm(h_prev[t], W_hh.T, out=gh)
        else:
            torch.addmm(b_hh, h_prev[t], W_hh.T, out=gh)
        step.forward(t, gx[t], gh, tape, p)


def allocate_grads(
    tape: Tape, like: Tensor, gates: int, separate_dgh: bool, has_cell: bool, width: int | None = None
) -> None:
    """The buffers the backward sweep fills: dh, dgx, dgh (dgx itself unless separate) and dc.

    dgx has `gates` blocks of H columns, or `width` columns for a cell whose W_ih is laid out otherwise.
    """
    T, B = tape.steps, tape.x.shape[1]
    tape.dh = torch.empty_like(tape.h)
    tape.dgx = like.new_empty((T, B, gates * tape.hidden_size if width is None else width))
    tape.dgh = torch.empty_like(tape.dgx) if separate_dgh else tape.dgx
    if has_cell:
        tape.dc = torch.empty_like(tape.c)


def allocate_step_grads(step: Step, tape: Tape, like: Tensor) -> None:
    """`allocate_grads` for a step's gate count and layout (`projection_width` where the step has one: LRU)."""
    width = getattr(step, "projection_width", None)
    allocate_grads(
        tape,
        like,
        len(step.gate_names),
        step.separate_dgh,
        step.has_cell,
        None if width is None else int(width(tape.hidden_size)),
    )


def _back(step: Step, t: int, dh: Tensor, carry: Carry, tape: Tape, p: Params) -> tuple[StepGrads, Tensor]:
    """One step back: the step's gradients and ∂L/∂h_{t−1} through it."""
    g = step.backward(t, dh, carry, tape, p)
    # ∂L/∂h_{t−1} = W_hhᵀ ∂L/∂gh_t (+ a direct path such as the GRU's z_t ⊙ ∂L/∂h_t)
    W_hh = p.get("weight_hh")
    if W_hh is None:  # no recurrent weights: only the direct path (minGRU's (1 − z_t) ⊙ ∂L/∂h_t), if any
        return g, (g.direct if g.direct is not None else torch.zeros_like(dh))
    dh_prev = g.dgh @ W_hh
    return g, (dh_prev if g.direct is None else dh_prev + g.direct)


def backward_sweep(
    step: Step, tape: Tape, grad_out: Tensor, dh_n: Tensor, dc_n: Tensor | None, p: Params
) -> tuple[Tensor, Carry]:
    """Walk back through time from the given ∂L/∂output, ∂L/∂h_n and ∂L/∂c_n.

    Fills tape.dh, tape.dc, tape.dgx, tape.dgh and returns ∂L/∂h_0 and the cell's carry at t = 0
    (∂L/∂c_0 first for the LSTM).
    """
    allocate_step_grads(step, tape, grad_out)
    dh_next = dh_n  # ∂L/∂h_t through the steps after t; at the last step, ∂L/∂h_n
    carry = step.initial_carry(tape, dc_n)
    for t in reversed(tape.order):
        # ∂L/∂h_t = ∂ℓ/∂h_t (this step's output, from the loss or the layer above) + ∂L/∂h_t via step t+1
        dh = torch.add(grad_out[t], dh_next, out=tape.dh[t])
        g, dh_next = _back(step, t, dh, carry, tape, p)
        tape.dgx[t] = g.dgx
        if step.separate_dgh:
            tape.dgh[t] = g.dgh
        if g.dc is not None:
            tape.dc[t] = g.dc
        carry = g.carry
    return dh_next, carry


def state_vjp(step: Step, tape: Tape, t: int, p: Params, cotangent: Carry) -> Carry:
    """uᵀ ∂s_t/∂s_{t−1} for a batch of cotangents u of the state s_t = (h_t, c_t, …), each (N, B, ·).

    The same backward step as the sweep's, with no loss at step t: BPTT with many cotangents at once.
    """
    g, dh_prev = _back(step, t, cotangent[0], tuple(cotangent[1:]), tape, p)
    return (dh_prev, *g.carry)
