"""`bptt report`: one self-contained HTML file for one run or several side by side.

One template for every source — a training run, a demo, a diagnosis, a watch folder, a sweep
(`bptt.sweep.report`): a one-line verdict per run at the top, a table of contents, then the
sections that apply to these runs (a diagnosis has no loss curve and no training table).
Images are embedded as PNG data, there are no scripts and no external files, so the page opens
offline. Text that comes from users (run names, settings) goes through Jinja2's autoescaping.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from .. import _io
from .._checks import InputError
from .._version import __version__
from .data import RunData, far_over_near, load_run
from .plots import Plot, render_all
from .style import percent, ratio, sci

__all__ = ["Section", "far_over_near", "render", "render_page", "verdict", "write_report"]

VANISHING, EXPLODING = 1e-2, 1e2  # far/near ratios read as vanishing or exploding


@dataclass(frozen=True)
class Section:
    """One part of a report page: paragraphs, a figure, a table, collapsed details, in that order."""

    key: str
    title: str
    paragraphs: list[str] = field(default_factory=list)
    plot: Plot | None = None
    columns: list[str] = field(default_factory=list)
    rows: list[dict[str, str]] = field(default_factory=list)
    details: list[tuple[str, str, list[tuple[str, str]]]] = field(default_factory=list)  # (id, name, rows)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Headline:
    """A run's line at the top of the page: its name, its anchor, its verdict."""

    name: str
    anchor: str
    verdict: str
    good: bool | None = None


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        if math.isnan(x):
            return "–"
        return f"{x:.{digits}g}"
    return str(x)


def anchor(name: str) -> str:
    return "run-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "x")


def gradient_reading(run: RunData) -> str:
    """'vanishing: 2e−4 at distance 10 of its value at distance 0', or exploding, or neither."""
    distance, r = far_over_near(run.final)
    if distance is None:
        return ""
    if r is None:
        return "the gradient at the loss is 0 or not finite"
    word = (
        "vanishing" if r < VANISHING else "exploding" if r > EXPLODING else "neither vanishing nor exploding"
    )
    return f"gradient {word}: at distance {distance} it is {ratio(r)} of its value at distance 0"


def verdict(run: RunData) -> str:
    """One line: solved or not, vanishing or exploding, the horizon, clipping and skipped steps."""
    s, f = run.summary or {}, run.final
    parts = []
    if run.kind == "training":
        if s.get("solved") is not None:
            solved = "solved" if s["solved"] else "not solved"
            parts.append(
                f"{solved} ({s.get('task', 'task')}, T = {s.get('seq_len')}: test loss {sci(s.get('test_loss'))} "
                f"against chance {sci(s.get('baseline_loss'))})"
            )
        if s.get("stopped") == "nonfinite":
            parts.append(f"stopped at a non-finite gradient after {s.get('steps')} steps")
    elif f is not None:
        what = f"{f.cell}, {f.batch} sequence{'s' if f.batch != 1 else ''} of {f.steps} steps"
        if run.kind == "watch":
            what += f", {len(run.snapshots)} snapshot{'s' if len(run.snapshots) != 1 else ''}"
            if run.snapshots and run.snapshots[-1].step is not None:
                what += f" (latest: step {run.snapshots[-1].step})"
        parts.append(what)
    parts.append(gradient_reading(run))
    if f is not None:
        parts.append(f"horizon {f.horizon} step{'s' if f.horizon != 1 else ''}")
    if run.metrics:
        clipped = sum(bool(m["clipped"]) for m in run.metrics)
        parts.append(
            f"clipping {clipped} of {len(run.metrics)} logged steps ({percent(clipped / len(run.metrics))})"
        )
    if run.kind == "training" and s.get("skipped_steps") is not None:
        parts.append(
            f"{s['skipped_steps']} steps skipped"
            + (" (too many: failed)" if s.get("too_many_skipped") else "")
        )
    if run.kind != "training" and f is not None and f.saturation:
        sat = [f"{g} {percent(v)}" for g, v in f.saturation.items() if v is not None]
        if sat:
            parts.append("saturated: " + ", ".join(sat))
    return " · ".join(p for p in parts if p)


