"""The report's figures, each with a caption computed from the runs it shows.

Every figure function takes the report's runs and returns a `Drawn` (the figure and its caption)
or None where no run has the data. A caption says what this figure shows for these runs, with
their numbers ("at distance 10 the gradient is 2e−4 of its value at distance 0"), never a fixed
sentence that the data could contradict. The look comes from `style`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter
from matplotlib.transforms import blended_transform_factory

from ..diagnostics.summary import LyapunovRecord, SplitRecord, Summary
from . import style
from .data import RunData, far_over_near
from .style import from_log10, percent, ratio, sci

LOG10E = 1 / math.log(10)
UNDERFLOW = "below 1e−300 (underflow)"
GATE_NAMES = {"h": "tanh output h"}


@dataclass(frozen=True)
class Drawn:
    """A figure and what it shows for these runs."""

    figure: Figure
    caption: str


@dataclass(frozen=True)
class Plot:
    key: str
    title: str
    caption: str
    png: str  # base64


def _nan(xs: Sequence[float | None]) -> list[float]:
    """JSON's None (a value that was not finite) as NaN, which matplotlib leaves out."""
    return [x if x is not None else math.nan for x in xs]


def _log10(xs: Sequence[float | None]) -> list[float]:
    return [x * LOG10E for x in _nan(xs)]


def _by_distance(
    distance: Sequence[float | None], values: Sequence[float]
) -> tuple[list[float], list[float]]:
    """(distances, values) in order of distance, without the NaNs: ready for ax.plot."""
    pts = sorted((d, v) for d, v in zip(distance, values, strict=True) if d is not None and not math.isnan(v))
    return [d for d, _ in pts], [v for _, v in pts]


def _at_far(distance: Sequence[float | None], values: Sequence[float]) -> tuple[int, float] | None:
    """(the longest distance with a value, the value there)."""
    d, v = _by_distance(distance, values)
    return (int(d[-1]), v[-1]) if d else None


def _join(parts: Sequence[str]) -> str:
    return "; ".join(p for p in parts if p)


def _scale(ax: Any, values: Sequence[float], axis: str = "y") -> None:
    """A log axis where the positive values span more than a decade, else a linear one; major tick
    labels only (minor labels such as 6×10⁻² collide)."""
    a = ax.yaxis if axis == "y" else ax.xaxis
    if style.spans_decades(values, 1.0):
        style.log_axis(ax, values, axis)
    else:
        a.set_major_locator(MaxNLocator(nbins=5))


def _underflow_rug(ax: Any, xs: Sequence[float], color: Any) -> bool:
    """Points whose value underflowed to 0 drawn as ▼ on the bottom edge (a log axis has no 0)."""
    if not xs:
        return False
    tr = blended_transform_factory(ax.transData, ax.transAxes)
    ax.plot(xs, [0.0] * len(xs), "v", color=color, ms=4, transform=tr, clip_on=False, label=UNDERFLOW)
    return True


def _legend(ax: Any, **kw: Any) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kw)


T = TypeVar("T")


def _each(
    items: Sequence[T], draw: Callable[[T, Any], str], caption: str, width: float = 4.0
) -> Drawn | None:
    """One panel per item (a run, or a run with what it shows), or None where there are none.

    `draw(item, ax)` draws an item on its panel and returns what the caption says of it ("" for
    nothing); the figure's caption is `caption` followed by these parts.
    """
    if not items:
        return None
    fig, axes = style.panels(len(items), width=width)
    parts = [draw(item, ax) for item, ax in zip(items, axes, strict=True)]
    return Drawn(fig, caption + _join(parts) + ".")


# ---- training -------------------------------------------------------------------------------


