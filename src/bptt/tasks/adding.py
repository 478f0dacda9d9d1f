"""The adding and multiplication problems: remember two marked values across a long sequence.

Each step is a pair (value, marker); two steps are marked and the target, read at the last step,
combines their values. Protocols, as published:

* `hs97` (Hochreiter & Schmidhuber 1997, Exp. 4): values U[−1, 1]; length U[T, T + T/10]; one of
  the first ten pairs is marked (X1), then one of the first T/2 − 1 still unmarked pairs (X2);
  the first and last pairs carry marker −1 unless marked; X1 = 0 if the first pair is marked;
  target 0.5 + (X1 + X2)/4; correct when |error| < 0.04.
* `pascanu` (Pascanu et al. 2013): values U[0, 1]; length U[L, 1.1L); markers at p0 ∈ [0, 0.1l)
  and p1 ∈ [0.1l, 0.5l) of the sequence's length l; target the mean (X1 + X2)/2; a sequence is
  wrong when its squared error exceeds 0.04; solved with under 1% wrong.
* `le` (Le et al. 2015, as Arjovsky et al. 2016 run it): values U[0, 1]; length T; one marker in
  each half; target X1 + X2; solved when the test MSE is under 0.01 (chance: 1/6 ≈ 0.167).

Multiplication (HS97 Exp. 5) uses the `hs97` markers with values U[0, 1] and target X1·X2; X1 = 1
if the first pair is marked; correct when |error| < 0.04.

Note: the chance baselines are those of these generators. For `hs97` adding the X1 = 0 case gives
(0.9/3 + 1/3)/16 = 0.0396 rather than the 1/24 = 0.0417 of independent X1, X2.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from .base import Batch, Task, uniform_int


def _hs97_markers(g: torch.Generator, length: int, T: int) -> tuple[int, int]:
    p1 = int(uniform_int(g, 0, 9))
    candidates = [p for p in range(T // 2) if p != p1][: max(T // 2 - 1, 1)]
    p2 = candidates[int(uniform_int(g, 0, len(candidates) - 1))]
    return p1, p2


class Adding(Task):
    """The adding problem; see the module docstring for the protocols.

    Example:
        >>> import torch
        >>> task = Adding("le", seq_len=20)
        >>> (batch,) = task.generate(4, torch.Generator().manual_seed(0))
        >>> batch.x.shape, batch.y.shape, float(batch.x[:, :, 1].sum())
        (torch.Size([20, 4, 2]), torch.Size([4, 1]), 8.0)
    """

    name = "adding"
    protocols: ClassVar[tuple[str, ...]] = ("le", "hs97", "pascanu")
    target = "regression"
    paper = "Hochreiter & Schmidhuber 1997 (Exp. 4); Pascanu et al. 2013; Le et al. 2015"
    input_size = 2
    output_size = 1

    def lengths(self, n: int, g: torch.Generator) -> Tensor:
        T = self.seq_len
        assert T is not None
        if self.protocol == "hs97":
            return uniform_int(g, T, T + T // 10, n)
        if self.protocol == "pascanu":
            return uniform_int(g, T, max(T, -(-11 * T // 10) - 1), n)  # U[L, 1.1L)
        return torch.full((n,), T)

    def markers(self, g: torch.Generator, length: int) -> tuple[int, int]:
        T = self.seq_len
        assert T is not None
        if self.protocol == "hs97":
            return _hs97_markers(g, length, T)
        if self.protocol == "pascanu":
            lo = max(1, -(-length // 10))  # ⌈0.1 l⌉
            p0 = int(uniform_int(g, 0, lo - 1))
            p1 = int(uniform_int(g, lo, max(lo, (length - 1) // 2)))
            return p0, p1
        half = length // 2
        return int(uniform_int(g, 0, half - 1)), int(uniform_int(g, half, length - 1))

    def values(self, g: torch.Generator, shape: tuple[int, ...]) -> Tensor:
        u = torch.rand(shape, generator=g)
        return 2 * u - 1 if self.protocol == "hs97" else u

    def combine(self, x1: Tensor, x2: Tensor, first_marked: Tensor) -> Tensor:
        if self.protocol == "hs97":
            x1 = torch.where(first_marked, torch.zeros_like(x1), x1)
            return 0.5 + (x1 + x2) / 4
        if self.protocol == "pascanu":
            return (x1 + x2) / 2
        return x1 + x2

    def make(self, length: int, count: int, g: torch.Generator) -> Batch:
        x = torch.zeros(length, count, 2)
        x[:, :, 0] = self.values(g, (length, count))
        if self.protocol == "hs97":
            x[0, :, 1] = -1.0  # the first and last pairs carry marker −1 unless marked
            x[-1, :, 1] = -1.0
        pos = torch.tensor([self.markers(g, length) for _ in range(count)])  # (B, 2)
        b = torch.arange(count)
        x[pos[:, 0], b, 1] = 1.0
        x[pos[:, 1], b, 1] = 1.0
        x1, x2 = x[pos[:, 0], b, 0], x[pos[:, 1], b, 0]
        y = self.combine(x1, x2, pos[:, 0] == 0)[:, None]
        return Batch(x, y)

    @property
    def baseline_loss(self) -> float:
        if self.protocol == "hs97":
            return (0.9 / 3 + 1 / 3) / 16  # Var(0.5 + (X1 + X2)/4) with X1 = 0 one time in ten
        if self.protocol == "pascanu":
            return (1 / 12 + 1 / 12) / 4  # Var((X1 + X2)/2) = 1/24
        return 2 / 12  # Var(X1 + X2) = 1/6

    @property
    def success(self) -> str:
        return {
            "hs97": "|error| < 0.04 on at least 99% of test sequences",
            "pascanu": "squared error > 0.04 on under 1% of test sequences",
            "le": "test MSE < 0.01",
        }[self.protocol]

    def correct(self, pred: Tensor, batch: Batch) -> Tensor:
        err = (pred - batch.y).abs().squeeze(-1)
        if self.protocol == "pascanu":
            return err.pow(2) <= 0.04
        if self.protocol == "le":
            return err.pow(2) < 0.01  # per sequence; the task's criterion is the test MSE
        return err < 0.04

    def solved(self, metrics: dict[str, float]) -> bool:
        if self.protocol == "le":
            return metrics["loss"] < 0.01
        return metrics["error_rate"] <= 0.01


class Multiplication(Adding):
    """The multiplication problem (HS97 Exp. 5): `hs97` markers, values U[0, 1], target X1·X2.

    Example:
        >>> import torch
        >>> (b,) = Multiplication(seq_len=10).generate(2, torch.Generator().manual_seed(3))[:1]
        >>> bool((b.y >= 0).all() and (b.y <= 1).all())
        True
    """

    name = "multiplication"
    protocols = ("hs97",)
    paper = "Hochreiter & Schmidhuber 1997 (Exp. 5)"

    def values(self, g: torch.Generator, shape: tuple[int, ...]) -> Tensor:
        return torch.rand(shape, generator=g)

    def combine(self, x1: Tensor, x2: Tensor, first_marked: Tensor) -> Tensor:
        x1 = torch.where(first_marked, torch.ones_like(x1), x1)
        return x1 * x2

    @property
    def baseline_loss(self) -> float:
        e_x1, e_x1_sq = 0.9 * 0.5 + 0.1, 0.9 / 3 + 0.1  # X1 = 1 one time in ten
        return e_x1_sq / 3 - (e_x1 * 0.5) ** 2  # Var(X1·X2)

    @property
    def success(self) -> str:
        return "|error| < 0.04 on at least 99% of test sequences"

    def correct(self, pred: Tensor, batch: Batch) -> Tensor:
        return (pred - batch.y).abs().squeeze(-1) < 0.04

    def solved(self, metrics: dict[str, float]) -> bool:
        return metrics["error_rate"] <= 0.01
