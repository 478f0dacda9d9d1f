"""A run directory as the report reads it: settings, metrics, Monitor snapshots, final diagnostics."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RunData:
    """Everything a report shows of one run; any part may be missing (a diagnose run has no training)."""

    path: Path
    name: str
    config: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] | None = None
    nonfinite: dict[str, Any] | None = None

    @property
    def is_lstm(self) -> bool:
        return bool(self.final and self.final.get("jacobian_log_cec") is not None)

    @property
    def label(self) -> str:
        s = self.summary or {}
        parts = [self.name]
        if s.get("cell"):
            parts.append(str(s["cell"]) + (f" {s['nonlinearity']}" if s.get("nonlinearity") else ""))
        return " · ".join(parts)


def _json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def load_run(path: str | Path, name: str | None = None) -> RunData:
    """Read a run directory written by `bptt train`, `bptt demo`, `bptt diagnose` or a `bptt.Monitor`."""
    from ..diagnostics import monitor
    from ..training.trainer import load_metrics

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no run directory at {path}")
    run = RunData(path, name or path.name)
    run.config = _json(path / "config.json")
    run.summary = _json(path / "summary.json")
    run.final = _json(path / "final_diagnostics.json")
    run.nonfinite = _json(path / "nonfinite.json")
    if (path / "metrics.csv").exists():
        run.metrics = load_metrics(path)
    records = monitor.load(path)
    if records:
        # one module's records: the one named first (a model with several recurrent modules)
        first = records[0].get("module", "")
        run.snapshots = [r for r in records if r.get("module", "") == first]
        if len({r.get("module", "") for r in records}) > 1:
            run.name = f"{run.name} ({first})" if name is None else run.name
    if run.summary is None and run.final is None:
        if not run.snapshots:
            raise FileNotFoundError(
                f"{path} holds no run: expected summary.json, final_diagnostics.json or {monitor.RECORDS}"
            )
        run.final = run.snapshots[-1]  # a Monitor or watch folder: its latest record is the final word
    return run