def summary_row(run: RunData) -> dict[str, str]:
    s, f = run.summary or {}, run.final
    distance, r = far_over_near(f)
    ly = f.lyapunov if f is not None else None
    common_tail = {
        "gradient far/near": f"{ratio(r)} at distance {distance}" if distance is not None else "–",
        "horizon": _fmt(f.horizon if f else None),
        "λ_max": _fmt(ly.max if ly else None, 3)
        + (f" ± {_fmt(ly.max_stderr, 2)}" if ly is not None and ly.max_stderr is not None else ""),
    }
    if run.kind != "training":
        return {
            "run": run.name,
            "cell": _fmt(f.cell if f else None),
            "T": _fmt(f.steps if f else None),
            "sequences": _fmt(f.batch if f else None),
            "loss": _fmt(f.loss if f else None),
            **common_tail,
        }
    stopped = s.get("stopped")
    return {
        "run": run.name,
        "task": f"{s.get('task', '–')} ({s.get('protocol', '–')})" if s else "–",
        "cell": run.label.split(" · ", 1)[-1] if s else _fmt(f.cell if f else None),
        "T": _fmt(s.get("seq_len") or (f.steps if f else None)),
        "steps": _fmt(s.get("steps")) + (" (stopped: non-finite)" if stopped == "nonfinite" else ""),
        "skipped": _fmt(s.get("skipped_steps"))
        + (" (too many: failed)" if s.get("too_many_skipped") else ""),
        "test loss": _fmt(s.get("test_loss")),
        "chance": _fmt(s.get("baseline_loss")),
        "solved": _fmt(s.get("solved")),
        **common_tail,
    }


def guard_sentence(report: dict[str, Any]) -> str:
    """What the non-finite guard did and found, as one sentence."""
    from ..training.guard import describe

    did = (
        "stopped this run"
        if report.get("policy", "stop") == "stop"
        else "skipped a step (the last one it skipped)"
    )
    return f"the non-finite guard {did}: {describe(report)}."


def bound_rows(runs: Sequence[RunData]) -> list[dict[str, str]]:
    """The Elman bound's numbers, for the layers where it applies (a cell with one activation γ)."""
    rows = []
    for run in runs:
        for b in run.final.bounds if run.final else []:
            if b.gamma is None:
                continue
            rows.append(
                {
                    "run": run.name,
                    "layer": b.layer,
                    "cell": b.cell,
                    "γ": _fmt(b.gamma),
                    "1/γ": _fmt(b.threshold),
                    "λ1 (σ_max of W_hh)": _fmt(b.lambda1),
                    "verdict (λ1)": b.verdict,
                    "ρ (max |eig W_hh|)": _fmt(b.spectral_radius),
                    "the same reading with ρ in place of λ1": b.eigen_verdict or "–",
                }
            )
    return rows


def gated_sentences(runs: Sequence[RunData]) -> list[str]:
    """For the cells where λ1 of the stacked weight matrix bounds nothing: what applies instead."""
    out = []
    for run in runs:
        f = run.final
        if f is None:
            continue
        gated = [b for b in f.bounds if b.gamma is None]
        if not gated:
            continue
        b = gated[0]
        forget = f" The largest forget gate is {sci(b.max_forget)}." if b.max_forget is not None else ""
        sat = ", ".join(f"{g} {percent(v)}" for g, v in f.saturation.items() if v is not None)
        blocks = ""
        if b.gate_lambda1:
            per_gate = ", ".join(f"{g} {_fmt(v)}" for g, v in b.gate_lambda1.items())
            blocks = f" Per gate block of W_hh, λ1 is {per_gate}."
        measured = f" Along these inputs, {b.measured_verdict}." if b.measured_verdict else ""
        out.append(
            f"{run.name} ({b.cell}): the Elman bound γ·λ1 does not apply to a gated cell — its step "
            "Jacobian is shaped by the gates, not by the largest singular value of the stacked weight "
            "matrix. What applies instead is measured: the Jacobian product against distance "
            f"and the gates' saturation ({sat or 'not measured'}).{blocks}{measured}{forget}"
        )
    return out


