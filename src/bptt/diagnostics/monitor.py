"""`bptt.Monitor`: the diagnostics of a user's own training step, every N steps, on top of `bptt.watch`.

Every `every`-th `with monitor.step():` block is a `bptt.watch` of the model: the traces come
from that very forward and backward pass, so watching costs one traced step (the bptt engine in
place of the fused kernels, plus `diagnostics.summary.summarize` of each trace) and changes
nothing in the training. Each record (gradient against distance, the lag profile and horizon,
Jacobian norms, gate saturation, bounds) is one line of `diagnostics.jsonl` in the run directory,
per recurrent module, and goes to TensorBoard too when `tensorboard` is installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import _checks, _io
from .._checks import InputError
from .summary import summarize

RECORDS = "diagnostics.jsonl"


@dataclass(frozen=True)
class MonitorConfig:
    """How often and how much the Monitor measures."""

    every: int = 100
    samples: int = 4  # sequences of each batch whose Jacobian products and lag profile are measured
    jacobian: bool = True
    fraction: float = 1e-3  # of the largest gradient, for the horizon
    tensorboard: bool = True


def _tensorboard_writer(run_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except (ImportError, ModuleNotFoundError):  # tensorboard is optional
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


@dataclass
class Skipped:
    """What `Monitor.step()` yields on a step it does not watch: setting `loss` does nothing."""

    loss: Any = None


class Monitor:
    """Diagnostics every N steps of your own training loop, from the training step itself.

    Arguments:
        model: your model (any `nn.Module`); its torch.nn.RNN/LSTM/GRU and bptt submodules are watched.
        every: watch steps 0, N, 2N, … (counted by calls of `step()`).
        run_dir: where the records go (`run_dir/diagnostics.jsonl`).
        samples, jacobian, fraction, tensorboard: see `MonitorConfig`.
        start: the count of the first `step()` (a resumed run's step).

    Example:
        >>> import torch, bptt, tempfile
        >>> model = torch.nn.Sequential()
        >>> model.rnn, run = torch.nn.LSTM(2, 8), tempfile.mkdtemp()
        >>> monitor = bptt.Monitor(model, every=2, run_dir=run, tensorboard=False)
        >>> for _ in range(5):
        ...     x, y = torch.randn(10, 4, 2), torch.randn(4, 8)
        ...     with monitor.step() as s:   # a bptt.watch on steps 0, 2, 4
        ...         loss = torch.nn.functional.mse_loss(model(x)[0][-1], y)
        ...         loss.backward()
        ...         s.loss = loss           # optional: the loss value in the record
        >>> [(r["step"], r["module"]) for r in bptt.diagnostics.monitor.load(run)]
        [(0, 'rnn'), (2, 'rnn'), (4, 'rnn')]
    """

    def __init__(
        self,
        model: nn.Module,
        every: int = 100,
        run_dir: str | Path = "runs/monitor",
        *,
        samples: int = 4,
        jacobian: bool = True,
        fraction: float = 1e-3,
        tensorboard: bool = True,
        start: int = 0,
    ) -> None:
        from ..watch import Watch

        self.watcher = Watch(model)  # finds the recurrent modules now, so a wrong model fails here
        self.config = MonitorConfig(
            _checks.positive_int("every", every),
            _checks.positive_int("samples", samples),
            jacobian,
            fraction,
            tensorboard,
        )
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.calls = start
        self.writer = _tensorboard_writer(self.run_dir) if tensorboard else None

    @contextmanager
    def step(self) -> Iterator[Any]:
        """One training step: on every N-th, a `bptt.watch` of the block, recorded when the block ends.

        Yields the `Watch` (or, on other steps, a `Skipped`); either takes `.loss = loss`. Only the
        first call of each module in the block is recorded (truncated BPTT: the first window), and
        nothing where the gradient is not finite.
        """
        call = self.calls
        self.calls += 1
        if call % self.config.every:
            yield Skipped()
            return
        with self.watcher as w:
            yield w
        self.records = self.record(w, call)

    def record(self, w: Any, step: int) -> list[dict[str, Any]]:
        """Summarize and record the first trace of each module of a finished `bptt.watch`; returns the records."""
        from ..trace import Trace

        traces: dict[str, Trace] = w.traces if not isinstance(w, Trace) else {"": w}
        c = self.config
        out = []
        for name, tr in traces.items():
            if "#" in name or not bool(torch.isfinite(tr.dh).all()):
                continue  # later calls of a module; a step whose gradient is not finite
            rec = summarize(tr, c.samples, c.fraction, c.jacobian)
            rec["step"], rec["module"] = step, name
            _io.append_jsonl(self.run_dir / RECORDS, rec)
            if self.writer is not None:
                self._tensorboard(rec, f"bptt/{name}/" if len(traces) > 1 and name else "bptt/")
            out.append(rec)
        return out

    def _tensorboard(self, rec: dict[str, Any], prefix: str) -> None:
        assert self.writer is not None
        s = rec["step"]
        for key in ("loss", "horizon", "horizon_end", "decay_slope"):
            if rec.get(key) is not None:
                self.writer.add_scalar(prefix + key, rec[key], s)
        for name, value in rec["saturation"].items():
            if value is not None:
                self.writer.add_scalar(f"{prefix}saturation/{name}", value, s)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def load(run_dir: str | Path, module: str | None = None) -> list[dict[str, Any]]:
    """Every record of a run directory in step order (one per step and module; the last one written
    wins where a resumed run recorded a step again), of one module if given."""
    path = Path(run_dir) / RECORDS
    if not path.exists():
        if not Path(run_dir).is_dir():
            raise InputError(f"no run directory at {run_dir}")
        return []
    latest: dict[tuple[int, str], dict[str, Any]] = {}
    for rec in _io.read_jsonl(path):
        latest[(rec["step"], rec.get("module", ""))] = rec
    records = [latest[k] for k in sorted(latest)]
    return [r for r in records if module is None or r.get("module", "") == module]
