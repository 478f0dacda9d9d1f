"""The report's figures: matplotlib, rendered to PNG and embedded, each with a one-line caption."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from ..diagnostics.summary import Summary
from .data import RunData

_TAB10 = plt.get_cmap("tab10")
COLORS = [_TAB10(i) for i in range(_TAB10.N)]
LOG10E = 1 / math.log(10)


@dataclass(frozen=True)
class Plot:
    key: str
    title: str
    caption: str
    png: str  # base64


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _panels(n: int, width: float = 4.2, height: float = 3.0) -> tuple[Figure, list[Any]]:
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.axis("off")
    return fig, flat[:n]


def _nan(xs: list[float | None]) -> list[float]:
    """JSON's None (a value that was not finite) as NaN, which matplotlib leaves out."""
    return [x if x is not None else math.nan for x in xs]


def _log10(xs: list[float | None]) -> list[float]:
    return [x * LOG10E for x in _nan(xs)]


def _by_distance(distance: list[float | None], values: list[float]) -> tuple[Any, ...]:
    """(distances, values) in order of distance, without the NaNs: ready for ax.plot."""
    return tuple(
        zip(*sorted((d, v) for d, v in zip(distance, values, strict=True) if not math.isnan(v)), strict=True)
    )


def _dress(ax: Any, title: str, xlabel: str, ylabel: str | None = None, legend: bool = True) -> None:
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=8)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _color(i: int) -> Any:
    return COLORS[i % len(COLORS)]


def loss_curves(runs: list[RunData]) -> Figure | None:
    runs = [r for r in runs if r.metrics]
    if not runs:
        return None
    fig, ax = plt.subplots(figsize=(8, 3.6))
    baselines = [r.summary["baseline_loss"] for r in runs if r.summary and r.summary.get("baseline_loss")]
    top = 30 * max(baselines) if baselines else None  # a diverging run would flatten every other curve
    for i, r in enumerate(runs):
        pts = [
            (m["step"], m["loss"]) for m in r.metrics if m["loss"] is not None and math.isfinite(m["loss"])
        ]
        if top is not None:
            over = [(s, top) for s, v in pts if v > top]
            if over:
                ax.plot(*zip(*over, strict=True), "^", color=_color(i), ms=5, clip_on=False)
            pts = [(s, min(v, top)) for s, v in pts]
        if pts:
            ax.plot(*zip(*pts, strict=True), color=_color(i), lw=1, alpha=0.8, label=r.label)
        tests = [(m["step"], m["test_loss"]) for m in r.metrics if m["test_loss"] is not None]
        if tests:
            ax.plot(*zip(*tests, strict=True), "o", color=_color(i), ms=4)
        if r.summary and r.summary.get("baseline_loss") is not None:
            ax.axhline(r.summary["baseline_loss"], color=_color(i), ls="--", lw=1)
        if r.nonfinite:
            ax.plot(
                [r.nonfinite["step"]],
                [top or (pts[-1][1] if pts else 1.0)],
                "x",
                color="red",
                ms=10,
                mew=2,
                clip_on=False,
            )
    ax.set_yscale("log")
    if top is not None:
        ax.set_ylim(top=top)
    ax.set_xlabel("training step")
    ax.set_ylabel("loss (▲: off the scale)")
    if ax.get_legend_handles_labels()[0]:  # a run whose every step was skipped has no curve
        ax.legend(fontsize=8)
    return fig


def grad_norms(runs: list[RunData]) -> Figure | None:
    runs = [r for r in runs if r.metrics]
    if not runs:
        return None
    fig, axes = _panels(len(runs))
    for i, (r, ax) in enumerate(zip(runs, axes, strict=True)):
        pts = [
            (m["step"], m["grad_norm"])
            for m in r.metrics
            if m["grad_norm"] is not None and math.isfinite(m["grad_norm"]) and m["grad_norm"] > 0
        ]
        if pts:
            ax.plot(*zip(*pts, strict=True), color=_color(i), lw=1)
        fired = [
            (m["step"], m["grad_norm"])
            for m in r.metrics
            if m["clipped"] and m["grad_norm"] and math.isfinite(m["grad_norm"])
        ]
        if fired:
            ax.plot(*zip(*fired, strict=True), "|", color="red", ms=8, label=f"clipped ({len(fired)} logged)")
            ax.legend(fontsize=7)
        if r.nonfinite:
            ax.axvline(r.nonfinite["step"], color="red", ls=":", lw=1.5)
            ax.text(
                r.nonfinite["step"],
                ax.get_ylim()[1] if pts else 1,
                " non-finite",
                color="red",
                fontsize=7,
                va="top",
            )
        ax.set_yscale("log")
        _dress(ax, r.label, "training step", "‖∂L/∂θ‖ before clipping", legend=False)
    return fig