def loss_curves(runs: list[RunData]) -> Drawn | None:
    runs = [r for r in runs if r.metrics]
    if not runs:
        return None
    fig, (ax,) = style.panels(1, width=8, height=3.4)
    baselines = [r.summary["baseline_loss"] for r in runs if r.summary and r.summary.get("baseline_loss")]
    top = 30 * max(baselines) if baselines else None  # a diverging run would flatten every other curve
    parts, values, off_scale = [], [], False
    for r in runs:
        c = style.run_color(r.color)
        pts = [
            (m["step"], m["loss"]) for m in r.metrics if m["loss"] is not None and math.isfinite(m["loss"])
        ]
        if top is not None:
            over = [(s, top) for s, v in pts if v > top]
            if over:
                off_scale = True
                ax.plot([s for s, _ in over], [top] * len(over), "^", color=c, ms=5, clip_on=False)
            pts = [(s, min(v, top)) for s, v in pts]
        if pts:
            ax.plot([s for s, _ in pts], [v for _, v in pts], color=c, lw=1.2, alpha=0.85, label=r.name)
            values += [v for _, v in pts]
        tests = [(m["step"], m["test_loss"]) for m in r.metrics if m["test_loss"] is not None]
        if tests:
            ax.plot([s for s, _ in tests], [v for _, v in tests], "o", color=c, ms=4)
            values += [v for _, v in tests]
        s = r.summary or {}
        base, test = s.get("baseline_loss"), s.get("test_loss")
        if base is not None:
            ax.axhline(base, color=c, ls="--", lw=0.9)
            values.append(base)
        if test is not None and base:
            parts.append(
                f"{r.name}: test loss {sci(test)} against chance {sci(base)} ({sci(test / base)}× chance)"
            )
        if r.nonfinite:
            ax.plot(
                [r.nonfinite["step"]], [top or (pts[-1][1] if pts else 1.0)], "x", color="red", ms=9, mew=2
            )
    _scale(ax, values)
    style.thin(ax, "x")
    ax.set_xlabel("training step")
    ax.set_ylabel("loss" + (" (▲ off the scale)" if off_scale else ""))
    _legend(ax, loc="best")
    return Drawn(
        fig,
        "Training loss (line), test loss (dots) and each run's chance level (dashed). " + _join(parts) + ".",
    )


