"""The copy memory problem (Arjovsky et al. 2016): recall ten symbols after a long blank delay.

Input: ten symbols drawn from 8, T − 1 blanks, a delimiter, ten more blanks (length T + 20); the
target is blank everywhere except the last ten steps, which must repeat the ten symbols. Loss:
cross-entropy at every step. Chance: output blank, then guess: 10·ln 8 / (T + 20) (T = 100:
0.1733). Success "cross-entropy near 0": here, every one of the ten recalled symbols right in at
least 99% of test sequences.

Symbols are one-hot over 10 codes: 0–7 the data, 8 blank, 9 the delimiter; the outputs are the
9 classes 0–8.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import Batch, Task

BLANK, DELIMITER, MEMORY = 8, 9, 10


class CopyMemory(Task):
    """Copy ten symbols across a delay of T steps.

    Example:
        >>> import torch
        >>> task = CopyMemory(seq_len=5)
        >>> (b,) = task.generate(2, torch.Generator().manual_seed(0))
        >>> b.x.shape, b.y.shape, round(task.baseline_loss, 4)
        (torch.Size([25, 2, 10]), torch.Size([25, 2]), 0.8318)
    """

    name = "copy"
    protocols = ("arjovsky",)
    target = "sequence"
    paper = "Arjovsky, Shah & Bengio 2016"
    input_size = 10
    output_size = 9

    def lengths(self, n: int, g: torch.Generator) -> Tensor:
        assert self.seq_len is not None
        return torch.full((n,), self.seq_len + 2 * MEMORY)

    def make(self, length: int, n: int, g: torch.Generator) -> Batch:
        T = length - 2 * MEMORY
        data = torch.randint(0, 8, (MEMORY, n), generator=g)
        sym = torch.full((length, n), BLANK)
        sym[:MEMORY] = data
        sym[MEMORY + T - 1] = DELIMITER
        y = torch.full((length, n), BLANK)
        y[-MEMORY:] = data
        x = torch.nn.functional.one_hot(sym, self.input_size).float()
        return Batch(x, y, torch.ones(length, n, dtype=torch.bool))

    @property
    def baseline_loss(self) -> float:
        assert self.seq_len is not None
        return MEMORY * math.log(8) / (self.seq_len + 2 * MEMORY)

    @property
    def success(self) -> str:
        return "all ten recalled symbols right on at least 99% of test sequences (cross-entropy near 0)"

    def correct(self, pred: Tensor, batch: Batch) -> Tensor:
        return (pred[-MEMORY:].argmax(-1) == batch.y[-MEMORY:]).all(0)
