"""The seeds' LSTM decomposition: ∂c_t/∂c_{t−1} = diag(f_t) + (the rest, through h_{t−1}).

Seeds 000 and 001 argue that the first term, the forget gate on the Constant Error Carousel, can
only shrink the gradient (0 ≤ f ≤ 1), while the second, which reaches c_{t−1} through
h_{t−1} = o_{t−1} ⊙ tanh(c_{t−1}) and the gates and block input of step t, carries W_hh and can
make the whole explode. Here both are measured per step and sample:

    dc_t/dc_{t−1} = ∂c_t/∂c_{t−1}|_h  +  ∂c_t/∂h_{t−1} · ∂h_{t−1}/∂c_{t−1}
                  = diag(f_t) + R_t

(R_t also holds the peephole terms of ∂c_t/∂c_{t−1}|_h). Norms are spectral norms; ‖diag(f_t)‖ is
max_j f_tj. At the first step h_{−1} is the given initial state, so the split starts at the second.

The successors have their own carry path in place of diag(f_t) (`carry_jacobian` of the step):
sLSTM diag(f'_t) on c and n (and on m where the forget branch sets the stabiliser), minGRU
diag(1 − z_t) and minLSTM diag(f'_t) on h itself (their remainder is zero: no gate reads h_{t−1}),
LRU the rotation-scaling by λ (remainder zero too).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .._checks import InputError
from ..cells import registry
from ..engine.sweep import state_vjp
from .jacobian import sigma_max, state_layout
from .progress import task

if TYPE_CHECKING:
    from ..trace import Trace


@dataclass(frozen=True)
class ForgetSplit:
    """(B, T) norms per sample and step (NaN at the first step): ‖diag(f_t)‖, ‖R_t‖ and ‖dc_t/dc_{t−1}‖."""

    forget: Tensor
    remainder: Tensor
    total: Tensor


def forget_split(
    trace: Trace, layer: int = 0, direction: int = 0, samples: slice | None = None
) -> ForgetSplit:
    """Split every step's dc_t/dc_{t−1} into diag(f_t) and the remainder through h_{t−1}.

    Example:
        >>> import torch, bptt
        >>> from bptt.diagnostics import forget_split
        >>> tr = bptt.trace(bptt.LSTM(2, 6), torch.randn(12, 3, 2), lambda out, s: out[-1].sum())
        >>> split = forget_split(tr)
        >>> bool((split.forget[:, 1:] <= 1).all())
        True
    """
    step, tape, p = trace.layer(layer, direction, samples)
    carry_jacobian = getattr(step, "carry_jacobian", None)
    if not step.has_cell and carry_jacobian is None:
        raise InputError("the forget-gate split needs an LSTM (a cell state c) or a cell with a carry path")
    layout = state_layout(step, tape)
    carried = "c" if step.has_cell else "h"  # minGRU and minLSTM carry h itself
    B, T, S = tape.x.shape[1], tape.steps, layout.sizes[layout.names.index(carried)]
    dtype, device = tape.h.dtype, tape.h.device
    if carry_jacobian is None:  # the LSTMs: diag of the spec's carry gate (f = 1 without one)
        spec = registry.spec_of(step)
        if spec is None:
            raise InputError(
                f"the forget-gate split needs a registered cell; {type(step).__name__} is not one"
            )
        f_all = step.gates(tape).get(spec.carry_gate) if spec.carry_gate else None
    eye = torch.eye(S, dtype=dtype, device=device)[:, None, :].expand(S, B, S)
    zero = {
        n: torch.zeros(S, B, size, dtype=dtype, device=device)
        for n, size in zip(layout.names, layout.sizes, strict=True)
    }
    nan = torch.full((B, T), float("nan"), dtype=torch.float64, device=device)
    forget, remainder, total = nan.clone(), nan.clone(), nan.clone()
    order = list(tape.order)
    with task("forget-gate split", len(order) - 1) as advance:
        for idx in range(1, len(order)):
            advance(1)
            t, t_prev = order[idx], order[idx - 1]
            # rows of [∂c_t/∂h_{t−1}, ∂c_t/∂c_{t−1}|_h] from unit cotangents on c_t
            cot = tuple(eye if n == carried else zero[n] for n in layout.names)
            rows = state_vjp(step, tape, t, p, cot)
            if step.has_cell:
                dh_prev, dc_direct = rows[0], rows[1]
                # through h_{t−1} = o_{t−1} ⊙ tanh(c_{t−1}): step t−1's output map, backwards
                via_h = step.backward(t_prev, dh_prev, tuple(zero[n] for n in layout.names[1:]), tape, p).dc
                assert via_h is not None
                J = (dc_direct + via_h).permute(1, 0, 2)  # (B, S, S): row i = ∂c_t[i]/∂c_{t−1}
            else:
                J = rows[0].permute(1, 0, 2)  # (B, S, S): row i = ∂h_t[i]/∂h_{t−1}
            if carry_jacobian is not None:
                F = carry_jacobian(tape, t, p)
            else:
                f = f_all[t] if f_all is not None else torch.ones(B, S, dtype=dtype, device=device)
                F = torch.diag_embed(f)
            forget[:, t] = sigma_max(F.double())  # max_j f_tj for a diagonal carry
            remainder[:, t] = sigma_max((J - F).double())
            total[:, t] = sigma_max(J.double())
    return ForgetSplit(forget, remainder, total)
