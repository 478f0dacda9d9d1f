"""Matrix products for the engine, through oneDNN or the BLAS, whichever is faster for the size.

oneDNN's fp32 matmul (the kernel behind `torch.nn.LSTM` on the CPU, reached through the op PyTorch
registers for it) runs large products at about twice MKL's rate on recent x86 cores, while MKL's
smaller fixed cost wins for small per-step products. Measured on the bench shapes: per-step
products of 16×64×256 take 5–7 µs with MKL and 13 µs with oneDNN; 64×256×1024, 200–290 µs against
100 µs. The one-off products (input projection, weight gradients) favour oneDNN at every bench
shape: ∂L/∂W_hh at T·B = 6400, 4H = 1024, H = 256 takes 19 ms with MKL and 10 ms with oneDNN, and
∂L/∂W_ih with I = 2 takes 4 ms as MKL's uᵀv but 0.3 ms as oneDNN's (vᵀu)ᵀ. Float64 and non-CPU
tensors take the ordinary path, with the smaller side first on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

# Multiply-adds from which oneDNN is used: per recurrent step, and for the one-off products.
STEP_MIN_MACS = 1 << 21
BULK_MIN_MACS = 1 << 16

_linear_pointwise: Callable[..., Tensor] | None = (
    getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    if torch.backends.mkldnn.is_available()  # type: ignore[no-untyped-call]  # unannotated in torch
    else None
)


def _onednn_linear(x: Tensor, W: Tensor, b: Tensor | None) -> Tensor:
    """x Wᵀ + b through oneDNN's op (only called where `onednn` said yes)."""
    assert _linear_pointwise is not None
    return _linear_pointwise(x, W, b, "none", [], "")


def onednn(x: Tensor, macs: int, threshold: int) -> bool:
    """Whether a product of `macs` multiply-adds on tensors like `x` goes to oneDNN."""
    return (
        _linear_pointwise is not None
        and x.dtype == torch.float32
        and x.device.type == "cpu"
        and macs >= threshold
    )


def linear(x: Tensor, W: Tensor, b: Tensor | None = None) -> Tensor:
    """x Wᵀ + b for x (…, k) and W (n×k): (…, n)."""
    if onednn(x, x.numel() * W.shape[0], BULK_MIN_MACS):
        return _onednn_linear(x.reshape(-1, x.shape[-1]), W, b).view(*x.shape[:-1], W.shape[0])
    return F.linear(x, W, b)  # one operator (addmm over the rows), however many leading dimensions


def matmul_tn(u: Tensor, v: Tensor) -> Tensor:
    """uᵀ v for u (r×m) and v (r×n): the weight gradients Σ_rows u vᵀ, contiguous (m×n)."""
    if onednn(u, u.shape[0] * u.shape[1] * v.shape[1], BULK_MIN_MACS):
        return _onednn_linear(v.T, u.T, None).T.contiguous()  # (vᵀu)ᵀ
    if u.device.type == "cpu" and v.shape[1] < u.shape[1]:  # the BLAS's faster order on the CPU
        return (v.T @ u).T.contiguous()
    return u.T @ v  # contiguous as it comes; cuBLAS takes either order without a copy


def matmul(u: Tensor, W: Tensor) -> Tensor:
    """u W for u (m×n) and W (n×k): ∂L/∂x = ∂L/∂gx W_ih."""
    if onednn(u, u.shape[0] * u.shape[1] * W.shape[1], BULK_MIN_MACS):
        return _onednn_linear(u, W.T.contiguous(), None)
    return u @ W