def _dh_snapshot(s: Summary) -> list[float | None]:
    return s.dh_mean[0]


def gradient_vs_distance(runs: list[RunData]) -> Figure | None:
    runs = [r for r in runs if r.snapshots or r.final]
    if not runs:
        return None
    fig, axes = _panels(len(runs))
    cmap = plt.get_cmap("viridis")
    for r, ax in zip(runs, axes, strict=True):
        snaps = r.snapshots or ([r.final] if r.final else [])
        picks = snaps if len(snaps) <= 6 else [snaps[round(j * (len(snaps) - 1) / 5)] for j in range(6)]
        for j, s in enumerate(picks):
            dh = _dh_snapshot(s)
            pts = [
                (d, v)
                for d, v in zip(s.distance, dh, strict=True)
                if d is not None and v is not None and v > 0
            ]
            if pts:
                label = f"step {s.step if s.step is not None else 'end'}"
                ax.plot(
                    *zip(*sorted(pts), strict=True),
                    color=cmap(j / max(1, len(picks) - 1)),
                    lw=1.2,
                    label=label,
                )
        ax.set_yscale("log")
        _dress(ax, r.label, "distance from the last step", "‖∂L/∂h_k‖")
    return fig


def gradient_heatmap(runs: list[RunData]) -> Figure | None:
    runs = [r for r in runs if len(r.snapshots) >= 2]
    if not runs:
        return None
    fig, axes = _panels(len(runs))
    for r, ax in zip(runs, axes, strict=True):
        rows = []
        for s in r.snapshots:
            d = [x or 0.0 for x in s.distance]
            order = sorted(range(len(d)), key=lambda k: d[k])
            dh = [_dh_snapshot(s)[k] for k in order]
            top = max((v for v in dh if v), default=1.0) or 1.0
            rows.append([math.log10(v / top) if v and v > 0 else -12.0 for v in dh])
        width = min(len(row) for row in rows)
        im = ax.imshow(
            [row[:width] for row in rows],
            aspect="auto",
            origin="lower",
            cmap="magma",
            vmin=-10,
            vmax=0,
            interpolation="nearest",
        )
        ax.set_yticks(range(len(r.snapshots)))
        ax.set_yticklabels([str(s.step) for s in r.snapshots], fontsize=6)
        _dress(ax, r.label, "distance from the last step", "training step", legend=False)
        fig.colorbar(im, ax=ax, label="log10 relative ‖∂L/∂h_k‖")
    return fig


def jacobians(runs: list[RunData]) -> Figure | None:
    finals = [
        (r, r.final, r.final.jacobian_log_state) for r in runs if r.final and r.final.jacobian_log_state
    ]
    if not finals:
        return None
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for i, (r, f, log_state) in enumerate(finals):
        ax.plot(
            *_by_distance(f.distance, _log10(log_state)),
            color=_color(i),
            lw=1.5,
            label=r.label,
        )
    ax.set_xlabel("distance k from the last step")
    ax.set_ylabel("log10 ‖∂s_{T−1}/∂s_k‖")
    ax.legend(fontsize=8)
    return fig


def cec(runs: list[RunData]) -> Figure | None:
    runs = [r for r in runs if r.is_lstm]
    if not runs:
        return None
    fig, axes = _panels(len(runs))
    for r, ax in zip(runs, axes, strict=True):
        f = r.final
        assert f is not None
        for values, label, color in (
            (f.jacobian_log_cec, "CEC ∏ diag(f)", "tab:green"),
            (f.jacobian_log_c, "c→c block", "tab:orange"),
            (f.jacobian_log_state, "whole state", "tab:blue"),
        ):
            if values is not None:
                ax.plot(*_by_distance(f.distance, _log10(values)), label=label, color=color, lw=1.5)
        _dress(ax, r.label, "distance from the last step", "log10 norm")
    return fig


def split(runs: list[RunData]) -> Figure | None:
    splits = [(r, r.final.split) for r in runs if r.final and r.final.split]
    if not splits:
        return None
    fig, axes = _panels(len(splits))
    for (r, sp), ax in zip(splits, axes, strict=True):
        t = list(range(len(sp.forget)))
        ax.plot(t, _nan(sp.forget), label="‖diag(f_t)‖", color="tab:green")
        ax.plot(t, _nan(sp.remainder), label="‖remainder through h_{t−1}‖", color="tab:red")
        ax.axhline(1.0, color="grey", lw=0.8, ls=":")
        ax.set_yscale("log")
        _dress(ax, r.label, "time step t")
    return fig


