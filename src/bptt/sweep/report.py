"""`bptt sweep report DIR`: the sweep's curves against T on one HTML page, and the tables as CSV.

One curve per series — the settings that vary across the grid other than `seq_len` and `seed`
(for example the cell, or the cell and the clipping) — against T:

* success rate: the fraction of seeds that met the task's criterion;
* sequences to the criterion: the median over the seeds that met it, with their min–max band;
* test loss: the median with the min–max band over seeds, beside the task's chance level.

Written beside the ledger: `report.html` (self-contained: PNG images inline, no scripts),
`runs.csv` (one row per run) and `curves.csv` (the table behind the plots).
"""

from __future__ import annotations

import base64
import csv
import io
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, select_autoescape

from .. import _io

SKIP = {"seq_len", "seed", "final_seq_len"}  # the x axis and the spread; never a series


@dataclass(frozen=True)
class Point:
    """One (series, T) of the curves, over its seeds."""

    series: str
    seq_len: int
    task: str
    runs: int
    done: int
    solved: int
    success_rate: float
    median_sequences: float | None
    min_sequences: int | None
    max_sequences: int | None
    median_steps: float | None
    median_test_loss: float | None
    min_test_loss: float | None
    max_test_loss: float | None
    baseline_loss: float | None


def series_fields(configs: Sequence[dict[str, Any]]) -> list[str]:
    """The config fields that vary across the runs, less seq_len and seed."""
    if not configs:
        return []
    fields = [k for k in configs[0] if k not in SKIP]
    varying = [k for k in fields if len({repr(c.get(k)) for c in configs}) > 1]
    for k in reversed(list(varying)):  # drop a field the others determine (the LSTM's forget bias)
        others = [f for f in varying if f != k]

        def combos(keys: list[str]) -> int:
            return len({tuple(repr(c.get(f)) for f in keys) for c in configs})

        if others and combos(others) == combos([*others, k]):
            varying.remove(k)
    return varying


def series_label(config: dict[str, Any], fields: Sequence[str]) -> str:
    parts = []
    for k in fields:
        v = config.get(k)
        parts.append(str(v) if k in ("cell", "task", "variant") else f"{k}={v}")
    return " · ".join(parts) or str(config.get("cell", "run"))


