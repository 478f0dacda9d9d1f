"""A run's logs: metrics.csv (a row per logged step) and the Monitor's snapshots, cut back on resume.

On resume every row and snapshot of a step at or after the checkpoint's is dropped before training
goes on, so the logs of a resumed run equal an uninterrupted run's row for row. A row torn by a
kill in the middle of its write is dropped too.
"""

from __future__ import annotations

import contextlib
import csv
import io
from pathlib import Path
from typing import Any

from .. import _io

METRICS = (
    "step",
    "loss",
    "grad_norm",
    "clipped",
    "skipped",
    "rolled_back",
    "lr",
    "wall_s",
    "test_loss",
    "test_error_rate",
)


def _complete(row: dict[str, Any]) -> bool:
    """A row with every column and an integer step (a torn last line has neither)."""
    if None in row or any(row.get(k) is None for k in METRICS):
        return False
    try:
        int(row["step"])
    except ValueError:
        return False
    return True


class MetricsLog:
    """metrics.csv, started afresh or (`keep_before`) kept up to the step a resumed run goes on from."""

    def __init__(self, path: Path, keep_before: int | None = None) -> None:
        rows: list[dict[str, Any]] = []
        if keep_before is not None and path.exists():
            reader = csv.DictReader(io.StringIO(path.read_text(errors="replace")))
            rows = [r for r in reader if _complete(r) and int(r["step"]) < keep_before]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=METRICS)
        w.writeheader()
        w.writerows(rows)
        _io.write_text(path, buf.getvalue())
        self._file = path.open("a", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=METRICS)

    def write(self, row: dict[str, Any]) -> None:
        self._writer.writerow(row)
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


def cut_snapshots(out: Path, keep_before: int | None) -> int:
    """Remove the Monitor's snapshots of steps ≥ `keep_before` (all of them when None); returns how many."""
    folder = out / "diagnostics"
    removed = 0
    if folder.is_dir():
        for f in folder.glob("step_*.json"):
            try:
                step = int(f.stem.removeprefix("step_"))
            except ValueError:
                continue
            if keep_before is None or step >= keep_before:
                with contextlib.suppress(OSError):
                    f.unlink()
                    removed += 1
    return removed
