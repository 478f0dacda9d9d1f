"""The time loop: one forward sweep and one backward sweep, shared by every cell.

The loop does what all cells have in common — the recurrent projection gh_t = W_hh h_{t−1} (+ b_hh)
on the way forward, and ∂L/∂h_{t−1} = W_hhᵀ ∂L/∂gh_t on the way back — and hands everything
elementwise to the cell's `Step` (cells/rnn.py, cells/lstm.py, cells/gru.py), which writes the step's
equations and their derivatives.

The input projection of all steps is one matmul before the forward sweep, and the weight gradients
are one matmul each after the backward sweep (engine/function.py); the sweeps only walk time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple, Protocol

import torch
from torch import Tensor

from .tape import Tape, block_buffers, slots
from .terms import Term


def running(t: int, lengths: Tensor) -> Tensor:
    """(B, 1) mask of the sequences still running at time position t."""
    return (lengths > t).unsqueeze(-1)


Params = Mapping[str, Tensor]
Carry = tuple[Tensor, ...]
# A layer-direction's outputs as `LayerSweep` returns them: output (T, B, P), h_n (1, B, P) and, for a
# cell with a cell state, c_n (1, B, H)
Outputs = Sequence[Tensor]


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

    `forward` and `backward` are the sweep's (in place, on the tape); `cell` is the same step out of
    place on a state tuple (h, c, …) from `initial_state`, the path autograd differentiates
    (engine/unrolled.py: double backward).

    `gate_names` lists the G blocks of rows in `weight_ih`/`weight_hh`, in PyTorch's order.
    `fold_bias_hh` says that b_hh may join b_ih in the input projection (not for the GRU, whose
    b_hn sits inside r ⊙ (W_hn h + b_hn)). `separate_dgh` says that ∂L/∂gh_t differs from ∂L/∂gx_t.
    """

    @property
    def gate_names(self) -> tuple[str, ...]: ...
    @property
    def fold_bias_hh(self) -> bool: ...
    @property
    def separate_dgh(self) -> bool: ...
    @property
    def has_cell(self) -> bool: ...

    def new_tape(
        self, x: Tensor, h0: Tensor | None, c0: Tensor | None, reverse: bool, params: Params
    ) -> Tape:
        """The tape of one sweep over x (T, B, I) from (h0, c0); a step whose `zero_state` is True also
        takes h0 = c0 = None, a zero initial state."""
        ...

    def initial_state(self, h0: Tensor, c0: Tensor | None) -> Carry: ...

    def cell(self, gx: Tensor, gh: Tensor, state: Carry, p: Params) -> Carry: ...

    def forward(self, t: int, gx: Tensor, gh: Tensor, tape: Tape, p: Params) -> None: ...

    def initial_carry(self, tape: Tape, dc_n: Tensor | None) -> Carry: ...

    def backward(self, t: int, dh: Tensor, carry: Carry, tape: Tape, p: Params) -> StepGrads: ...

    def grad_terms(self, tape: Tape, p: Params) -> dict[str, Term]: ...

    def gates(self, tape: Tape) -> dict[str, Tensor]: ...


def forward_sweep(step: Step, tape: Tape, gx: Tensor, p: Params) -> None:
    """Run the recurrence over all steps of `tape`, in its direction, given gx = W_ih x + b (T, B, G·H)."""
    W_hh = p.get("weight_hh")
    b_hh = None if step.fold_bias_hh else p.get("bias_hh")
    h_prev = tape.h_prev
    # (B, G·H), reused every step; (B, 0) for a cell whose gates do not read h_{t−1} (minGRU, minLSTM, LRU)
    gh = gx.new_empty((gx.shape[1], 0) if W_hh is None else gx.shape[1:])
    for t in tape.order:
        if W_hh is not None:  # gh_t = W_hh h_{t−1} + b_hh
            if b_hh is None:
                torch.mm(h_prev[t], W_hh.T, out=gh)
            else:
                torch.addmm(b_hh, h_prev[t], W_hh.T, out=gh)
        step.forward(t, gx[t], gh, tape, p)
        if tape.lengths is not None:
            _hold(tape, t)


def _hold(tape: Tape, t: int) -> None:
    """After a sequence's end its state is held, s_t = s_{t−1} (engine/unrolled.py), and its extras are 0."""
    ended = ~running(t, tape.lengths).squeeze(-1)  # type: ignore[arg-type]
    if not bool(ended.any()):
        return
    for buf in (tape.h_buf, tape.c_buf, tape.gates_buf):
        if buf is not None:
            now, before = slots(buf, tape.reverse)
            now[t][ended] = before[t][ended]
    for extra in tape.extras.values():
        if 0 in extra.stride()[:2]:  # one value broadcast over steps or batch (the LRU's |λ|): not per step
            continue
        extra[t][ended] = 0  # e.g. m_t: no ∂L/∂W_hr term from a held step