def settings(run: RunData) -> list[tuple[str, str]]:
    cfg = (run.config or {}).get("train") or (run.config or {})
    return [(k, _fmt(v)) for k, v in cfg.items() if not isinstance(v, dict)] + [
        (f"{k}.{kk}", _fmt(vv)) for k, v in cfg.items() if isinstance(v, dict) for kk, vv in v.items()
    ]


def _drop_empty(columns: list[str], rows: list[dict[str, str]]) -> list[str]:
    """The columns where some row has a value (a diagnosis has no chance level)."""
    return [c for c in columns if c == "run" or any(r.get(c, "–") not in ("–", "") for r in rows)]


def sections(runs: Sequence[RunData]) -> list[Section]:
    """The sections that apply to these runs, in reading order."""
    rows = [summary_row(r) for r in runs]
    columns = list(dict.fromkeys(c for r in rows for c in r))
    out = [
        Section(
            "summary",
            "Summary",
            columns=_drop_empty(columns, rows),
            rows=rows,
            paragraphs=[
                "“gradient far/near” is ‖∂L/∂h_k‖ at the longest distance from the loss relative to "
                "distance 0 (layer 0, mean over the traced sequences); the horizon is how far back "
                "each loss term's gradient reaches (1e−3 of its largest)."
            ],
            warnings=[f"{r.name}: {guard_sentence(r.nonfinite)}" for r in runs if r.nonfinite],
        )
    ]
    for p in render_all(list(runs)):
        title = p.title if len(runs) == 1 or p.key != "jacobian" else "Jacobian products, side by side"
        out.append(Section(p.key, title, plot=p))
    bounds, gated = bound_rows(runs), gated_sentences(runs)
    if bounds or gated:
        notes = []
        if bounds:
            notes.append(
                "For the Elman RNN, ‖∂h_t/∂h_{t−1}‖ ≤ γ·λ1: λ1 < 1/γ guarantees vanishing, λ1 > 1/γ makes "
                "exploding possible. The bound needs the largest singular value λ1; the largest "
                "eigenvalue ρ can be below 1/γ while gradients still grow."
            )
        out.append(
            Section(
                "bounds",
                "Bounds",
                columns=list(bounds[0]) if bounds else [],
                rows=bounds,
                paragraphs=notes + gated,
            )
        )
    out.append(Section("settings", "Settings", details=[(anchor(r.name), r.name, settings(r)) for r in runs]))
    return out


def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("bptt.reports", "templates"), autoescape=select_autoescape(["html", "j2"])
    )


def render_page(title: str, headlines: Sequence[Headline], body: Sequence[Section], meta: str = "") -> str:
    """The one template of every report: title, a verdict per run, contents, the sections."""
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            title=title,
            meta=meta,
            headlines=headlines,
            sections=body,
            version=__version__,
            created=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        )
    )


KINDS = {"training": "training run", "diagnosis": "diagnosis", "watch": "watched run"}


def render(runs: Sequence[RunData], title: str = "bptt report") -> str:
    """The report of these runs as HTML text."""
    for i, r in enumerate(runs):
        r.color = i
    kinds = sorted({KINDS[r.kind] for r in runs})
    n = len(runs)
    meta = f"{n} {' and '.join(kinds)}{'s' if n != 1 and len(kinds) == 1 else ''}"
    headlines = [
        Headline(
            r.name,
            anchor(r.name),
            verdict(r),
            (r.summary or {}).get("solved") if r.kind == "training" else None,
        )
        for r in runs
    ]
    return render_page(title, headlines, sections(runs), meta)


def write_report(run_dirs: Sequence[str | Path], out: str | Path, title: str = "bptt report") -> Path:
    """Read the runs and write the report to `out` (atomically); returns the path."""
    if not run_dirs:
        raise InputError("expected at least one run directory")
    runs = [load_run(p) for p in run_dirs]
    names = [r.name for r in runs]
    for i, r in enumerate(runs):  # two runs with the same folder name stay apart
        if names.count(r.name) > 1:
            r.name = f"{r.name} ({i + 1})"
    out = Path(out)
    _io.write_text(out, render(runs, title))
    return out
