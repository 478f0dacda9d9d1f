"""`bptt.Monitor`: the diagnostics inside a user's own training loop.

Every `every` calls of `monitor.step(batch, loss_fn)` it traces the batch through the model (a
`torch.nn.RNN/LSTM/GRU` or a bptt cell; its weights and `.grad` are left alone) and records
`diagnostics.summary.summarize` of it: gradient against distance, horizon, Jacobian norms, gate
saturation, bounds. Each record is a JSON file `diagnostics/step_00000100.json` in the run
directory, written atomically, and goes to TensorBoard too when `tensorboard` is installed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from .. import _checks, _io
from .._checks import InputTypeError
from .summary import summarize


@dataclass(frozen=True)
class MonitorConfig:
    """How often and how much the Monitor measures."""

    every: int = 100
    samples: int = 4  # sequences of each batch whose Jacobian products are measured
    jacobian: bool = True
    fraction: float = 1e-3  # of the largest contribution, for the horizon
    tensorboard: bool = True


def _tensorboard_writer(run_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except (ImportError, ModuleNotFoundError):  # tensorboard is optional
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


class Monitor:
    """Diagnostics every N steps of your own training loop.

    Arguments:
        model: the recurrent module to watch (`torch.nn.LSTM`, … or a bptt cell).
        every: record at calls 0, N, 2N, … of `step`.
        run_dir: where the records go (`run_dir/diagnostics/step_*.json`).
        samples, jacobian, fraction, tensorboard: see `MonitorConfig`.

    Example:
        >>> import torch, bptt
        >>> lstm, head = torch.nn.LSTM(2, 8), torch.nn.Linear(8, 1)
        >>> import tempfile; run = tempfile.mkdtemp()
        >>> monitor = bptt.Monitor(lstm, every=2, run_dir=run, tensorboard=False)
        >>> for step in range(5):
        ...     x, y = torch.randn(10, 4, 2), torch.randn(4, 1)
        ...     rec = monitor.step(x, lambda out, state: torch.nn.functional.mse_loss(head(out[-1]), y))
        >>> [r["step"] for r in bptt.diagnostics.monitor.load(run)]
        [0, 2, 4]
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
    ) -> None:
        from ..cells.base import RecurrentBase
        from ..convert import torch_recurrent

        if not isinstance(model, (RecurrentBase, *torch_recurrent())):
            raise InputTypeError(
                f"Monitor watches a recurrent module (torch.nn.RNN/LSTM/GRU or a bptt cell), got {type(model).__name__}; "
                "pass the recurrent submodule and fold the rest of your model into loss_fn"
            )
        self.model = model
        self.config = MonitorConfig(
            _checks.positive_int("every", every),
            _checks.positive_int("samples", samples),
            jacobian,
            fraction,
            tensorboard,
        )
        self.run_dir = Path(run_dir)
        (self.run_dir / "diagnostics").mkdir(parents=True, exist_ok=True)
        self.calls = 0
        self.writer = _tensorboard_writer(self.run_dir) if tensorboard else None

    def step(self, input: Tensor, loss_fn: Any, hx: Any = None) -> dict[str, Any] | None:
        """Count one training step; on every N-th, trace `input` and record. Returns the record or None."""
        call = self.calls
        self.calls += 1
        if call % self.config.every:
            return None
        return self.record(input, loss_fn, hx, step=call)

    def record(self, input: Tensor, loss_fn: Any, hx: Any = None, step: int | None = None) -> dict[str, Any]:
        """Trace and record now, whatever the count."""
        from ..trace import trace

        c = self.config
        rec = summarize(trace(self.model, input, loss_fn, hx), c.samples, c.fraction, c.jacobian)
        rec["step"] = self.calls if step is None else step
        _io.write_json(self.run_dir / "diagnostics" / f"step_{rec['step']:08d}.json", rec)
        if self.writer is not None:
            self._tensorboard(rec)
        return rec

    def _tensorboard(self, rec: dict[str, Any]) -> None:
        s = rec["step"]
        self.writer.add_scalar("bptt/loss", rec["loss"], s)
        self.writer.add_scalar("bptt/horizon", rec["horizon"], s)
        if rec.get("decay_slope") is not None:
            self.writer.add_scalar("bptt/decay_slope", rec["decay_slope"], s)
        for name, value in rec["saturation"].items():
            if value is not None:
                self.writer.add_scalar(f"bptt/saturation/{name}", value, s)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def load(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every record of a run directory, in step order."""
    files = sorted((Path(run_dir) / "diagnostics").glob("step_*.json"))
    return [json.loads(f.read_text()) for f in files]