def curves(rows: Sequence[dict[str, Any]]) -> list[Point]:
    """The curves' points from ledger rows (`status_rows`); runs not done count as not solved."""
    configs = [r["config"] for r in rows]
    fields = series_fields(configs)
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in rows:
        cfg = r["config"]
        T = r.get("seq_len") or cfg.get("seq_len") or 0
        groups.setdefault((series_label(cfg, fields), int(T)), []).append(r)
    points = []
    for (series, T), group in sorted(groups.items()):
        done = [r for r in group if r["status"] == "done"]
        solved = [r for r in done if r["solved"]]
        seqs = [int(r["sequences"]) for r in solved if r["sequences"] is not None]
        steps = [int(r["steps"]) for r in solved if r["steps"] is not None]
        losses = [float(r["test_loss"]) for r in done if r["test_loss"] is not None]
        base = next((r["baseline_loss"] for r in done if r["baseline_loss"] is not None), None)
        points.append(
            Point(
                series=series,
                seq_len=T,
                task=str(group[0]["config"].get("task")),
                runs=len(group),
                done=len(done),
                solved=len(solved),
                success_rate=len(solved) / len(group),
                median_sequences=statistics.median(seqs) if seqs else None,
                min_sequences=min(seqs) if seqs else None,
                max_sequences=max(seqs) if seqs else None,
                median_steps=statistics.median(steps) if steps else None,
                median_test_loss=statistics.median(losses) if losses else None,
                min_test_loss=min(losses) if losses else None,
                max_test_loss=max(losses) if losses else None,
                baseline_loss=base,
            )
        )
    return points


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def plots(points: Sequence[Point]) -> dict[str, str]:
    """The three figures as base64 PNGs, one panel per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({p.task for p in points})
    series = sorted({p.series for p in points})
    colours = {s: f"C{k % 10}" for k, s in enumerate(series)}
    images: dict[str, str] = {}
    for what in ("success", "sequences", "loss"):
        fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks), 3.6), squeeze=False)
        for ax, task in zip(axes[0], tasks, strict=True):
            chance: dict[int, float] = {}
            for s in series:
                pts = sorted((p for p in points if p.series == s and p.task == task), key=lambda p: p.seq_len)
                if not pts:
                    continue
                T = [p.seq_len for p in pts]
                if what == "success":
                    ax.plot(T, [p.success_rate for p in pts], "o-", color=colours[s], label=s)
                elif what == "sequences":
                    ok = [p for p in pts if p.median_sequences is not None]
                    ax.plot(
                        [p.seq_len for p in ok],
                        [p.median_sequences for p in ok],
                        "o-",
                        color=colours[s],
                        label=s,
                    )
                    ax.fill_between(
                        [p.seq_len for p in ok],
                        [p.min_sequences or 0 for p in ok],
                        [p.max_sequences or 0 for p in ok],
                        color=colours[s],
                        alpha=0.15,
                    )
                else:
                    ok = [p for p in pts if p.median_test_loss is not None]
                    ax.plot(
                        [p.seq_len for p in ok],
                        [p.median_test_loss for p in ok],
                        "o-",
                        color=colours[s],
                        label=s,
                    )
                    ax.fill_between(
                        [p.seq_len for p in ok],
                        [p.min_test_loss or 0 for p in ok],
                        [p.max_test_loss or 0 for p in ok],
                        color=colours[s],
                        alpha=0.15,
                    )
                    chance.update({p.seq_len: p.baseline_loss for p in pts if p.baseline_loss is not None})
            if chance:
                xs = sorted(chance)
                ax.plot(xs, [chance[x] for x in xs], "k--", lw=1, label="chance")
            has_data = any(line.get_ydata().size for line in ax.get_lines())
            if has_data:
                ax.set_xscale("log")
            ax.set_xlabel("T (sequence length)")
            ax.set_title(task)
            if what == "success":
                ax.set_ylabel("success rate over seeds")
                ax.set_ylim(-0.05, 1.05)
            elif what == "sequences":
                ax.set_ylabel("training sequences to the criterion")
            else:
                ax.set_ylabel("test loss")
            if what != "success" and has_data:
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        images[what] = _png(fig)
    return images


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; }
td, th { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; }
</style></head><body>
<h1>{{ title }}</h1>
<p>{{ counts }}. Series: the settings that vary across the grid other than T and the seed
({{ fields or "none" }}); the spread is over seeds.</p>
<h2>Success rate against T</h2><img alt="success rate against T" src="data:image/png;base64,{{ images.success }}">
<h2>Training sequences to the criterion against T</h2>
<p>Median over the seeds that met the criterion; the band is their min–max.</p>
<img alt="sequences to the criterion against T" src="data:image/png;base64,{{ images.sequences }}">
<h2>Test loss against T</h2><p>Median and min–max over seeds; dashed: the task's chance level.</p>
<img alt="test loss against T" src="data:image/png;base64,{{ images.loss }}">
<h2>The table behind the plots</h2>
<table><tr>{% for h in header %}<th>{{ h }}</th>{% endfor %}</tr>
{% for row in table %}<tr>{% for v in row %}<td>{{ v }}</td>{% endfor %}</tr>{% endfor %}</table>
<p>Every run: runs.csv; this table: curves.csv.</p>
</body></html>
"""

CURVE_COLUMNS = (
    "task",
    "series",
    "seq_len",
    "runs",
    "done",
    "solved",
    "success_rate",
    "median_sequences",
    "min_sequences",
    "max_sequences",
    "median_steps",
    "median_test_loss",
    "min_test_loss",
    "max_test_loss",
    "baseline_loss",
)
RUN_COLUMNS = (
    "name",
    "status",
    "attempts",
    "task",
    "cell",
    "seq_len",
    "seed",
    "solved",
    "test_loss",
    "baseline_loss",
    "test_error_rate",
    "steps",
    "sequences",
    "wall_s",
    "stopped",
    "run_dir",
)


def _csv(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(["" if v is None else v for v in r] for r in rows)
    return buf.getvalue()


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def write_sweep_report(out: str | Path, title: str | None = None) -> tuple[Path, Path]:
    """report.html, runs.csv and curves.csv in the sweep directory `out`; returns the HTML and runs.csv paths."""
    from .ledger import status_rows

    out = Path(out)
    rows = status_rows(out)
    pts = curves(rows)
    fields = series_fields([r["config"] for r in rows])
    table = [[getattr(p, c) for c in CURVE_COLUMNS] for p in pts]
    _io.write_text(out / "curves.csv", _csv(CURVE_COLUMNS, table))
    run_table = [
        [r["config"].get(c) if c in ("task", "cell", "seq_len", "seed") else r.get(c) for c in RUN_COLUMNS]
        for r in rows
    ]
    _io.write_text(out / "runs.csv", _csv(RUN_COLUMNS, run_table))
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    html = env.from_string(_PAGE).render(
        title=title or f"sweep {out.name}",
        counts=", ".join(f"{n} {s}" for s, n in counts.items()),
        fields=", ".join(fields),
        images=plots(pts) if pts else {"success": "", "sequences": "", "loss": ""},
        header=CURVE_COLUMNS,
        table=[[_fmt(v) for v in row] for row in table],
    )
    _io.write_text(out / "report.html", html)
    return out / "report.html", out / "runs.csv"
