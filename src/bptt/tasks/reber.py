"""The embedded Reber grammar (Hochreiter & Schmidhuber 1997, Exp. 1): predict the next symbol.

Strings of the 7 symbols B, T, P, S, X, V, E: B, then T or P, then a Reber string, then the same
T or P again, then E; to predict that second-to-last symbol the network must remember the second
one across the whole inner string. The loss is cross-entropy on the next symbol at every step.
HS97 train on 256 strings and test on 256 others. A string is processed correctly when at every
step the legal next symbols (one or two) are the top-ranked outputs; solved when every test string
is. Chance: a uniform guess, ln 7.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from .._checks import InputError
from .base import Batch, Task

SYMBOLS = "BTPSXVE"
# The Reber grammar: state → [(symbol, next state)]; state 5 emits E and ends.
REBER = {
    0: [("T", 1), ("P", 2)],
    1: [("S", 1), ("X", 3)],
    2: [("T", 2), ("V", 4)],
    3: [("X", 2), ("S", 5)],
    4: [("P", 3), ("V", 5)],
}


def embedded_reber(g: torch.Generator) -> tuple[str, list[str]]:
    """One embedded Reber string and, for each prefix, the set of legal next symbols."""
    branch = "TP"[int(torch.randint(0, 2, (1,), generator=g))]
    s, legal = "B", ["TP"]
    s += branch
    legal.append("B")
    s += "B"
    legal.append("TP")
    state = 0
    while state != 5:
        options = REBER[state]
        sym, state = options[int(torch.randint(0, len(options), (1,), generator=g))]
        s += sym
        legal.append("E" if state == 5 else "".join(o for o, _ in REBER[state]))
    s += "E"
    legal.append(branch)
    s += branch
    legal.append("E")
    s += "E"
    return s, legal  # one set per symbol but the last: what may follow it


class Reber(Task):
    """Next-symbol prediction on the embedded Reber grammar (256 training and 256 test strings).

    Example:
        >>> import torch
        >>> s, legal = embedded_reber(torch.Generator().manual_seed(1))
        >>> s[0], s[1] == s[-2], s[-1], legal[0]
        ('B', True, 'E', 'TP')
    """

    name = "reber"
    protocols = ("hs97",)
    target = "sequence"
    paper = "Hochreiter & Schmidhuber 1997 (Exp. 1)"
    default_seq_len = None
    input_size = 7
    output_size = 7

    def __init__(
        self,
        protocol: str | None = None,
        seq_len: int | None = None,
        train_size: int = 256,
        test_size: int = 256,
        **kw: Any,
    ):
        if seq_len is not None:
            raise InputError("the Reber grammar sets its own string lengths; leave seq_len out")
        super().__init__(protocol, None, test_size=test_size, **kw)
        self.train_size = train_size
        self._train: list[tuple[str, list[str]]] | None = None

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "train_size": self.train_size}

    def _encode(self, strings: list[tuple[str, list[str]]]) -> Batch:
        """Inputs are every symbol but the last, targets the next ones; shorter strings are padded and masked."""
        T = max(len(s) for s, _ in strings) - 1
        n = len(strings)
        x = torch.zeros(T, n, 7)
        y = torch.zeros(T, n, dtype=torch.long)
        mask = torch.zeros(T, n, dtype=torch.bool)
        legal = torch.zeros(T, n, 7, dtype=torch.bool)
        for b, (s, ok) in enumerate(strings):
            for t in range(len(s) - 1):
                x[t, b, SYMBOLS.index(s[t])] = 1
                y[t, b] = SYMBOLS.index(s[t + 1])
                mask[t, b] = True
                for c in ok[t]:
                    legal[t, b, SYMBOLS.index(c)] = True
        return Batch(x, y, mask, legal)

    def generate(self, n: int, g: torch.Generator) -> list[Batch]:
        """n fresh strings (the test set), padded to the longest and masked."""
        return [self._encode([embedded_reber(g) for _ in range(n)])]

    def batches(self, batch_size: int, g: torch.Generator) -> Iterator[Batch]:
        """Batches drawn from the fixed training set of `train_size` strings (its own seed, test_seed + 1)."""
        if self._train is None:
            tg = torch.Generator().manual_seed(self.test_seed + 1)
            self._train = [embedded_reber(tg) for _ in range(self.train_size)]
        while True:
            idx = torch.randint(0, self.train_size, (batch_size,), generator=g)
            yield self._encode([self._train[int(i)] for i in idx])

    @property
    def baseline_loss(self) -> float:
        return math.log(7)

    @property
    def success(self) -> str:
        return "at every step the legal next symbols are top-ranked, for every test string"

    def correct(self, pred: Tensor, batch: Batch) -> Tensor:
        legal, mask = batch.legal, batch.mask
        if legal is None or mask is None:
            raise InputError("expected a Reber batch, with the legal next symbols and a mask")
        k = legal.sum(-1, keepdim=True)  # how many symbols are legal
        ranks = pred.argsort(-1, descending=True).argsort(-1)  # rank of every symbol
        ok: Tensor = ((ranks < k) == legal).all(-1) | ~mask  # the legal ones exactly fill the top k
        return ok.all(0)

    def solved(self, metrics: dict[str, float]) -> bool:
        return metrics["error_rate"] == 0.0
