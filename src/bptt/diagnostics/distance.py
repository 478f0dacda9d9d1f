"""Gradient against distance: how far back the gradient reaches.

Distance is counted from the last step a direction visits (T − 1 − k forward), where a loss on the
final output sits. The *gradient horizon* is the largest distance at which a step's contribution
to the gradient, ‖∂L/∂θ|_k‖, is still above a fraction (default 1e-3) of the largest contribution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import Tensor

from .._checks import InputError
from .jacobian import distances

if TYPE_CHECKING:
    from ..trace import Trace


@dataclass(frozen=True)
class GradientProfile:
    """Norms over time, each indexed by time position k; `distance[k]` is k's distance to the last step.

    Shapes: dh, dc (L·D, B, T) per sample; dh_mean, dc_mean (L·D, T); contribution (T,).
    """

    distance: Tensor
    dh: Tensor
    dh_mean: Tensor
    dc: Tensor | None
    dc_mean: Tensor | None
    contribution: Tensor
    horizon: int
    fraction: float


def horizon(contribution: Tensor, distance: Tensor, fraction: float = 1e-3) -> int:
    """The largest distance whose contribution is ≥ `fraction` × the largest contribution."""
    if not 0 < fraction <= 1:
        raise InputError(f"expected a fraction in (0, 1], got {fraction}")
    c = contribution.double()
    keep = c >= fraction * c.max()
    return int(distance[keep].max()) if bool(keep.any()) else 0


def gradient_profile(trace: Trace, fraction: float = 1e-3) -> GradientProfile:
    """‖∂L/∂h_k‖ and ‖∂L/∂c_k‖ per sample and averaged, the contribution norms and the horizon.

    Example:
        >>> import torch, bptt
        >>> from bptt.diagnostics import gradient_profile
        >>> tr = bptt.trace(bptt.RNN(2, 16), torch.randn(50, 4, 2), lambda out, h: out[-1].sum())
        >>> prof = gradient_profile(tr)
        >>> prof.dh.shape, prof.contribution.shape, 0 <= prof.horizon <= 49
        (torch.Size([1, 4, 50]), torch.Size([50]), True)
    """
    dh = trace.dh.norm(dim=-1).transpose(1, 2)  # (L·D, T, B) → (L·D, B, T)
    dc = trace.dc.norm(dim=-1).transpose(1, 2) if trace.dc is not None else None
    d = distances(trace.tapes[0])
    contribution = trace.contribution_norms()
    return GradientProfile(
        distance=d,
        dh=dh,
        dh_mean=dh.mean(1),
        dc=dc,
        dc_mean=dc.mean(1) if dc is not None else None,
        contribution=contribution,
        horizon=horizon(contribution, d, fraction),
        fraction=fraction,
    )
