"""The latch problem (Bengio, Simard & Frasconi 1994): keep one bit for the whole sequence.

The class (±1) is set by the first L inputs (value = class, plus noise); after them the inputs
are Gaussian noise only. The target, read at the last step, is ±0.8; the loss is the squared
error; chance (predict 0) is 0.64. Correct when the sign of the output is right; solved with at
most 1% wrong.

Note: Bengio et al. let the first L inputs be learned per class; here they are fixed at ±1 with
the same noise (σ = `noise`) as the rest, which keeps the task a pure test of memory.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .. import _checks
from .._checks import InputError
from .base import Batch, Task


class Latch(Task):
    """Remember the sign given at the start.

    Example:
        >>> import torch
        >>> (b,) = Latch(seq_len=50, informative=3).generate(4, torch.Generator().manual_seed(0))
        >>> b.x.shape, sorted(set(round(v, 6) for v in b.y.flatten().tolist()))
        (torch.Size([50, 4, 1]), [-0.8, 0.8])
    """

    name = "latch"
    protocols = ("bengio94",)
    target = "regression"
    paper = "Bengio, Simard & Frasconi 1994"
    input_size = 1
    output_size = 1

    def __init__(
        self,
        protocol: str | None = None,
        seq_len: int | None = None,
        informative: int = 1,
        noise: float = 0.2,
        **kw: Any,
    ):
        super().__init__(protocol, seq_len, **kw)
        self.informative = _checks.positive_int("informative", informative)
        if self.seq_len is not None and self.informative > self.seq_len:
            raise InputError(f"expected informative ≤ seq_len = {self.seq_len}, got {informative}")
        self.noise = float(noise)

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "informative": self.informative, "noise": self.noise}

    def make(self, length: int, n: int, g: torch.Generator) -> Batch:
        T = length
        sign = torch.randint(0, 2, (n,), generator=g).float() * 2 - 1
        x = self.noise * torch.randn(T, n, 1, generator=g)
        x[: self.informative, :, 0] += sign
        return Batch(x, 0.8 * sign[:, None])

    @property
    def baseline_loss(self) -> float:
        return 0.64

    @property
    def success(self) -> str:
        return "the sign of the output right on at least 99% of test sequences"

    def correct(self, pred: Tensor, batch: Batch) -> Tensor:
        return torch.sign(pred.squeeze(-1)) == torch.sign(batch.y.squeeze(-1))
