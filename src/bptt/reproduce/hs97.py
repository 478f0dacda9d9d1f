"""`bptt reproduce hs97-adding`: Hochreiter & Schmidhuber 1997, Exp. 4 (the adding problem), Table 7.

The paper's protocol:

* the network: 2 inputs, 2 memory blocks × 2 cells, 1 sigmoid output unit reading the cells; every
  hidden unit reads the input, all hidden units and a bias: 93 weights (`MemoryBlockLSTM`);
* weights U[−0.1, 0.1], input-gate biases −3 and −6 (first and second block);
* online learning: after every sequence, w ← w − 0.5 ∂E/∂w with E = ½ (y − target)² at the last step
  and HS97's truncated gradient;
* the `hs97` adding generator: length U[T, T + T/10], values U[−1, 1], target 0.5 + (X1 + X2)/4;
* stop when the last 2000 training sequences were all right (|error| < 0.04) and their mean squared
  error is below 0.01; then count the wrong ones of 2560 test sequences.

Table 7: T = 100 stopped after 74,000 sequences (1 wrong of 2560), T = 500 after 209,000 (0 wrong),
T = 1000 after 853,000 (1 wrong); means over 10 trials.

Independent trials run side by side: trial k has its own weights (K, N, ·) and its own sequence at
each iteration; one forward pass through time serves them all. A trial that has met the criterion
stops learning and keeps its weights.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from .._checks import InputError, positive_int
from ..cells.hs97 import MemoryBlockLSTM, block_forward, block_output, truncated_grad
from ..tasks import Adding
from . import native

PAPER = {100: 74_000, 500: 209_000, 1000: 853_000}  # sequences to the stopping criterion
PAPER_WRONG = {100: 1, 500: 0, 1000: 1}  # wrong of 2560 test sequences


@dataclass(frozen=True)
class HS97Config:
    """The settings of the reproduction; the defaults are the paper's."""

    seq_len: int = 100
    trials: int = 10
    lr: float = 0.5
    blocks: int = 2
    cells_per_block: int = 2
    input_gate_bias: tuple[float, ...] = (-3.0, -6.0)
    init_range: float = 0.1
    window: int = 2000  # the most recent sequences that must all be right
    max_sequences: int = 300_000  # per trial; a trial still learning then has failed
    test_size: int = 2560
    seed: int = 0
    report_every: int = 1000
    threads: int = 1
    engine: str = "auto"  # "auto": the C loop (csrc/hs97.c) when it builds, else PyTorch; "python": PyTorch

    def validate(self) -> HS97Config:
        for name in ("seq_len", "trials", "window", "max_sequences", "test_size", "report_every", "threads"):
            positive_int(name, getattr(self, name))
        if self.seq_len < 10:
            raise InputError(
                f"expected seq_len ≥ 10 (the first marker is in the first ten pairs), got {self.seq_len}"
            )
        if not self.lr > 0:
            raise InputError(f"expected a positive learning rate, got {self.lr}")
        if self.engine not in ("auto", "python"):
            raise InputError(f"unknown engine {self.engine!r}; expected 'auto' or 'python'")
        if len(self.input_gate_bias) != self.blocks:
            raise InputError(f"expected {self.blocks} input-gate biases, got {len(self.input_gate_bias)}")
        return self


@dataclass
class TrialResult:
    trial: int
    solved: bool
    sequences: int  # training sequences until the criterion (or the budget)
    wrong: int  # of test_size
    test_mse: float
    seconds: float


@dataclass
class HS97Result:
    config: HS97Config
    trials: list[TrialResult] = field(default_factory=list)
    seconds: float = 0.0
    engine: str = "python"

    def summary(self) -> dict[str, Any]:
        solved = [t for t in self.trials if t.solved]
        T = self.config.seq_len
        return {
            "seq_len": T,
            "trials": len(self.trials),
            "solved": len(solved),
            "mean_sequences": statistics.fmean(t.sequences for t in solved) if solved else None,
            "median_sequences": statistics.median(t.sequences for t in solved) if solved else None,
            "mean_wrong": statistics.fmean(t.wrong for t in self.trials) if self.trials else None,
            "paper_sequences": PAPER.get(T),
            "paper_wrong": PAPER_WRONG.get(T),
            "test_size": self.config.test_size,
            "seconds": self.seconds,
            "engine": self.engine,
            "per_trial": [asdict(t) for t in self.trials],
            "settings": {k: v for k, v in asdict(self.config).items()},
        }


