"""Sequential digits: scikit-learn's bundled 8×8 handwritten digits, read one pixel per step.

1797 images of 64 pixels (values 0–16, scaled to [0, 1]) become sequences of 64 steps with one
input each, optionally under a fixed pixel permutation (`permuted`), which puts related pixels far
apart. Ten classes, read at the last step. The data ship with scikit-learn: nothing is downloaded.
A fixed split (seeded by `test_seed`) keeps `test_size` images out for testing. Chance: 10%
accuracy, cross-entropy ln 10; solved here at 90% test accuracy.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .._checks import InputError
from .base import Batch, Task


class SequentialDigits(Task):
    """Classify a digit seen one pixel at a time.

    Example:
        >>> import torch
        >>> task = SequentialDigits("permuted", test_size=100)
        >>> b = next(task.batches(8, torch.Generator().manual_seed(0)))
        >>> b.x.shape, b.y.shape
        (torch.Size([64, 8, 1]), torch.Size([8]))
    """

    name = "digits"
    protocols = ("sequential", "permuted")
    target = "class"
    paper = "scikit-learn's 8×8 digits, pixel by pixel (after Le et al. 2015's sequential MNIST)"
    default_seq_len = 64
    input_size = 1
    output_size = 10

    def __init__(
        self, protocol: str | None = None, seq_len: int | None = None, test_size: int = 300, **kw: Any
    ):
        if seq_len not in (None, 64):
            raise InputError(f"8×8 digits are 64 pixels long; expected seq_len 64, got {seq_len}")
        super().__init__(protocol, 64, test_size=test_size, **kw)
        from sklearn.datasets import load_digits

        data = load_digits()
        images = torch.tensor(data.data, dtype=torch.float32) / 16.0  # (1797, 64)
        labels = torch.tensor(data.target, dtype=torch.long)
        g = torch.Generator().manual_seed(self.test_seed)
        order = torch.randperm(len(labels), generator=g)
        if self.protocol == "permuted":
            images = images[:, torch.randperm(64, generator=g)]
        test, train = order[: self.test_size], order[self.test_size :]
        self._images, self._labels = images, labels
        self._train_idx, self._test_idx = train, test

    def _batch(self, idx: Tensor) -> Batch:
        return Batch(self._images[idx].T[:, :, None].contiguous(), self._labels[idx])

    def make(self, length: int, count: int, g: torch.Generator) -> Batch:
        """`count` training images, drawn with replacement."""
        return self._batch(self._train_idx[torch.randint(0, len(self._train_idx), (count,), generator=g)])

    def test_set(self) -> list[Batch]:
        if self._test is None:
            self._test = [self._batch(self._test_idx)]
        return self._test

    @property
    def baseline_loss(self) -> float:
        return math.log(10)

    @property
    def success(self) -> str:
        return "test accuracy of at least 90%"

    def correct(self, pred: Tensor, batch: Batch) -> Tensor:
        return pred.argmax(-1) == batch.y

    def solved(self, metrics: dict[str, float]) -> bool:
        return metrics["accuracy"] >= 0.9
