"""Gradient clipping done right: one norm over all parameters (Pascanu et al. 2013, Algorithm 1).

    ĝ = ∂L/∂θ (all parameters together)
    if ‖ĝ‖ ≥ threshold:  ĝ ← threshold · ĝ / ‖ĝ‖

It keeps the direction of the gradient and bounds the step; clipping each parameter's gradient
on its own would change the direction. `clip_value` clips every element to [−v, v] instead (the
baselines of Arjovsky et al. 2016), which does change the direction.
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
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.double()) for g in grads])))


@torch.no_grad()
def clip_norm_(params: Iterable[nn.Parameter], threshold: float) -> tuple[float, bool]:
    """Algorithm 1 in place; returns (the norm before clipping, whether it fired)."""
    params = [p for p in params if p.grad is not None]
    norm = grad_norm(params)
    fired = norm >= threshold
    if fired:
        for p in params:
            p.grad.mul_(threshold / norm)
    return norm, fired


@torch.no_grad()
def clip_value_(params: Iterable[nn.Parameter], value: float) -> tuple[float, bool]:
    """Clip every gradient element to [−value, value]; returns (the norm before, whether any was clipped)."""
    params = [p for p in params if p.grad is not None]
    norm = grad_norm(params)
    fired = any(bool((p.grad.abs() > value).any()) for p in params)
    for p in params:
        p.grad.clamp_(-value, value)
    return norm, fired
