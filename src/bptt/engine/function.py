"""One layer in one direction as a `torch.autograd.Function` whose backward is the explicit BPTT.

Forward: gx = x W_ihᵀ + b for every step in one matmul, then the forward sweep.
Backward: the backward sweep, then ∂L/∂x and every weight gradient in one matmul each over all
T·B rows (engine/terms.py). `loss.backward()` on anything computed from a bptt module lands here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from . import dispatch, unrolled
from .matmul import linear, matmul
from .sweep import Params, Step
from .tape import Tape


@dataclass(frozen=True)
class LayerPlan:
    """Which cell, layer and direction, and the parameters it reads (suffix `weight_ih` ↔ name `weight_ih_l0`)."""

    step: Step
    layer: int
    reverse: bool
    suffixes: tuple[str, ...]
    names: tuple[str, ...]


def input_projection(step: Step, x: Tensor, p: Params, fold: bool = True) -> Tensor:
    """gx_t = W_ih x_t + b_ih (+ b_hh where the cell allows and `fold`), all steps in one matmul:
    (T, B, G·H)."""
    b = p.get("bias_ih")
    if b is not None and fold and step.fold_bias_hh and "bias_hh" in p:
        b = b + p["bias_hh"]
    return linear(x, p["weight_ih"], b)


def _kernel(step: Step, x: Tensor, lengths: Tensor | None) -> dispatch.Kernel:
    """The kernel `dispatch` chooses for a full batch; the Python loop where sequences end early or B = 0."""
    if lengths is not None or x.shape[1] == 0:
        return dispatch.PYTHON
    return dispatch.select(step, x)


class LayerSweep(torch.autograd.Function):
    """Autograd node for one layer-direction: inputs (plan, recorder, lengths, x, h0, c0, *weights);
    h0 = c0 = None for a zero initial state (where the step's `zero_state` says it takes one).

    `lengths` (B,), when given, ends each sequence after its own number of steps (engine/unrolled.py).
    The backward pass is the explicit sweep; when autograd records it for a second derivative
    (`create_graph=True`), the gradients are those of the same layer unrolled out of place instead,
    so that they can be differentiated again.
    """

    @staticmethod
    def forward(
        ctx: Any,
        plan: LayerPlan,
        recorder: list[Tape] | None,
        lengths: Tensor | None,
        x: Tensor,
        h0: Tensor | None,
        c0: Tensor | None,
        *weights: Tensor,
    ) -> tuple[Tensor, ...]:
        step = plan.step
        p = dict(zip(plan.suffixes, weights, strict=True))
        tape = step.new_tape(x.detach(), h0, c0, plan.reverse, p)  # the tape holds data, never graph
        tape.lengths = lengths
        kernel = _kernel(step, x, lengths)
        gx = input_projection(step, x, p, fold=not kernel.adds_bias_hh)
        # The outputs: output, h_n and c_n as (1, B, ·), the layer-direction's row of the model's
        # (L·D, B, ·) state, so that a one-layer model returns them without another copy. Copies of
        # the tape's, so that changing them in place cannot corrupt it: written by the kernel where
        # it can, else copied after the sweep.
        if kernel.fills_outputs:
            outputs = _new_outputs(tape, step.has_cell)
            kernel.forward_sweep(step, tape, gx, p, outputs)
        else:
            kernel.forward_sweep(step, tape, gx, p)
            finals = [tape.h_buf] + ([tape.c_buf] if tape.c_buf is not None and step.has_cell else [])
            outputs = [tape.h.clone(), *(tape.final(buf).unsqueeze(0).clone() for buf in finals)]
        if recorder is not None:
            recorder.append(tape)
        ctx.plan, ctx.tape, ctx.kernel, ctx.lengths = plan, tape, kernel, lengths
        ctx.recorded = recorder is not None
        # Saved so that PyTorch catches an in-place change of the input before backward, and for the
        # differentiable backward; the tape keeps the data.
        ctx.save_for_backward(x, h0, c0, *weights)
        ctx.set_materialize_grads(False)  # the unused outputs' zeros come from one allocation (`_grads_for`)
        return tuple(outputs)

    @staticmethod
    def backward(ctx: Any, *given: Tensor | None) -> tuple[Tensor | None, ...]:
        grad_out: Tensor
        grad_hn: Tensor | None
        grad_cn: Sequence[Tensor | None]
        if given[0] is not None and all(g is None for g in given[1:]) and _zero_state_grads(ctx):
            # neither h_n nor c_n used: the kernel starts from zeros, nothing allocated for them
            grad_out, grad_hn, grad_cn = given[0], None, [None] * (len(given) - 2)
        else:
            # ∂L/∂output (T, B, P), ∂L/∂h_n (B, P) (and ∂L/∂c_n (B, H)): zeros where an output was not used
            grad_out, grad_hn, *grad_cn = _grads_for(ctx, given)
            if torch.is_grad_enabled():  # create_graph=True: these gradients will be differentiated again
                return _differentiable_backward(ctx, grad_out, grad_hn, *grad_cn)
        plan: LayerPlan = ctx.plan
        tape: Tape = ctx.tape
        step = plan.step
        x, _h0, _c0, *weights = ctx.saved_tensors
        p = dict(zip(plan.suffixes, weights, strict=True))
        tape.dout, tape.dh_n = grad_out, grad_hn  # what enters from outside, for the lag profile
        tape.dc_n = grad_cn[0] if grad_cn else None
        dh0, carry = ctx.kernel.backward_sweep(
            step, tape, grad_out, grad_hn, grad_cn[0] if grad_cn else None, p
        )
        needs = ctx.needs_input_grad
        dx = None
        if needs[3]:
            T, B, I = x.shape
            assert tape.dgx is not None
            # ∂L/∂x_t = W_ihᵀ ∂L/∂gx_t, all steps in one matmul
            dx = matmul(tape.dgx.reshape(T * B, tape.dgx.shape[-1]), p["weight_ih"]).view(T, B, I)
        terms = step.grad_terms(tape, p)
        totals: dict[int, Tensor] = {}  # b_ih and b_hh share one term where dgh is dgx
        grads: list[Tensor | None] = []
        for j, suffix in enumerate(plan.suffixes):
            if not needs[6 + j]:
                grads.append(None)
                continue
            term = terms[suffix]
            if id(term) in totals:
                grads.append(totals[id(term)].clone())  # each parameter gets a gradient of its own
            else:
                totals[id(term)] = term.total()
                grads.append(totals[id(term)])
        dc0 = carry[0] if step.has_cell else None
        return (None, None, None, dx, dh0 if needs[4] else None, dc0 if needs[5] else None, *grads)


def _new_outputs(tape: Tape, has_cell: bool) -> list[Tensor]:
    """Empty output (T, B, P), h_n (1, B, P) and c_n (1, B, H) for a kernel that fills them: separate
    tensors, not views of one (autograd forbids changing a custom Function's view outputs in place)."""
    slots, B, P = tape.h_buf.shape  # T + 1 slots
    outputs = [tape.h_buf.new_empty((slots - 1, B, P)), tape.h_buf.new_empty((1, B, P))]
    if has_cell:
        assert tape.c_buf is not None
        outputs.append(tape.c_buf.new_empty((1, B, tape.c_buf.shape[2])))
    return outputs


def _zero_state_grads(ctx: Any) -> bool:
    """Whether the backward sweep takes ∂L/∂h_n = ∂L/∂c_n = None for zeros (`dispatch.Kernel.zero_final_grads`):
    not for a backward differentiated again. A recorded tape then keeps None for them (nothing
    entered there; the lag profile adds nothing)."""
    return bool(ctx.kernel.zero_final_grads) and not torch.is_grad_enabled()


def _grads_for(ctx: Any, grads: tuple[Tensor | None, ...]) -> list[Tensor]:
    """∂L/∂output (T, B, P), ∂L/∂h_n (B, P) and ∂L/∂c_n (B, H) from the outputs' gradients (h_n's and
    c_n's as (1, B, ·)), zeros where autograd passed None (an output not used): what autograd itself
    would pass, one zero-filled allocation for all of them instead of one each."""
    filled = [g if k == 0 or g is None else g[0] for k, g in enumerate(grads)]
    missing = [k for k, g in enumerate(grads) if g is None]
    if not missing:
        return filled  # type: ignore[return-value]  # none is None
    tape: Tape = ctx.tape
    slots, B, P = tape.h_buf.shape  # T + 1 slots
    states = [buf.shape[1:] for buf in (tape.h_buf, tape.c_buf)[: len(grads) - 1] if buf is not None]
    shapes = [(torch.Size((slots - 1, B, P)), *states)[k] for k in missing]
    if len(shapes) == 1:
        zeros = [ctx.tape.h_buf.new_zeros(shapes[0])]
    elif all(shape == shapes[0] for shape in shapes):  # h_n's and c_n's alike: one (n, B, H) block
        zeros = ctx.tape.h_buf.new_zeros((len(missing), *shapes[0])).unbind(0)
    else:
        block, start, zeros = ctx.tape.h_buf.new_zeros(sum(shape.numel() for shape in shapes)), 0, []
        for shape in shapes:
            zeros.append(block[start : start + shape.numel()].view(shape))
            start += shape.numel()
    for k, zero in zip(missing, zeros, strict=True):
        filled[k] = zero
    return filled  # type: ignore[return-value]  # every None replaced


def _differentiable_backward(
    ctx: Any, grad_out: Tensor, grad_hn: Tensor, *grad_cn: Tensor
) -> tuple[Tensor | None, ...]:
    """The vector-Jacobian product of the layer unrolled out of place, as a graph autograd can differentiate."""
    plan: LayerPlan = ctx.plan
    step = plan.step
    x, h0, c0, *weights = ctx.saved_tensors
    if h0 is None:  # a zero initial state (the step's `zero_state`)
        h0 = ctx.tape.h_buf.new_zeros(ctx.tape.h_buf.shape[1:])
        c0 = None if ctx.tape.c_buf is None else ctx.tape.c_buf.new_zeros(ctx.tape.c_buf.shape[1:])
    if ctx.recorded:  # a recorded tape still gets its per-step gradients
        with torch.no_grad():
            p = dict(zip(plan.suffixes, (w.detach() for w in weights), strict=True))
            grads_n = (grad_out.detach(), grad_hn.detach(), grad_cn[0].detach() if grad_cn else None)
            ctx.tape.dout, ctx.tape.dh_n, ctx.tape.dc_n = grads_n  # what enters from outside, as below
            ctx.kernel.backward_sweep(step, ctx.tape, *grads_n, p)
    p = dict(zip(plan.suffixes, weights, strict=True))
    out, h_n, c_n = unrolled.layer(step, x, h0, c0, p, plan.reverse, ctx.lengths)
    outputs = [out, h_n] + ([c_n] if c_n is not None else [])
    inputs = [x, h0, c0, *weights]
    wanted = [k for k, need in enumerate(ctx.needs_input_grad[3:]) if need and inputs[k] is not None]
    found = torch.autograd.grad(
        outputs,
        [inputs[k] for k in wanted],
        [grad_out, grad_hn, *grad_cn][: len(outputs)],
        create_graph=True,
        allow_unused=True,
    )
    grads: list[Tensor | None] = [None] * len(inputs)
    for k, g in zip(wanted, found, strict=True):
        grads[k] = g if g is not None else torch.zeros_like(inputs[k])
    return (None, None, None, *grads)
