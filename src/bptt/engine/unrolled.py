"""One layer-direction unrolled out of place: the path autograd differentiates, to any order.

The explicit sweeps (sweep.py, native.py) write every step in place into the tape and give the
first derivative by hand; autograd cannot differentiate them again. Where a second derivative is
asked for (`torch.autograd.grad(..., create_graph=True)`: gradient penalties, Hessian-vector
products, MAML), `LayerSweep.backward` reruns the layer here, through each cell's `cell`, the same
equations out of place, and lets autograd differentiate that. The same path runs reduced-precision
layers (bfloat16, float16) under autocast, which the native sweeps do not take.

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
    """x (T, B, I) → output (T, B, P), h_n (B, P), c_n (B, H) or None, every operation differentiable."""
    if not hasattr(step, "cell"):
        raise NotImplementedError(
            f"{type(step).__name__} has no `cell` (its step out of place), which second derivatives and "
            "autocast run through; see docs/adding-a-cell.md"
        )
    T = x.shape[0]
    b_ih, b_hh = p.get("bias_ih"), p.get("bias_hh")
    if b_ih is not None and step.fold_bias_hh:
        b_ih, b_hh = b_ih + p["bias_hh"], None
    gx = F.linear(x, p["weight_ih"], b_ih)  # gx_t = W_ih x_t + b_ih (+ b_hh), all steps at once
    state = step.initial_state(h0, c0)
    hs: list[Tensor] = [h0] * T
    for t in range(T - 1, -1, -1) if reverse else range(T):
        gh = F.linear(state[0], p["weight_hh"], b_hh)  # gh_t = W_hh h_{t−1} + b_hh
        new = step.cell(gx[t], gh, state, p)
        if lengths is not None:
            alive = running(t, lengths)
            new = tuple(torch.where(alive, n, s) for n, s in zip(new, state, strict=True))  # s_t = s_{t−1}
        state = new
        hs[t] = state[0]
    return torch.stack(hs), state[0], (state[1] if step.has_cell else None)
