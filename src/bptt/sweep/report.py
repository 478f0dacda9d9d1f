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

import csv
import io
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def figures(points: Sequence[Point]) -> dict[str, Any]:
    """The three figures (success, sequences, loss), one panel per task, each with a caption that
    states its numbers: `bptt.reports.plots.Drawn` by name."""
    import matplotlib.pyplot as plt

    from ..reports import style
    from ..reports.plots import Drawn

    tasks = sorted({p.task for p in points})
    series = sorted({p.series for p in points})
    colours = {s: style.cell_color(s, k) for k, s in enumerate(series)}
    if len({str(c) for c in colours.values()}) < len(series):  # two series of one cell: one colour each
        colours = {s: style.run_color(k) for k, s in enumerate(series)}
    out: dict[str, Any] = {}
    for what in ("success", "sequences", "loss"):
        with plt.rc_context(style.RC):
            fig, axes = style.panels(len(tasks), width=4.6, height=3.4)
            said: list[str] = []
            for ax, task in zip(axes, tasks, strict=True):
                chance: dict[int, float] = {}
                values: list[float] = []
                for s in series:
                    pts = sorted(
                        (p for p in points if p.series == s and p.task == task), key=lambda p: p.seq_len
                    )
                    if not pts:
                        continue
                    longest = pts[-1]
                    if what == "success":
                        xs = [p.seq_len for p in pts]
                        ax.plot(xs, [p.success_rate for p in pts], "o-", color=colours[s], label=s)
                        said.append(
                            f"{task}, {s}: {longest.solved} of {longest.runs} seeds solved at T = {longest.seq_len}"
                        )
                        continue
                    lo, mid, hi = (
                        ("min_sequences", "median_sequences", "max_sequences")
                        if what == "sequences"
                        else ("min_test_loss", "median_test_loss", "max_test_loss")
                    )
                    ok = [p for p in pts if getattr(p, mid) is not None]
                    if ok:
                        xs = [p.seq_len for p in ok]
                        ax.plot(xs, [getattr(p, mid) for p in ok], "o-", color=colours[s], label=s)
                        ax.fill_between(
                            xs,
                            [getattr(p, lo) for p in ok],
                            [getattr(p, hi) for p in ok],
                            color=colours[s],
                            alpha=0.15,
                        )
                        values += [getattr(p, k) for p in ok for k in (lo, mid, hi)]
                        last = ok[-1]
                        said.append(
                            f"{task}, {s}: median {style.sci(getattr(last, mid))} at T = {last.seq_len}"
                        )
                    elif what == "sequences":
                        said.append(f"{task}, {s}: no seed met the criterion")
                    if what == "loss":
                        chance.update(
                            {p.seq_len: p.baseline_loss for p in pts if p.baseline_loss is not None}
                        )
                if chance:
                    xs = sorted(chance)
                    ax.plot(xs, [chance[x] for x in xs], "k--", lw=1, label="chance")
                    values += list(chance.values())
                lengths = sorted({p.seq_len for p in points if p.task == task})
                if len(lengths) > 1 and lengths[-1] / max(lengths[0], 1) >= 10:
                    style.log_axis(ax, [float(t) for t in lengths], "x")
                else:
                    style.thin(ax, "x")
                ax.set_xlabel("sequence length $T$")
                ax.set_title(task)
                if what == "success":
                    ax.set_ylabel("share of seeds solved")
                    ax.set_ylim(-0.05, 1.05)
                else:
                    ax.set_ylabel(
                        "training sequences to the criterion" if what == "sequences" else "test loss"
                    )
                    if style.spans_decades(values, 1.0):
                        style.log_axis(ax, values)
                if ax.get_legend_handles_labels()[0]:
                    ax.legend(loc="best")
        out[what] = Drawn(fig, "; ".join(said) + "." if said else "No finished runs yet.")
    return out


def plots(points: Sequence[Point]) -> dict[str, str]:
    """The three figures as base64 PNGs, one panel per task."""
    from ..reports import style

    return {what: style.png(d.figure) for what, d in figures(points).items()}


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
    from ..reports.html import Section, render_page
    from ..reports.plots import Plot
    from ..reports.style import png

    drawn = figures(pts) if pts else {}
    titles = {
        "success": ("Success rate against T", "The share of seeds that met the task's criterion. "),
        "sequences": (
            "Training sequences to the criterion against T",
            "Median over the seeds that met the criterion; the band is their min–max. ",
        ),
        "loss": ("Test loss against T", "Median and min–max over seeds; dashed: the task's chance level. "),
    }
    body = [
        Section(what, title, plot=Plot(what, title, intro + drawn[what].caption, png(drawn[what].figure)))
        for what, (title, intro) in titles.items()
        if what in drawn
    ]
    body.append(
        Section(
            "table",
            "The table behind the plots",
            columns=list(CURVE_COLUMNS),
            rows=[{c: _fmt(v) for c, v in zip(CURVE_COLUMNS, row, strict=True)} for row in table],
            paragraphs=["Every run: runs.csv; this table: curves.csv."],
        )
    )
    meta = (
        f"{len(rows)} runs ({', '.join(f'{n} {s}' for s, n in counts.items())}); series: the settings that "
        f"vary across the grid other than T and the seed ({', '.join(fields) or 'none'}); spread over seeds"
    )
    html = render_page(title or f"sweep {out.name}", [], body, meta=meta)
    _io.write_text(out / "report.html", html)
    return out / "report.html", out / "runs.csv"
