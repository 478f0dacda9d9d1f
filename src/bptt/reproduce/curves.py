"""`bptt reproduce vanishing` and `copy-baseline`: the seeds' curve and Arjovsky's baseline, as sweeps.

* `vanishing`: the tanh RNN, the LSTM and the GRU (or any cells given) on the adding problem and
  temporal order at T ∈ {10, 20, 50, 100, 200, 500}, 5 seeds each, without and with norm clipping,
  every run on the same budget and settings (`VANISHING`). The claim: the RNN's success rate
  falls to zero as T grows while the gated cells keep learning.
* `copy-baseline`: Arjovsky et al.'s (2016) copy task at T ∈ {100, 200, 300, 500} with their
  training protocol (batch 20, RMSprop lr 1e-3, elementwise clipping at 1, 128 units), the
  measured test cross-entropy beside the memoryless baseline 10·ln 8/(T + 20).

Runs are ordered by T, shortest first, so an interrupted sweep has whole columns of the table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..sweep.grid import Point, config_key
from ..sweep.report import curves

# every run of `vanishing` (any cell): one budget, so the cells differ in nothing else
VANISHING: dict[str, str] = {
    "--hidden-size": "64",
    "--batch-size": "32",
    "--lr": "0.01",
    "--steps": "1000",
    "--eval-every": "100",
    "--checkpoint-every": "100",
    "--log-every": "50",
    "--test-size": "500",
}
VANISHING_QUICK: dict[str, str] = {
    "--hidden-size": "8",
    "--batch-size": "8",
    "--lr": "0.01",
    "--steps": "20",
    "--eval-every": "10",
    "--checkpoint-every": "10",
    "--log-every": "5",
    "--test-size": "32",
}
# Arjovsky et al. 2016, the baselines' protocol; 1e5 sequences at batch 20 = 5000 steps
COPY: dict[str, str] = {
    "--task": "copy",
    "--hidden-size": "128",
    "--batch-size": "20",
    "--optimizer": "rmsprop",
    "--lr": "0.001",
    "--clip": "value",
    "--clip-threshold": "1",
    "--steps": "5000",
    "--eval-every": "250",
    "--checkpoint-every": "250",
    "--log-every": "50",
    "--test-size": "500",
}
COPY_QUICK: dict[str, str] = {
    **COPY,
    "--hidden-size": "16",
    "--steps": "20",
    "--eval-every": "10",
    "--test-size": "32",
}


@dataclass(frozen=True)
class Plan:
    """What a reproduction runs: its grid points in order."""

    name: str
    grid: list[Point]


def _point(parse: Any, name: str, flags: dict[str, str]) -> Point:
    argv = [v for kv in flags.items() for v in kv]
    cfg = parse(argv)
    return Point(name, tuple(argv), cfg, config_key(cfg))


def _forget_bias(cell: str) -> dict[str, str]:
    return {"--forget-bias": "1"} if cell == "lstm" else {}


def vanishing(
    parse: Any,
    cells: Sequence[str] = ("rnn", "lstm", "gru"),
    tasks: Sequence[str] = ("adding", "temporal_order"),
    seq_lens: Sequence[int] = (10, 20, 50, 100, 200, 500),
    seeds: int = 5,
    clips: Sequence[str] = ("none", "norm"),
    quick: bool = False,
    steps: int | None = None,
) -> Plan:
    """The `vanishing` grid: task × cell × T × clipping × seed, shortest T first."""
    base = dict(VANISHING_QUICK if quick else VANISHING)
    if steps is not None:
        base["--steps"] = str(steps)
    grid = []
    for T in seq_lens:
        for seed in range(seeds):
            for task in tasks:
                for clip in clips:
                    for cell in cells:
                        flags = {
                            **base,
                            "--task": task,
                            "--cell": cell,
                            "--seq-len": str(T),
                            "--seed": str(seed),
                            "--clip": clip,
                            **_forget_bias(cell),
                        }
                        name = f"{task}_{cell}_T{T}_clip-{clip}_seed{seed}"
                        grid.append(_point(parse, name, flags))
    return Plan("vanishing", grid)


def copy_baseline(
    parse: Any,
    cells: Sequence[str] = ("rnn", "lstm"),
    seq_lens: Sequence[int] = (100, 200, 300, 500),
    seeds: int = 1,
    quick: bool = False,
) -> Plan:
    """Arjovsky et al.'s copy task on their baselines' protocol."""
    base = COPY_QUICK if quick else COPY
    grid = [
        _point(
            parse,
            f"copy_{cell}_T{T}_seed{seed}",
            {**base, "--cell": cell, "--seq-len": str(T), "--seed": str(seed)},
        )
        for T in seq_lens
        for seed in range(seeds)
        for cell in cells
    ]
    return Plan("copy-baseline", grid)


def copy_chance(T: int) -> float:
    """The memoryless baseline: blanks, then a uniform guess of the ten symbols: 10·ln 8/(T + 20)."""
    return 10 * math.log(8) / (T + 20)


def success_table(rows: Sequence[dict[str, Any]]) -> tuple[list[int], dict[str, dict[int, str]]]:
    """Success rate against T per series (task · cell · clip), as 'solved/done' ('*': some runs not done)."""
    pts = curves(rows)
    Ts = sorted({p.seq_len for p in pts})
    table: dict[str, dict[int, str]] = {}
    for p in pts:
        label = p.series if p.task in p.series else f"{p.task} · {p.series}"
        table.setdefault(label, {})[p.seq_len] = f"{p.solved}/{p.done}" + ("" if p.done == p.runs else "*")
    return Ts, table
