"""The temporal order problem: classify a sequence by the order of two (or three) far-apart symbols.

* `hs97` (Hochreiter & Schmidhuber 1997, Exp. 6a/6b): 8 one-hot symbols {a, b, c, d, X, Y, B, E};
  B starts and E ends the sequence, distractors a–d fill it; X or Y stand at t1 ∈ [10, 20] and
  t2 ∈ [50, 60] (6b: t1 ∈ [10, 20], t2 ∈ [33, 43], t3 ∈ [66, 76]); length U[100, 110]; 4 (8) classes
  by the order of X and Y. Correct when every output is within 0.3 of its one-hot target (softmax
  probabilities); solved with at most 1% wrong (HS97 report 1 and 2 wrong of 2560).
* `pascanu` (Pascanu et al. 2013): 6 symbols {A, B, c, d, e, f}; length L; A or B at
  [0.1L, 0.2L) and [0.5L, 0.6L) (3 symbols: [0.1L, 0.2L), [0.3L, 0.4L), [0.6L, 0.7L)); solved with
  under 1% of test sequences misclassified.

`symbols` is 2 or 3 (HS97's 6a or 6b). Note: for `hs97` with a sequence length other than 100 the
positions and lengths scale by seq_len/100.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .._checks import InputError
from .base import Batch, Task, uniform_int


class TemporalOrder(Task):
    """Classify the order of the relevant symbols; the target is read at the last step.

    Example:
        >>> import torch
        >>> task = TemporalOrder("pascanu", seq_len=30, symbols=3)
        >>> (b,) = task.generate(5, torch.Generator().manual_seed(0))
        >>> b.x.shape, task.output_size, int(b.y.max()) < 8
        (torch.Size([30, 5, 6]), 8, True)
    """

    name = "temporal_order"
    protocols = ("hs97", "pascanu")
    target = "class"
    paper = "Hochreiter & Schmidhuber 1997 (Exp. 6a, 6b); Pascanu et al. 2013"

    def __init__(self, protocol: str | None = None, seq_len: int | None = None, symbols: int = 2, **kw: Any):
        super().__init__(protocol, seq_len, **kw)
        if symbols not in (2, 3):
            raise InputError(f"expected symbols 2 or 3, got {symbols}")
        self.symbols = symbols
        self.input_size = 8 if self.protocol == "hs97" else 6
        self.output_size = 2**symbols

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "symbols": self.symbols}

    def windows(self, length: int) -> list[tuple[int, int]]:
        """Inclusive position ranges of the relevant symbols."""
        T = self.seq_len
        assert T is not None
        if self.protocol == "hs97":
            s = T / 100
            spans = [(10, 20), (50, 60)] if self.symbols == 2 else [(10, 20), (33, 43), (66, 76)]
            return [(round(a * s), round(b * s)) for a, b in spans]
        fractions = [(0.1, 0.2), (0.5, 0.6)] if self.symbols == 2 else [(0.1, 0.2), (0.3, 0.4), (0.6, 0.7)]
        return [
            (math.ceil(a * length), max(math.ceil(a * length), math.ceil(b * length) - 1))
            for a, b in fractions
        ]

    def lengths(self, n: int, g: torch.Generator) -> Tensor:
        T = self.seq_len
        assert T is not None
        if self.protocol == "hs97":
            return uniform_int(g, round(100 * T / 100), round(110 * T / 100), n)
        return torch.full((n,), T)

    def make(self, length: int, count: int, g: torch.Generator) -> Batch:
        hs97 = self.protocol == "hs97"
        n_distractors = 4
        first_relevant = 4  # symbol index of X (hs97) or A (pascanu); the next one is Y or B
        sym = torch.randint(0, n_distractors, (length, count), generator=g)
        if hs97:
            sym[0], sym[-1] = 6, 7  # B … E
        codes = torch.randint(0, 2, (count, self.symbols), generator=g)  # 0 = X/A, 1 = Y/B
        b = torch.arange(count)
        for k, (lo, hi) in enumerate(self.windows(length)):
            pos = uniform_int(g, lo, hi, count)
            sym[pos, b] = first_relevant + codes[:, k]
        x = torch.nn.functional.one_hot(sym, self.input_size).float()
        y = (codes * (2 ** torch.arange(self.symbols - 1, -1, -1))).sum(1)  # XX → 0, XY → 1, YX → 2, YY → 3
        return Batch(x, y)

    @property
    def baseline_loss(self) -> float:
        return math.log(self.output_size)

    @property
    def success(self) -> str:
        if self.protocol == "hs97":
            return "every output within 0.3 of its target on at least 99% of test sequences"
        return "under 1% of test sequences misclassified"

    def correct(self, pred: Tensor, batch: Batch) -> Tensor:
        if self.protocol == "hs97":
            target = torch.nn.functional.one_hot(batch.y, self.output_size).to(pred.dtype)
            return (pred.softmax(-1) - target).abs().amax(-1) < 0.3
        return pred.argmax(-1) == batch.y
