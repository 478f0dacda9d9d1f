"""What every task shares: batches, a fixed test set, a chance baseline and a success criterion.

A task streams training batches from a seeded generator and keeps a held-out test set drawn from
a fixed seed of its own (`test_seed`), the same whatever the training seed, so runs with different
seeds are judged on the same sequences. Sequences whose protocol draws a length per sequence are
generated with one length per training batch (the lengths follow the protocol across batches), and
the test set is grouped by length, so no padding ever changes what a model sees; only tasks with a
loss at every step (the Reber grammar) pad, and mask the padded steps out of the loss.

Batches are time-major: x (T, B, input_size). Targets are
    "regression": y (B, output_size) float, read at the last step, mean squared error;
    "class":      y (B,) long, read at the last step, cross-entropy;
    "sequence":   y (T, B) long with a mask (T, B), read at every step, cross-entropy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import _checks


@dataclass
class Batch:
    """x (T, B, I); y as the task's target kind says; mask (T, B) for sequence targets; legal
    (T, B, symbols) the symbols allowed next, for a grammar (Reber)."""

    x: Tensor
    y: Tensor
    mask: Tensor | None = None
    legal: Tensor | None = None

    @property
    def size(self) -> int:
        return self.x.shape[1]

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            self.x.to(device),
            self.y.to(device),
            None if self.mask is None else self.mask.to(device),
            None if self.legal is None else self.legal.to(device),
        )


def uniform_int(g: torch.Generator, low: int, high: int, n: int = 1) -> Tensor:
    """n integers uniform in [low, high] (inclusive)."""
    return torch.randint(low, high + 1, (n,), generator=g)


class Task:
    """A long-range task: subclasses set the class attributes and implement `generate`."""

    name: ClassVar[str]
    protocols: ClassVar[tuple[str, ...]]
    target: ClassVar[str]  # "regression", "class" or "sequence"
    paper: ClassVar[str]
    default_seq_len: ClassVar[int | None] = 100

    input_size: int
    output_size: int

    def __init__(
        self,
        protocol: str | None = None,
        seq_len: int | None = None,
        test_size: int = 1000,
        test_seed: int = 1234,
    ):
        self.protocol = _checks.choice("protocol", protocol or self.protocols[0], self.protocols)
        self.seq_len = self.default_seq_len if seq_len is None else _checks.positive_int("seq_len", seq_len)
        self.test_size = _checks.positive_int("test_size", test_size)
        self.test_seed = test_seed
        self._test: list[Batch] | None = None

    # -- to be provided -----------------------------------------------------------------------

    def make(self, length: int, count: int, g: torch.Generator) -> Batch:
        """`count` sequences of `length` steps."""
        raise NotImplementedError

    def lengths(self, n: int, g: torch.Generator) -> Tensor:
        """n sequence lengths as the protocol draws them (default: all seq_len)."""
        assert self.seq_len is not None
        return torch.full((n,), self.seq_len)

    @property
    def baseline_loss(self) -> float:
        """The loss of the best prediction that ignores the input (analytic)."""
        raise NotImplementedError

    @property
    def success(self) -> str:
        """The paper's success criterion, in words."""
        raise NotImplementedError

    def correct(self, pred: Tensor, batch: Batch) -> Tensor:
        """(B,) bool: which sequences the prediction gets right by the paper's criterion."""
        raise NotImplementedError

    def solved(self, metrics: dict[str, float]) -> bool:
        """Whether test-set metrics meet the criterion (default: at most 1% of sequences wrong)."""
        return metrics["error_rate"] <= 0.01

    # -- shared -------------------------------------------------------------------------------

    def describe(self) -> dict[str, object]:
        return {
            "task": self.name,
            "protocol": self.protocol,
            "seq_len": self.seq_len,
            "input_size": self.input_size,
            "output_size": self.output_size,
            "target": self.target,
            "baseline_loss": self.baseline_loss,
            "success": self.success,
            "paper": self.paper,
            "test_size": self.test_size,
            "test_seed": self.test_seed,
        }

    def generate(self, n: int, g: torch.Generator) -> list[Batch]:
        """n sequences with lengths drawn per sequence, as one batch per distinct length."""
        lengths = self.lengths(n, g)
        return [
            self.make(int(length), int((lengths == length).sum()), g)
            for length in sorted(set(lengths.tolist()))
        ]

    def batches(self, batch_size: int, g: torch.Generator) -> Iterator[Batch]:
        """Training batches, forever, from the generator `g`: one length per batch, drawn as the protocol draws it.

        Each batch takes its draws from `g` and nothing else, so g's state counts the batches.
        """
        _checks.positive_int("batch_size", batch_size)
        while True:
            yield self.make(int(self.lengths(1, g)[0]), batch_size, g)

    def test_set(self) -> list[Batch]:
        """The held-out test set: `test_size` sequences from `test_seed`, grouped by length."""
        if self._test is None:
            g = torch.Generator().manual_seed(self.test_seed)
            self._test = self.generate(self.test_size, g)
        return self._test

    def loss(self, pred: Tensor, batch: Batch) -> Tensor:
        if self.target == "regression":
            return F.mse_loss(pred, batch.y)
        if self.target == "class":
            return F.cross_entropy(pred, batch.y)
        assert batch.mask is not None
        per_step = F.cross_entropy(pred.flatten(0, 1), batch.y.flatten(), reduction="none")
        m = batch.mask.flatten().to(per_step.dtype)
        return (per_step * m).sum() / m.sum()

    @torch.no_grad()
    def evaluate(self, predict: Callable[[Tensor], Tensor]) -> dict[str, float]:
        """Loss, error rate and `solved` of `predict(x)` on the test set."""
        total, n_loss, wrong, n = 0.0, 0.0, 0, 0
        for batch in self.test_set():
            pred = predict(batch.x)
            weight = float(batch.mask.sum()) if batch.mask is not None else batch.size
            total += float(self.loss(pred, batch)) * weight
            n_loss += weight
            wrong += int((~self.correct(pred, batch)).sum())
            n += batch.size
        metrics = {"loss": total / n_loss, "baseline_loss": self.baseline_loss, "error_rate": wrong / n}
        metrics["accuracy"] = 1 - metrics["error_rate"]
        metrics["solved"] = float(self.solved(metrics))
        return metrics
