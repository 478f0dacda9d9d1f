"""One layer-direction unrolled out of place: the path autograd differentiates, to any order.

The explicit sweeps (sweep.py, native.py) write every step in place into the tape and give the
first derivative by hand; autograd cannot differentiate them again. Where a second derivative is
asked for (`torch.autograd.grad(..., create_graph=True)`: gradient penalties, Hessian-vector
products, MAML), `LayerSweep.backward` reruns the layer here, through each cell's `cell`, the same
equations out of place, and lets autograd differentiate that. (Reduced-precision layers under
autocast run the PyTorch time loop of sweep.py in the autocast dtype, not this path.)

With `lengths`, sequence b ends after its own `lengths[b]` steps: at a position t ≥ lengths[b] its
state is held (s_t = s_{t−1}), the rule the explicit sweeps follow too (sweep.py). The forward
direction's final state is then the state at its last step, and the reverse direction starts there
from the initial state.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .sweep import Params, Step, running


def layer(
    step: Step,
    x: Tensor,
    h0: Tensor,
    c0: Tensor | None,
    p: Params,
    reverse: bool,
    lengths: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """x (T, B, I) → output (T, B, P), h_n (B, P), c_n (B, H) or None, every operation differentiable.

    The state tuple's first element is the step's output and what W_hh reads (h_t; the LRU's y_t),
    its second the cell state; a cell without W_hh (minGRU, minLSTM, LRU) gets an empty gh, as in
    sweep.py.
    """
    if not hasattr(step, "cell"):
        raise NotImplementedError(
            f"{type(step).__name__} has no `cell` (its step out of place), which second derivatives and "
            "autocast run through; see docs/adding-a-cell.md"
        )
    T, B = x.shape[:2]
    b_ih, b_hh, W_hh = p.get("bias_ih"), p.get("bias_hh"), p.get("weight_hh")
    if b_ih is not None and b_hh is not None and step.fold_bias_hh:
        b_ih, b_hh = b_ih + b_hh, None
    gx = F.linear(x, p["weight_ih"], b_ih)  # gx_t = W_ih x_t + b_ih (+ b_hh), all steps at once
    state = step.initial_state(h0, c0)
    hs: list[Tensor] = [h0] * T
    no_gh = gx.new_zeros((B, 0))  # a cell whose gates do not read h_{t−1} (minGRU, minLSTM, LRU), as sweep.py
    for t in range(T - 1, -1, -1) if reverse else range(T):
        # gh_t = W_hh h_{t−1} + b_hh
        gh = no_gh if W_hh is None else F.linear(state[0], W_hh, b_hh)
        new = step.cell(gx[t], gh, state, p)
        if lengths is not None:
            alive = running(t, lengths)
            new = tuple(torch.where(alive, n, s) for n, s in zip(new, state, strict=True))  # s_t = s_{t−1}
        state = new
        hs[t] = state[0]
    return torch.stack(hs), state[0], (state[1] if step.has_cell else None)