def allocate_grads(
    tape: Tape, like: Tensor, gates: int, separate_dgh: bool, has_cell: bool, width: int | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """The buffers the backward sweep fills, set on the tape and returned: dh, dgx, dgh (dgx itself
    unless separate) and dc (None without a cell state).

    dgx has `gates` blocks of H columns, or `width` columns for a cell whose W_ih is laid out otherwise.
    """
    T, B = tape.steps, tape.x.shape[1]
    G = gates * tape.hidden_size if width is None else width
    h_buf, c_buf = tape.h_buf, tape.c_buf  # (T+1, B, ·): the shapes of h and c without their views
    if h_buf.dtype == like.dtype and h_buf.device == like.device:  # one allocation for them all
        shapes = [(T, *h_buf.shape[1:]), (T, B, G), *([(T, B, G)] if separate_dgh else [])]
        if has_cell:
            assert c_buf is not None
            shapes.append((T, *c_buf.shape[1:]))
        dh, dgx, *rest = block_buffers(like, *shapes, zeroed=False)
        dgh = rest.pop(0) if separate_dgh else dgx
        dc = rest.pop(0) if has_cell else None
    else:
        dh = torch.empty_like(tape.h)
        dgx = like.new_empty((T, B, G))
        dgh = torch.empty_like(dgx) if separate_dgh else dgx
        dc = torch.empty_like(tape.c) if has_cell else None
    tape.dh, tape.dgx, tape.dgh, tape.dc = dh, dgx, dgh, dc
    return dh, dgx, dgh, dc


def allocate_step_grads(step: Step, tape: Tape, like: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """`allocate_grads` for a step's gate count and layout (`projection_width` where the step has one: LRU)."""
    width = getattr(step, "projection_width", None)
    return allocate_grads(
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


def _held(
    t: int, lengths: Tensor, g: StepGrads, dh: Tensor, dh_prev: Tensor, carry: Carry
) -> tuple[StepGrads, Tensor]:
    """One step back where the ended sequences' state is held: s_{t−1} gets ∂L/∂s_t whole, the step nothing."""
    alive = running(t, lengths)
    dgx = g.dgx.where(alive, 0)
    dgh = dgx if g.dgh is g.dgx else g.dgh.where(alive, 0)
    kept = tuple(torch.where(alive, new, old) for new, old in zip(g.carry, carry, strict=True))
    dc = None if g.dc is None else torch.where(alive, g.dc, carry[0])  # ∂L/∂c_t of a held c_t = c_{t−1}
    return StepGrads(dgx, dgh, dc, g.direct, kept), torch.where(alive, dh_prev, dh)


def backward_sweep(
    step: Step, tape: Tape, grad_out: Tensor, dh_n: Tensor, dc_n: Tensor | None, p: Params
) -> tuple[Tensor, Carry]:
    """Walk back through time from the given ∂L/∂output, ∂L/∂h_n and ∂L/∂c_n.

    Fills tape.dh, tape.dc, tape.dgx, tape.dgh and returns ∂L/∂h_0 and the cell's carry at t = 0
    (∂L/∂c_0 first for the LSTM).
    """
    dh_all, dgx, dgh, dc = allocate_step_grads(step, tape, grad_out)
    dh_next = dh_n  # ∂L/∂h_t through the steps after t; at the last step, ∂L/∂h_n
    carry = step.initial_carry(tape, dc_n)
    for t in reversed(tape.order):
        # ∂L/∂h_t = ∂ℓ/∂h_t (this step's output, from the loss or the layer above) + ∂L/∂h_t via step t+1
        dh = torch.add(grad_out[t], dh_next, out=dh_all[t])
        g, dh_next = _back(step, t, dh, carry, tape, p)
        if tape.lengths is not None:
            g, dh_next = _held(t, tape.lengths, g, dh, dh_next, carry)
        dgx[t] = g.dgx
        if step.separate_dgh:
            dgh[t] = g.dgh
        if dc is not None and g.dc is not None:
            dc[t] = g.dc
        carry = g.carry
    return dh_next, carry


def state_vjp(step: Step, tape: Tape, t: int, p: Params, cotangent: Carry) -> Carry:
    """uᵀ ∂s_t/∂s_{t−1} for a batch of cotangents u of the state s_t = (h_t, c_t, …), each (N, B, ·).

    The same backward step as the sweep's, with no loss at step t: BPTT with many cotangents at once.
    """
    g, dh_prev = _back(step, t, cotangent[0], tuple(cotangent[1:]), tape, p)
    return (dh_prev, *g.carry)
