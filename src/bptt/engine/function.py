"""One layer in one direction as a `torch.autograd.Function` whose backward is the explicit BPTT.

Forward: gx = x W_ihᵀ + b for every step in one matmul, then the forward sweep.
Backward: the backward sweep, then ∂L/∂x and every weight gradient in one matmul each over all
T·B rows (engine/terms.py). `loss.backward()` on anything computed from a bptt module lands here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import dispatch
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


def input_projection(step: Step, x: Tensor, p: Params) -> Tensor:
    """gx_t = W_ih x_t + b_ih (+ b_hh where the cell allows), all steps in one matmul: (T, B, G·H)."""
    T, B, I = x.shape
    b = p.get("bias_ih")
    if b is not None and step.fold_bias_hh and "bias_hh" in p:
        b = b + p["bias_hh"]
    return linear(x.reshape(T * B, I), p["weight_ih"], b).view(T, B, -1)


class LayerSweep(torch.autograd.Function):
    """Autograd node for one layer-direction: inputs (plan, recorder, x, h0, c0, *weights)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        plan: LayerPlan,
        recorder: list[Tape] | None,
        x: Tensor,
        h0: Tensor,
        c0: Tensor | None,
        *weights: Tensor,
    ) -> tuple[Tensor, ...]:
        step = plan.step
        p = dict(zip(plan.suffixes, weights, strict=True))
        tape = step.new_tape(x.detach(), h0, c0, plan.reverse, p)  # the tape holds data, never graph
        kernel = dispatch.select(step, x)  # by the step's exact type and settings, else the Python loop
        kernel.forward_sweep(step, tape, input_projection(step, x, p), p)
        if recorder is not None:
            recorder.append(tape)
        ctx.plan, ctx.tape, ctx.kernel = plan, tape, kernel
        # Saved so that PyTorch catches an in-place change of the input before backward; the tape
        # keeps the data. The outputs are copies, so changing them in place cannot corrupt the tape.
        ctx.save_for_backward(x, *weights)
        outputs = [tape.h, tape.final(tape.h_buf)]
        if step.has_cell:
            assert tape.c_buf is not None
            outputs.append(tape.final(tape.c_buf))
        return tuple(o.clone() for o in outputs)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor, grad_hn: Tensor, *grad_cn: Tensor) -> tuple[Tensor | None, ...]:
        plan: LayerPlan = ctx.plan
        tape: Tape = ctx.tape
        step = plan.step
        x, *weights = ctx.saved_tensors
        p = dict(zip(plan.suffixes, weights, strict=True))
        tape.dout, tape.dh_n = grad_out, grad_hn  # what enters from outside, for the lag profile
        tape.dc_n = grad_cn[0] if grad_cn else None
        dh0, carry = ctx.kernel.backward_sweep(
            step, tape, grad_out, grad_hn, grad_cn[0] if grad_cn else None, p
        )
        needs = ctx.needs_input_grad
        dx = None
        if needs[2]:
            T, B, I = x.shape
            assert tape.dgx is not None
            # ∂L/∂x_t = W_ihᵀ ∂L/∂gx_t, all steps in one matmul
            dx = matmul(tape.dgx.reshape(T * B, -1), p["weight_ih"]).view(T, B, I)
        terms = step.grad_terms(tape, p)
        totals: dict[int, Tensor] = {}  # b_ih and b_hh share one term where dgh is dgx
        grads: list[Tensor | None] = []
        for j, suffix in enumerate(plan.suffixes):
            if not needs[5 + j]:
                grads.append(None)
                continue
            term = terms[suffix]
            if id(term) in totals:
                grads.append(totals[id(term)].clone())  # each parameter gets a gradient of its own
            else:
                totals[id(term)] = term.total()
                grads.append(totals[id(term)])
        dc0 = carry[0] if step.has_cell else None
        return (None, None, dx, dh0 if needs[3] else None, dc0 if needs[4] else None, *grads)
