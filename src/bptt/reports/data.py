"""A run directory as the report reads it: settings, metrics, Monitor snapshots, final diagnostics."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._checks import InputError


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
    """A run file's object, None if absent; a file that is not a JSON object is one clear error."""
    if not path.exists():
        return None
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"cannot read {path} as JSON: {err}") from None
    if not isinstance(obj, dict):
        raise InputError(f"expected {path} to hold a JSON object, got {type(obj).__name__}")
    return obj


def load_run(path: str | Path, name: str | None = None) -> RunData:
    """Read a run directory written by `bptt train`, `bptt demo` or `bptt diagnose`."""
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
        try:
            run.metrics = load_metrics(path)
        except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError) as err:
            raise InputError(f"cannot read {path / 'metrics.csv'}: {err}") from None
    diag = path / "diagnostics"
    if diag.is_dir():
        run.snapshots = [_json(f) for f in sorted(diag.glob("step_*.json"))]
    if run.summary is None and run.final is None:
        raise FileNotFoundError(f"{path} holds no run: expected summary.json or final_diagnostics.json")
    return run
