"""Small helpers shared by the tests."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd import gradcheck

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


def explicit_backward_passes_gradcheck(model, x: Tensor, hx) -> bool:
    """Central differences in float64 against the explicit backward, for x, every initial-state
    tensor and every parameter of `model` (whose `run` takes the parameters by name)."""
    x = x.requires_grad_(True)
    hx_leaves = [h.requires_grad_(True) for h in (hx if isinstance(hx, tuple) else (hx,))]
    names, values = zip(*model.named_parameters(), strict=True)
    n_h = len(hx_leaves)

    def f(x, *leaves):
        h = tuple(leaves[:n_h]) if n_h == 2 else leaves[0]
        out, state = model.run(x, h, params=dict(zip(names, leaves[n_h:], strict=True)))
        return weighted_loss(out, state)

    return bool(gradcheck(f, (x, *hx_leaves, *values), eps=1e-6, atol=1e-8, rtol=1e-6))
