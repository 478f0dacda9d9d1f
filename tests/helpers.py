"""Small helpers shared by the tests."""

from __future__ import annotations

import torch
from torch import Tensor

TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


def rel_err(a: Tensor, b: Tensor) -> float:
    """max |a − b| / max |b|: the error relative to the reference's scale."""
    scale = b.detach().abs().max().clamp_min(torch.finfo(b.dtype).tiny)
    return float((a.detach() - b.detach()).abs().max() / scale)


def weighted_loss(output: Tensor, state, seed: int = 1) -> Tensor:
    """A loss that reads every output step and the final state with fixed random weights.

    The weights are drawn in float64 on the CPU, then cast to the output's dtype and device, so that
    a float32 CUDA run and its float64 CPU reference see the same loss.
    """
    g = torch.Generator().manual_seed(seed)
    parts = [output, *(state if isinstance(state, tuple) else (state,))]
    return sum((p * torch.randn(p.shape, generator=g, dtype=torch.float64).to(p)).sum() for p in parts)