def _nets(cfg: HS97Config) -> tuple[torch.Tensor, torch.Tensor]:
    """The trials' initial weights, (K, N, I + N + 1) and (K, 1, C + 1), from cfg.seed."""
    g = torch.Generator().manual_seed(cfg.seed)
    nets = [
        MemoryBlockLSTM(2, cfg.blocks, cfg.cells_per_block, 1, True, cfg.input_gate_bias, cfg.init_range, g)
        for _ in range(cfg.trials)
    ]
    weight = torch.stack([n.weight.detach() for n in nets]).double()
    weight_out = torch.stack([n.weight_out.detach() for n in nets]).double()
    return weight, weight_out


@torch.no_grad()
def evaluate(
    cfg: HS97Config, task: Adding, weight: torch.Tensor, weight_out: torch.Tensor
) -> tuple[int, float]:
    """(wrong, MSE) of one network on the task's test set (|error| ≥ 0.04 is wrong)."""
    wrong, sq, n = 0, 0.0, 0
    for batch in task.test_set():
        x = batch.x.double()
        tape = block_forward(weight, x, cfg.blocks, cfg.cells_per_block)
        y = block_output(weight_out, tape.y_cells)
        err = y - batch.y.double()
        wrong += int((err.abs() >= 0.04).sum())
        sq += float(err.pow(2).sum())
        n += batch.size
    return wrong, sq / n


@torch.no_grad()
def run(cfg: HS97Config, progress: Callable[[int, int, float], None] | None = None) -> HS97Result:
    """Train `cfg.trials` networks online until each meets the criterion (or the budget); test each.

    `progress(sequences, trials_done, mean recent squared error)` is called every `report_every` sequences.
    """
    cfg = cfg.validate()
    torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    K, B, S = cfg.trials, cfg.blocks, cfg.cells_per_block
    task = Adding("hs97", cfg.seq_len, test_size=cfg.test_size)
    data = torch.Generator().manual_seed(cfg.seed + 1)
    weight, weight_out = _nets(cfg)
    use_c = cfg.engine == "auto" and native.library() is not None
    W, Wo = weight.numpy(), weight_out.numpy()  # the C loop updates these, and so the tensors, in place
    # all of the last `window` sequences right ⟺ a streak of `window`; then their mean squared error
    # is below 0.04² < 0.01 as well, so the streak alone decides
    streak = torch.zeros(K, dtype=torch.long)
    recent_sq = torch.zeros(K, dtype=torch.float64)  # running mean of (y − target)², for progress reports
    learning = torch.ones(K, dtype=torch.bool)
    stopped_at = torch.full((K,), cfg.max_sequences, dtype=torch.long)
    done_s = torch.zeros(K, dtype=torch.float64)
    for n in range(cfg.max_sequences):
        batch = task.make(int(task.lengths(1, data)[0]), K, data)  # sequence n of every trial
        if use_c:
            x, y = batch.x.double().numpy(), batch.y.double().numpy()
            E_np = native.step(x, y, W, Wo, learning.numpy(), cfg.lr, B, S)
            assert E_np is not None
            E = torch.from_numpy(E_np)
        else:
            tape = block_forward(weight, batch.x.double(), B, S)
            E, d_w, d_wo = truncated_grad(tape, weight, weight_out, batch.y.double(), B, S)
            rate = (cfg.lr * learning.double()).view(K, 1, 1)  # trials that met the criterion stop learning
            weight -= rate * d_w
            weight_out -= rate * d_wo
        sq = 2 * E  # (y − target)²
        streak = torch.where(sq < 0.04**2, streak + 1, 0)
        recent_sq = 0.999 * recent_sq + 0.001 * sq
        met = learning & (streak >= cfg.window)
        if bool(met.any()):
            stopped_at[met] = n + 1
            done_s[met] = time.perf_counter() - t0
            learning &= ~met
        if progress is not None and (n + 1) % cfg.report_every == 0:
            progress(n + 1, int((~learning).sum()), float(recent_sq.mean()))
        if not bool(learning.any()):
            break
    done_s[learning] = time.perf_counter() - t0
    result = HS97Result(cfg, engine="c" if use_c else "python")
    for k in range(K):
        wrong, mse = evaluate(cfg, task, weight[k], weight_out[k])
        result.trials.append(
            TrialResult(k, not bool(learning[k]), int(stopped_at[k]), wrong, mse, float(done_s[k]))
        )
    result.seconds = time.perf_counter() - t0
    return result