def _clip_rate(ax: Any, steps: list[int], clipped: list[bool], color: Any, bins: int = 40) -> None:
    """Clipping as a rate: the fraction of steps clipped in each of up to `bins` windows, drawn as a
    strip along the bottom 15 % of the axes (full height = every step clipped)."""
    n = len(steps)
    width = max(1, -(-n // bins))
    edges, rates = [], []
    for k in range(0, n, width):
        chunk = clipped[k : k + width]
        edges.append(steps[k])
        rates.append(sum(chunk) / len(chunk))
    edges.append(steps[-1] + (steps[-1] - steps[-2] if n > 1 else 1))
    for x0, x1, rate in zip(
        edges[:-1], edges[1:], rates, strict=True
    ):  # axvspan: axes-fraction heights, data limits untouched
        if rate:
            ax.axvspan(x0, x1, ymin=0, ymax=0.15 * rate, color=color, alpha=0.35, lw=0)


def grad_norms(runs: list[RunData]) -> Drawn | None:
    def draw(r: RunData, ax: Any) -> str:
        pts = [
            (m["step"], m["grad_norm"])
            for m in r.metrics
            if m["grad_norm"] is not None and math.isfinite(m["grad_norm"]) and m["grad_norm"] > 0
        ]
        if pts:
            ax.plot([s for s, _ in pts], [v for _, v in pts], color=style.run_color(r.color), lw=1)
        steps = [int(m["step"]) for m in r.metrics]
        fired = [bool(m["clipped"]) for m in r.metrics]
        n_fired = sum(fired)
        if n_fired:
            _clip_rate(ax, steps, fired, "red")
            ax.plot([], [], color="red", alpha=0.35, lw=6, label=f"clipped: {n_fired} of {len(steps)} steps")
        part = (
            f"{r.name}: ‖∂L/∂θ‖ from {sci(min(v for _, v in pts))} to {sci(max(v for _, v in pts))}"
            if pts
            else f"{r.name}: no finite gradient norm"
        )
        part += (
            f", clipping fired at {n_fired} of {len(steps)} logged steps ({percent(n_fired / len(steps))})"
        )
        if r.nonfinite:
            ax.axvline(r.nonfinite["step"], color="red", ls=":", lw=1.5, label="non-finite: stopped")
            part += f", the guard stopped the run at step {r.nonfinite['step']}"
        _scale(ax, [v for _, v in pts])
        style.thin(ax, "x")
        ax.set_title(r.name)
        ax.set_xlabel("training step")
        ax.set_ylabel(r"$\|\partial L/\partial\theta\|$ before clipping")
        _legend(ax, loc="upper right")
        return part

    return _each(
        [r for r in runs if r.metrics],
        draw,
        "The gradient norm before clipping at every logged step; the red strip at the bottom is the "
        "fraction of steps clipped (full height: every step). ",
    )


# ---- the gradient against distance ----------------------------------------------------------


def _snapshots(r: RunData) -> list[Summary]:
    return r.snapshots or ([r.final] if r.final else [])


def gradient_vs_distance(runs: list[RunData]) -> Drawn | None:
    cmap = plt.get_cmap("viridis")

    def draw(r: RunData, ax: Any) -> str:
        snaps = _snapshots(r)
        picks = snaps if len(snaps) <= 6 else [snaps[round(j * (len(snaps) - 1) / 5)] for j in range(6)]
        many = len(picks) > 1
        values: list[float] = []
        for j, s in enumerate(picks):
            color = cmap(0.9 * j / (len(picks) - 1)) if many else style.run_color(r.color)
            dh = s.dh_mean[0]
            pts = sorted(
                (d, v) for d, v in zip(s.distance, dh, strict=True) if d is not None and v is not None
            )
            pos = [(d, v) for d, v in pts if v > 0]
            if pos:
                label = f"step {s.step}" if many and s.step is not None else None
                ax.plot([d for d, _ in pos], [v for _, v in pos], color=color, lw=1.3, label=label)
                values += [v for _, v in pos]
            _underflow_rug(ax, [d for d, v in pts if v == 0], color)
        if values:
            style.log_axis(ax, values)
        style.thin(ax, "x")
        ax.set_title(r.name)
        ax.set_xlabel("distance $k$ from the last step")
        ax.set_ylabel(r"$\|\partial L/\partial h_k\|$")
        _legend(ax, loc="best")
        d, rel = far_over_near(r.final or snaps[-1])
        return (
            f"{r.name}: at distance {d} the gradient is {ratio(rel)} of its value at distance 0"
            if d is not None
            else ""
        )

    runs = [r for r in runs if r.snapshots or r.final]
    over_training = any(len(_snapshots(r)) > 1 for r in runs)  # then a panel draws several snapshots
    how = (
        "Colours run from the first snapshot of training (dark) to the last (yellow). "
        if over_training
        else ""
    )
    return _each(
        runs,
        draw,
        "‖∂L/∂h_k‖, the gradient reaching the state k steps before the loss (layer 0, mean over the traced "
        "sequences), on a log axis where a straight falling line is exponential vanishing. " + how,
    )


def _relative_rows(r: RunData) -> tuple[list[list[float]], list[float]]:
    """Each snapshot's log10 ‖∂L/∂h_k‖ relative to its largest, by distance, and the distances."""
    rows: list[list[float]] = []
    distances: list[float] = []
    for s in r.snapshots:
        pts = sorted((d, v) for d, v in zip(s.distance, s.dh_mean[0], strict=True) if d is not None)
        top = max((v for _, v in pts if v), default=0.0)
        rows.append([math.log10(v / top) if v and top else (-300.0 if v == 0 else math.nan) for _, v in pts])
        if len(pts) > len(distances):
            distances = [d for d, _ in pts]
    width = min(len(row) for row in rows)
    return [row[:width] for row in rows], distances[:width]


def _reach(row: Sequence[float], distances: Sequence[float], below: float = -3.0) -> str:
    k = next((i for i, v in enumerate(row) if v < below), None)
    return (
        f"below 1e−3 of its largest from distance {int(distances[k])}"
        if k is not None
        else (f"above 1e−3 of its largest at every distance up to {int(distances[-1])}")
    )


def gradient_heatmap(runs: list[RunData]) -> Drawn | None:
    def draw(r: RunData, ax: Any) -> str:
        rows, distances = _relative_rows(r)
        finite = [v for row in rows for v in row if math.isfinite(v)]
        low = max(-300.0, math.floor(min(finite, default=-1.0)))
        im = ax.imshow(
            rows,
            aspect="auto",
            origin="lower",
            cmap="magma",
            vmin=min(low, -1.0),
            vmax=0,
            interpolation="nearest",
            extent=(distances[0] - 0.5, distances[-1] + 0.5, -0.5, len(rows) - 0.5),
        )
        ax.grid(False)
        steps = [s.step for s in r.snapshots]
        ax.yaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
        ax.yaxis.set_major_formatter(
            FuncFormatter(lambda y, _, steps=steps: str(steps[int(y)]) if 0 <= int(y) < len(steps) else "")
        )
        style.thin(ax, "x")
        ax.set_title(r.name)
        ax.set_xlabel("distance $k$ from the last step")
        ax.set_ylabel("training step")
        ax.figure.colorbar(im, ax=ax, label=r"$\log_{10}$ of $\|\partial L/\partial h_k\|$ / largest")
        first, last = r.snapshots[0], r.snapshots[-1]
        early, late = _reach(rows[0], distances), _reach(rows[-1], distances)
        return (
            f"{r.name}: at every snapshot the gradient is {late}"
            if early == late
            else f"{r.name}: at step {first.step} the gradient is {early}, at step {last.step} {late}"
        )

    return _each(
        [r for r in runs if len(r.snapshots) >= 2],
        draw,
        "‖∂L/∂h_k‖ at every snapshot of training (rows) against distance, as log10 of each snapshot's "
        "largest: dark is where the gradient does not reach. ",
        width=4.2,
    )


def jacobians(runs: list[RunData]) -> Drawn | None:
    finals = [(r, r.final) for r in runs if r.final and r.final.jacobian_log_state]
    if not finals:
        return None
    fig, (ax,) = style.panels(1, width=8, height=3.4)
    parts = []
    for r, f in finals:
        assert f.jacobian_log_state is not None
        d, v = _by_distance(f.distance, _log10(f.jacobian_log_state))
        ax.plot(d, v, color=style.run_color(r.color), lw=1.5, label=r.name)
        if d and d[-1] > 0:
            parts.append(
                f"{r.name}: {from_log10(v[-1])} at distance {int(d[-1])} "
                f"({sci(v[-1] / d[-1])} decades per step)"
            )
    style.thin(ax, "x")
    ax.set_xlabel("distance $k$ from the last step")
    ax.set_ylabel(r"$\log_{10}\,\|\partial s_{T-1}/\partial s_k\|$")
    _legend(ax, loc="best")
    return Drawn(
        fig,
        "The norm of the Jacobian product ∂s_{T−1}/∂s_k of the whole state, as log10 (mean over the first "
        "sequences), at the end: 0 means a perturbation k steps back arrives at full size. "
        + _join(parts)
        + ".",
    )


# ---- gates ----------------------------------------------------------------------------------


def _forget_mean(f: Summary) -> float | None:
    units = f.forget_unit_mean[0] if f.forget_unit_mean else []
    vals = [u for u in units if u is not None]
    return statistics.fmean(vals) if vals else None


def cec(runs: list[RunData]) -> Drawn | None:
    def draw(r: RunData, ax: Any) -> str:
        f = r.final
        assert f is not None
        ends: dict[str, tuple[int, float]] = {}
        for values, label, key in (
            (f.jacobian_log_cec, "carousel ∏ diag(f)", "cec"),
            (f.jacobian_log_c, r"$c \to c$ block", "c"),
            (f.jacobian_log_state, "whole state", "state"),
        ):
            if values is not None:
                ds, vs = _by_distance(f.distance, _log10(values))
                ax.plot(ds, vs, label=label, color=style.PART_COLORS[key], lw=1.5)
                if ds:
                    ends[key] = (int(ds[-1]), vs[-1])
        style.thin(ax, "x")
        ax.set_title(r.name)
        ax.set_xlabel("distance $k$ from the last step")
        ax.set_ylabel(r"$\log_{10}$ norm")
        _legend(ax, loc="lower left")
        part = ""
        if "cec" in ends:
            far, log_cec = ends["cec"]
            part = f"{r.name}: over {far} steps the carousel falls to {from_log10(log_cec)}"
            if "state" in ends:
                part += f", the whole state's Jacobian to {from_log10(ends['state'][1])}"
        fm = _forget_mean(f)
        if fm is not None and "cec" in ends:
            far = ends["cec"][0]
            part += (
                f"; the forget gates' mean is {fm:.2f}, so ∏ f shrinks roughly like {fm:.2f}^k "
                f"({fm:.2f}^{far} = {sci(fm**far)})"
            )
        return part

    return _each(
        [r for r in runs if r.is_lstm],
        draw,
        "The LSTM's carousel ∏ diag(f), which shrinks only through the forget gate and never exceeds 1, "
        "against the c→c block and the whole state's Jacobian (log10). ",
    )


def split(runs: list[RunData]) -> Drawn | None:
    def draw(item: tuple[RunData, SplitRecord], ax: Any) -> str:
        r, sp = item
        t = list(range(len(sp.forget)))
        fo, re = _nan(sp.forget), _nan(sp.remainder)
        ax.plot(t, fo, label=r"$\|\mathrm{diag}(f_t)\|$", color=style.PART_COLORS["cec"])
        ax.plot(t, re, label=r"remainder through $h_{t-1}$", color=style.PART_COLORS["remainder"])
        ax.axhline(1.0, color="grey", lw=0.8, ls=":")
        _scale(ax, fo + re + [1.0])
        style.thin(ax, "x")
        ax.set_title(r.name)
        ax.set_xlabel("time step $t$")
        ax.set_ylabel(r"norm of a part of $\partial c_t/\partial c_{t-1}$")
        _legend(ax, loc="best")
        fv, rv = [v for v in fo if not math.isnan(v)], [v for v in re if not math.isnan(v)]
        if not (fv and rv):
            return ""
        return (
            f"{r.name}: ‖diag(f_t)‖ is {sci(statistics.fmean(fv))} on average, the remainder "
            f"{sci(statistics.fmean(rv))}, above 1 at {sum(v > 1 for v in rv)} of {len(rv)} steps"
        )

    return _each(
        [(r, r.final.split) for r in runs if r.final and r.final.split],
        draw,
        "Each step's ∂c_t/∂c_{t−1} split into diag(f_t), which cannot exceed 1 (dotted), and the rest "
        "through h_{t−1}, which carries W_hh and can. ",
    )


def _hist_stats(counts: Sequence[float | None]) -> tuple[float, float]:
    """(approximate mean from the 20 bins' centres, exact fraction in the top two bins, f ≥ 0.9)."""
    c = [x or 0.0 for x in counts]
    total = sum(c) or 1.0
    mean = sum((k + 0.5) / len(c) * x for k, x in enumerate(c)) / total
    return mean, sum(c[-2:]) / total


def forget_histograms(runs: list[RunData]) -> Drawn | None:
    edges = [k / 20 for k in range(21)]

    def draw(r: RunData, ax: Any) -> str:
        first = next((s for s in r.snapshots if s.forget_histogram), None)
        if first is r.final or (first is not None and first.step == (r.final.step if r.final else None)):
            first = None
        said = []
        for rec, label, color, fill in (
            (first, f"step {first.step}" if first else "", "tab:grey", True),
            (r.final, "end" if first else None, style.PART_COLORS["cec"], False),
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
                fill=fill,
                alpha=0.5 if fill else 1,
            )
            mean, high = _hist_stats(counts)
            said.append(f"{label or 'f'}: mean about {mean:.2f}, {percent(high)} at 0.9 or above")
        ax.set_xlim(0, 1)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.set_title(r.name)
        ax.set_xlabel("forget gate $f$")
        ax.set_ylabel("share of gate values")
        _legend(ax, loc="upper left")
        return f"{r.name}: " + ", ".join(said)

    return _each(
        [r for r in runs if r.final and r.final.forget_histogram],
        draw,
        "The distribution of the forget gates' values (layer 0): values near 1 keep the carousel open across "
        "long lags, values near 0 close it. ",
    )


def saturation(runs: list[RunData]) -> Drawn | None:
    def draw(r: RunData, ax: Any) -> str:
        f = r.final
        assert f is not None
        said = []
        for j, (gate, series) in enumerate(f.saturation_steps.items()):
            overall = f.saturation.get(gate)
            name = GATE_NAMES.get(gate, gate)
            ax.plot(
                range(len(series)),
                _nan(series),
                color=style.gate_color(gate, j),
                lw=1.3,
                label=f"{name}: {percent(overall)}",
            )
            said.append(f"{name} {percent(overall)}")
        ax.set_ylim(-0.02, 1.02)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        style.thin(ax, "x")
        ax.set_title(r.name)
        ax.set_xlabel("time step $t$")
        ax.set_ylabel("share saturated")
        _legend(ax, loc="upper right", title="overall")
        return f"{r.name} ({f.cell}): " + ", ".join(said) + " saturated"

    return _each(
        [r for r in runs if r.final and r.final.saturation_steps],
        draw,
        "The share of each gate's activations within 0.01 of its limits (layer 0) at every time step: "
        "a saturated gate passes (almost) no gradient through its own derivative. ",
    )


def lyapunov(runs: list[RunData]) -> Drawn | None:
    def draw(item: tuple[RunData, LyapunovRecord, int], ax: Any) -> str:
        r, ly, steps = item
        ex = _nan(ly.exponents)
        label = rf"exponents, $\lambda_{{\max}}$ = {style.num(ly.max)}" if ly.max is not None else "exponents"
        ax.plot(range(1, len(ex) + 1), ex, "o-", color=style.run_color(r.color), ms=3, label=label)
        ax.axhline(0, color="grey", lw=0.8)
        if ly.slope is not None:
            ax.axhline(
                ly.slope, color="black", ls="--", lw=1, label=f"measured decay slope {style.num(ly.slope)}"
            )
        style.thin(ax, "x")
        ax.set_title(r.name)
        ax.set_xlabel("exponent index")
        ax.set_ylabel(r"$\lambda$ (natural log per step)")
        _legend(ax, loc="lower left")
        if ly.max is None:
            return ""
        part = (
            f"{r.name}: λ_max = {style.num(ly.max)}, so a perturbation of the state changes like "
            f"e^({style.num(ly.max)}·k), "
            f"×{sci(math.exp(ly.max))} per step"
        )
        if ly.slope is not None:
            part += f"; the Jacobian's measured decay slope is {style.num(ly.slope)}"
        if ly.max_stderr is not None:
            part += f" (± {style.num(ly.max_stderr)}"
            part += (
                f" from {ly.steps} steps after a burn-in of {ly.burn_in})" if ly.steps is not None else ")"
            )
        if ly.warning:
            part += f"; warning: {ly.warning}"
        elif steps < 50:
            part += f" (from {steps} steps only: a rough estimate)"
        return part

    return _each(
        [(r, r.final.lyapunov, r.final.steps) for r in runs if r.final and r.final.lyapunov],
        draw,
        "The Lyapunov exponents of the recurrence along the traced inputs, largest first; the dashed line is "
        "the decay of the Jacobian product actually measured. ",
    )


FIGURES: list[tuple[str, str, Callable[[list[RunData]], Drawn | None]]] = [
    ("loss", "Loss against chance", loss_curves),
    ("gradnorm", "Gradient norm and clipping", grad_norms),
    ("distance", "Gradient against distance", gradient_vs_distance),
    ("heatmap", "Gradient over training", gradient_heatmap),
    ("jacobian", "Jacobian product against distance", jacobians),
    ("saturation", "Gate saturation", saturation),
    ("cec", "The Constant Error Carousel against the full Jacobian", cec),
    ("split", "diag(f) and the remainder", split),
    ("forget", "Forget gates", forget_histograms),
    ("lyapunov", "Lyapunov spectrum", lyapunov),
]


def draw_all(runs: list[RunData]) -> list[tuple[str, str, Drawn]]:
    """Every figure that applies to these runs, drawn: (key, title, Drawn)."""
    out = []
    for key, title, make in FIGURES:
        with plt.rc_context(style.RC):
            drawn = make(runs)
        if drawn is not None:
            out.append((key, title, drawn))
    return out


def render_all(runs: list[RunData]) -> list[Plot]:
    return [Plot(key, title, d.caption, style.png(d.figure)) for key, title, d in draw_all(runs)]