def forget_histograms(runs: list[RunData]) -> Figure | None:
    runs = [r for r in runs if r.final and r.final.forget_histogram]
    if not runs:
        return None
    fig, axes = _panels(len(runs))
    edges = [k / 20 for k in range(21)]
    for r, ax in zip(runs, axes, strict=True):
        first = next((s for s in r.snapshots if s.forget_histogram), None)
        for rec, label, color in (
            (first, f"step {first.step}" if first else "", "tab:grey"),
            (r.final, "end", "tab:green"),
        ):
            if rec is None or rec.forget_histogram is None:
                continue
            counts = rec.forget_histogram
            total = sum(c or 0 for c in counts) or 1
            ax.stairs(
                [(c or 0) / total for c in counts],
                edges,
                label=label,
                color=color,
                fill=color == "tab:grey",
                alpha=0.5 if color == "tab:grey" else 1,
            )
        _dress(ax, r.label, "forget gate f", "fraction")
    return fig


def lyapunov(runs: list[RunData]) -> Figure | None:
    spectra = [(r, r.final.lyapunov) for r in runs if r.final and r.final.lyapunov]
    if not spectra:
        return None
    fig, axes = _panels(len(spectra))
    for i, ((r, ly), ax) in enumerate(zip(spectra, axes, strict=True)):
        ex = _nan(ly.exponents)
        ax.plot(range(1, len(ex) + 1), ex, "o-", color=_color(i), ms=3)
        ax.axhline(0, color="grey", lw=0.8)
        if ly.slope is not None:
            ax.axhline(ly.slope, color="black", ls="--", lw=1, label=f"measured decay slope {ly.slope:.3f}")
        title = f"{r.label}: λ_max = {ly.max:.3f}" if ly.max is not None else r.label
        _dress(ax, title, "exponent index", "λ (log per step)", legend=ly.slope is not None)
    return fig


FIGURES: list[tuple[str, str, Callable[[list[RunData]], Figure | None], str]] = [
    (
        "loss",
        "Loss against chance",
        loss_curves,
        "Training loss (line) and test loss (dots) against each run's chance baseline (dashed): a run that never leaves its baseline has not learned the dependency.",
    ),
    (
        "gradnorm",
        "Gradient norm and clipping",
        grad_norms,
        "The gradient norm before clipping at every logged step; red ticks mark steps where clipping fired, a dotted line where the guard stopped the run.",
    ),
    (
        "distance",
        "Gradient against distance",
        gradient_vs_distance,
        "‖∂L/∂h_k‖ against the distance from the loss at several points in training (yellow = later): a straight falling line on this log scale is exponential vanishing.",
    ),
    (
        "heatmap",
        "Gradient over training",
        gradient_heatmap,
        "The same norms over all of training (log10, relative to each snapshot's largest): the dark region is how far back the gradient does not reach.",
    ),
    (
        "jacobian",
        "Jacobian products, side by side",
        jacobians,
        "‖∂s_{T−1}/∂s_k‖ at the end of training: the plain RNN's falls by orders of magnitude over distance where the LSTM's stays within a few.",
    ),
    (
        "cec",
        "The Constant Error Carousel against the full Jacobian",
        cec,
        "The LSTM's carousel ∏ diag(f) against the whole c→c and state Jacobians: the carousel shrinks only through the forget gate and never exceeds 1.",
    ),
    (
        "split",
        "diag(f) and the remainder",
        split,
        "Each step's ∂c_t/∂c_{t−1} split into diag(f_t), which cannot exceed 1, and the rest through h_{t−1}, which carries W_hh and can.",
    ),
    (
        "forget",
        "Forget gates",
        forget_histograms,
        "Forget-gate values early in training (grey) and at the end (green): mass near 1 keeps the carousel open across long lags.",
    ),
    (
        "lyapunov",
        "Lyapunov spectrum",
        lyapunov,
        "Lyapunov exponents of the recurrence along test inputs (natural log per step); λ_max < 0 shrinks gradients like e^(λ_max·d), and the dashed line is the decay actually measured.",
    ),
]


def render_all(runs: list[RunData]) -> list[Plot]:
    out = []
    for key, title, make, caption in FIGURES:
        fig = make(runs)
        if fig is not None:
            out.append(Plot(key, title, caption, _png(fig)))
    return out
