"""Gradient clipping done right: one norm over all parameters (Pascanu et al. 2013, Algorithm 1).

    ĝ = ∂L/∂θ (all parameters together)
    if ‖ĝ‖ ≥ threshold:  ĝ ← threshold · ĝ / ‖ĝ‖

It keeps the direction of the gradient and bounds the step; clipping each parameter's gradient
on its own would change the direction. `clip_value` clips every element to [−v, v] instead (the
baselines of Arjovsky et al. 2016), which does change the direction.

The clipping itself is PyTorch's (`torch.nn.utils.clip_grad_norm_`, `clip_grad_value_`, with
`foreach` kernels); what is here is what the trainer logs around it: the norm before clipping and
whether clipping fired.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def grad_norm(params: Iterable[nn.Parameter]) -> float:
    """‖ĝ‖ over all parameters that have a gradient."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    return float(torch.nn.utils.get_total_norm(grads, foreach=True))


@torch.no_grad()
def clip_norm_(params: Iterable[nn.Parameter], threshold: float) -> tuple[float, bool]:
    """Algorithm 1 in place; returns (the norm before clipping, whether it fired).

    PyTorch scales by threshold / (‖ĝ‖ + 10⁻⁶) whenever that is below 1, so the gradient leaves
    with a norm within 10⁻⁶ relative of the threshold.
    """
    params = [p for p in params if p.grad is not None]
    if not params:
        return 0.0, False
    norm = float(torch.nn.utils.clip_grad_norm_(params, threshold, foreach=True))
    return norm, norm >= threshold


@torch.no_grad()
def clip_value_(params: Iterable[nn.Parameter], value: float) -> tuple[float, bool]:
    """Clip every gradient element to [−value, value]; returns (the norm before, whether any was clipped)."""
    params = [p for p in params if p.grad is not None]
    norm = grad_norm(params)
    fired = any(bool((p.grad.abs() > value).any()) for p in params if p.grad is not None)
    torch.nn.utils.clip_grad_value_(params, value, foreach=True)
    return norm, fired
