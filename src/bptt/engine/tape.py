"""The tape: everything one layer in one direction records on its way through time.

Every per-step tensor is indexed by time *position* t = 0..T−1, also for the reverse direction of a
bidirectional layer, so `tape.h[t]` is always the hidden state that belongs to input `x[t]`.

State buffers (h, c, gates) carry one extra slot for the initial state. For the forward
direction slot 0 holds the initial state and slot t+1 the state after step t; for the reverse
direction slot T holds the initial state and slot t the state after step t. `tape.h` and
`tape.h_prev` are two views of one buffer, so `tape.h_prev[t]` is the state that step t started from
in either direction, without copies.

The forward sweep fills h, c, gates (and the cell's extras); the backward sweep fills the totals
dh = ∂L/∂h_t and dc = ∂L/∂c_t and the pre-activation gradients dgx = ∂L/∂(W_ih x_t + b_ih) and
dgh = ∂L/∂(W_hh h_{t−1} + b_hh) (one tensor for the RNN and LSTM, two for the GRU's reset-after n).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch
from torch import Tensor


def slots(buf: Tensor, reverse: bool) -> tuple[Tensor, Tensor]:
    """(state after step t, state before step t) as views of a (T+1, …) buffer, indexed by t."""
    return _after(buf, reverse), _before(buf, reverse)


def _after(buf: Tensor, reverse: bool) -> Tensor:
    """`slots(buf, reverse)[0]` alone (one view: the tape's properties are read on every call)."""
    return buf[:-1] if reverse else buf[1:]


def _before(buf: Tensor, reverse: bool) -> Tensor:
    """`slots(buf, reverse)[1]` alone."""
    return buf[1:] if reverse else buf[:-1]


@dataclass(eq=False)
class Tape:
    """What one layer-direction keeps for its explicit backward pass and for `bptt.trace`.

    Shapes: T steps, B batch, I input features, H hidden units, P = proj_size or H, G gate blocks.
    """

    x: Tensor  # (T, B, I) the layer's input
    reverse: bool
    hidden_size: int
    h_buf: Tensor  # (T+1, B, P)
    c_buf: Tensor | None = None  # (T+1, B, H), LSTM only
    gates_buf: Tensor | None = None  # (T+1, B, G·H) gate activations, LSTM and GRU
    extras: dict[str, Tensor] = field(default_factory=dict)  # cell-specific per-step tensors
    lengths: Tensor | None = None  # (B,) steps of each sequence (packed input); None: all T
    # Filled by the backward sweep.
    dh: Tensor | None = None  # (T, B, P)
    dc: Tensor | None = None  # (T, B, H)
    dgx: Tensor | None = None  # (T, B, G·H)
    dgh: Tensor | None = None  # (T, B, G·H), the same tensor as dgx unless the cell separates them
    # The gradient that enters from outside the recurrence, kept as the backward pass receives it:
    # ∂L/∂out_t (from the loss or the layer above), ∂L/∂h_n and ∂L/∂c_n; None for h_n's and c_n's
    # where neither was used and the kernel started from zeros (`dispatch.Kernel.zero_final_grads`).
    dout: Tensor | None = None  # (T, B, P)
    dh_n: Tensor | None = None  # (B, P)
    dc_n: Tensor | None = None  # (B, H), LSTM only

    @property
    def steps(self) -> int:
        return self.x.shape[0]

    @property
    def order(self) -> range:
        """Time positions in the order this direction visits them."""
        T = self.steps
        return range(T - 1, -1, -1) if self.reverse else range(T)

    @property
    def h(self) -> Tensor:
        return _after(self.h_buf, self.reverse)

    @property
    def h_prev(self) -> Tensor:
        return _before(self.h_buf, self.reverse)

    @property
    def c(self) -> Tensor:
        assert self.c_buf is not None
        return _after(self.c_buf, self.reverse)

    @property
    def c_prev(self) -> Tensor:
        assert self.c_buf is not None
        return _before(self.c_buf, self.reverse)

    @property
    def gates(self) -> Tensor:
        assert self.gates_buf is not None
        return _after(self.gates_buf, self.reverse)

    @property
    def gates_prev(self) -> Tensor:
        assert self.gates_buf is not None
        return _before(self.gates_buf, self.reverse)

    def samples(self, index: slice | Tensor) -> Tape:
        """The same tape for a slice of the batch (views of every buffer, no copies) or for the rows of
        an index tensor (copies)."""

        def cut(x: Tensor | None) -> Tensor | None:
            return None if x is None else x[:, index]

        out = Tape(
            x=self.x[:, index],
            reverse=self.reverse,
            hidden_size=self.hidden_size,
            h_buf=self.h_buf[:, index],
            c_buf=cut(self.c_buf),
            gates_buf=cut(self.gates_buf),
            extras={k: v[:, index] for k, v in self.extras.items()},
            dh=cut(self.dh),
            dc=cut(self.dc),
            dgx=cut(self.dgx),
            lengths=None if self.lengths is None else self.lengths[index],
            dout=cut(self.dout),
            dh_n=None if self.dh_n is None else self.dh_n[index],
            dc_n=None if self.dc_n is None else self.dc_n[index],
        )
        out.dgh = out.dgx if self.dgh is self.dgx else cut(self.dgh)
        return out

    def final(self, buf: Tensor) -> Tensor:
        """The state after the last step this direction visits."""
        return buf[0] if self.reverse else buf[-1]

    def initial_slot(self) -> int:
        return self.steps if self.reverse else 0


def state_buffer(init: Tensor, steps: int) -> Tensor:
    """A (T+1, …) buffer whose initial slot is filled by the caller."""
    return torch.empty((steps + 1, *init.shape), dtype=init.dtype, device=init.device)


def block_buffers(like: Tensor, *shapes: tuple[int, ...], zeroed: bool) -> list[Tensor]:
    """Contiguous buffers of these shapes, in `like`'s dtype and device, as views of one allocation
    (filled with zeros once where `zeroed`: a tape that starts from a zero state, whose initial slots
    then need no copies), each starting 256 bytes or more into it at a multiple of 64 elements.

    Example:
        >>> h, c = block_buffers(torch.empty(0), (3, 2, 5), (3, 2, 5), zeroed=True)
        >>> h.shape, c.shape, bool(h.any() or c.any()), c.data_ptr() - h.data_ptr()
        (torch.Size([3, 2, 5]), torch.Size([3, 2, 5]), False, 256)
    """
    total, layout = _layout(shapes)
    block = (like.new_zeros if zeroed else like.new_empty)(total)
    return [block.as_strided(shape, stride, start) for shape, stride, start in layout]  # one view each


@functools.lru_cache(maxsize=256)
def _layout(
    shapes: tuple[tuple[int, ...], ...],
) -> tuple[int, tuple[tuple[tuple[int, ...], tuple[int, ...], int], ...]]:
    """`block_buffers`' allocation size and each buffer's (shape, contiguous strides, start), by the shapes."""
    layout, start = [], 0
    for k, shape in enumerate(shapes):
        strides, n = [], 1
        for size in reversed(shape):
            strides.append(n)
            n *= size
        layout.append((tuple(shape), tuple(reversed(strides)), start))
        start += n if k == len(shapes) - 1 else -(-n // 64) * 64
    return start, tuple(layout)
