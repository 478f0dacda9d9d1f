"""`bptt report`: one self-contained HTML file for one run or several side by side.

Images are embedded as PNG data, there are no scripts and no external files, so the page opens
offline. Text that comes from users (run names, settings) goes through Jinja2's autoescaping.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from .. import _io
from .._checks import InputError
from .._version import __version__
from ..diagnostics.summary import Summary
from .data import RunData, load_run
from .plots import render_all


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


def far_over_near(final: Summary | None) -> tuple[int | None, float | None]:
    """(the longest distance, ‖∂L/∂h‖ there relative to distance 0), layer 0, mean over samples."""
    if final is None:
        return None, None
    d, dh = [x or 0.0 for x in final.distance], final.dh_mean[0]
    far = max(range(len(d)), key=lambda k: d[k])
    near = min(range(len(d)), key=lambda k: d[k])
    dh_near, dh_far = dh[near], dh[far]
    if not dh_near or dh_far is None:
        return int(d[far]), None
    return int(d[far]), dh_far / dh_near


def summary_row(run: RunData) -> dict[str, str]:
    s, f = run.summary or {}, run.final
    distance, ratio = far_over_near(f)
    bound = f.bounds[0] if f is not None and f.bounds else None
    ly = f.lyapunov if f is not None else None
    stopped = s.get("stopped")
    return {
        "run": run.name,
        "task": f"{s.get('task', '–')} ({s.get('protocol', '–')})" if s else "–",
        "cell": run.label.split(" · ", 1)[-1] if s else _fmt(f.cell if f else None),
        "T": _fmt(s.get("seq_len") or (f.steps if f else None)),
        "steps": _fmt(s.get("steps")) + (" (stopped: non-finite)" if stopped == "nonfinite" else ""),
        "skipped": (
            _fmt(s.get("skipped_steps")) + (" (too many: failed)" if s.get("too_many_skipped") else "")
            if s
            else "–"
        ),
        "test loss": _fmt(s.get("test_loss")),
        "chance": _fmt(s.get("baseline_loss")),
        "solved": _fmt(s.get("solved")) if s else "–",
        "gradient far/near": f"{_fmt(ratio, 3)} at distance {distance}" if distance is not None else "–",
        "horizon": _fmt(f.horizon if f else None),
        "verdict": bound.verdict if bound else "–",
        "λ_max": _fmt(ly.max if ly else None, 3),
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
    rows = []
    for run in runs:
        for b in run.final.bounds if run.final else []:
            rows.append(
                {
                    "run": run.name,
                    "layer": b.layer,
                    "cell": b.cell,
                    "γ": _fmt(b.gamma),
                    "1/γ": _fmt(b.threshold),
                    "λ1 (σ_max W_hh)": _fmt(b.lambda1),
                    "ρ (max |eig|)": _fmt(b.spectral_radius),
                    "verdict (λ1)": b.verdict,
                    "seed 001's reading (ρ)": b.eigen_verdict or "–",
                    "max forget gate": _fmt(b.max_forget),
                }
            )
    return rows


def settings(run: RunData) -> list[tuple[str, str]]:
    cfg = (run.config or {}).get("train") or (run.config or {})
    return [(k, _fmt(v)) for k, v in cfg.items() if not isinstance(v, dict)] + [
        (f"{k}.{kk}", _fmt(vv)) for k, v in cfg.items() if isinstance(v, dict) for kk, vv in v.items()
    ]


def render(runs: Sequence[RunData], title: str = "bptt report") -> str:
    env = Environment(
        loader=PackageLoader("bptt.reports", "templates"), autoescape=select_autoescape(["html", "j2"])
    )
    template = env.get_template("report.html.j2")
    rows = [summary_row(r) for r in runs]
    return template.render(
        title=title,
        runs=runs,
        summary_columns=list(rows[0]) if rows else [],
        summary=rows,
        plots=render_all(list(runs)),
        bounds=bound_rows(runs),
        settings={r.name: settings(r) for r in runs},
        nonfinite={r.name: guard_sentence(r.nonfinite) for r in runs if r.nonfinite},
        version=__version__,
        created=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )


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
