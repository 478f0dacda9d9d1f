"""A run directory as the report reads it: settings, metrics, Monitor snapshots, final diagnostics."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._checks import InputError
from .._records import from_json
from ..diagnostics.summary import Summary


@dataclass
class RunData:
    """Everything a report shows of one run; any part may be missing (a diagnose run has no training)."""

    path: Path
    name: str
    config: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    snapshots: list[Summary] = field(default_factory=list)
    final: Summary | None = None
    nonfinite: dict[str, Any] | None = None
    color: int = 0  # the run's colour index, the same in every figure of a report

    @property
    def kind(self) -> str:
        """ "training" (bptt train, bptt demo), "diagnosis" (bptt diagnose) or "watch" (a Monitor's folder)."""
        if self.summary is not None or self.metrics:
            return "training"
        if self.snapshots and not (self.path / "final_diagnostics.json").exists():
            return "watch"
        return "diagnosis"

    @property
    def is_lstm(self) -> bool:
        return self.final is not None and self.final.jacobian_log_cec is not None

    @property
    def label(self) -> str:
        s = self.summary or {}
        parts = [self.name]
        if s.get("cell"):
            parts.append(str(s["cell"]) + (f" {s['nonlinearity']}" if s.get("nonlinearity") else ""))
        return " · ".join(parts)


def far_over_near(final: Summary | None) -> tuple[int | None, float | None]:
    """(the longest distance, ‖∂L/∂h‖ there relative to distance 0), layer 0, mean over samples.

    The ratio is None where the gradient at distance 0 is 0 or a value is not finite; 0 where the
    far gradient underflowed in float64 (below about 1e−308)."""
    if final is None:
        return None, None
    d, dh = [x or 0.0 for x in final.distance], final.dh_mean[0]
    far = max(range(len(d)), key=lambda k: d[k])
    near = min(range(len(d)), key=lambda k: d[k])
    dh_near, dh_far = dh[near], dh[far]
    if not dh_near or dh_far is None:
        return int(d[far]), None
    return int(d[far]), dh_far / dh_near


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
    """Read a run directory written by `bptt train`, `bptt demo`, `bptt diagnose` or a `bptt.Monitor`."""
    from ..diagnostics import monitor
    from ..training.trainer import load_metrics

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no run directory at {path}")
    run = RunData(path, name or path.name)
    run.config = _json(path / "config.json")
    run.summary = _json(path / "summary.json")
    final = _json(path / "final_diagnostics.json")
    run.final = from_json(Summary, final) if final is not None else None
    run.nonfinite = _json(path / "nonfinite.json")
    if (path / "metrics.csv").exists():
        try:
            run.metrics = load_metrics(path)
        except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError) as err:
            raise InputError(f"cannot read {path / 'metrics.csv'}: {err}") from None
    records = monitor.load(path)
    if records:
        # one module's records: the one named first (a model with several recurrent modules)
        first = records[0].module or ""
        run.snapshots = [r for r in records if (r.module or "") == first]
        if len({r.module or "" for r in records}) > 1:
            run.name = f"{run.name} ({first})" if name is None else run.name
    if run.summary is None and run.final is None:
        if not run.snapshots:
            raise FileNotFoundError(
                f"{path} holds no run: expected summary.json, final_diagnostics.json or {monitor.RECORDS}"
            )
        run.final = run.snapshots[-1]  # a Monitor or watch folder: its latest record is the final word
    return run
