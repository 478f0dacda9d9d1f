"""The look shared by every figure of every report: layout, colours, ticks, numbers as text.

* Layout: matplotlib's constrained layout, so titles, labels and colorbars never overlap.
* Colour: a run keeps one colour in every figure of a report (`run_color`); a gate, a Jacobian
  part and a cell family keep theirs (`GATE_COLORS`, `PART_COLORS`, `cell_color`).
* Ticks: at most a handful per axis (`thin`), whatever the number of rows of a heat map.
* Numbers: `sci` writes 3e−41, and a value below `TINY` (float64's range, where a norm that
  really vanished ends) as "below 1e−300" rather than as 0.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter, NullLocator

TINY = 1e-300  # below this a float64 norm has underflowed (or is about to): shown as "below 1e−300"
MINUS = "−"

RC: Any = {  # matplotlib settings for every report figure (a dict of rcParams)
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.framealpha": 0.85,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.dpi": 110,
    "savefig.dpi": 110,
}

_TAB10 = plt.get_cmap("tab10")
RUN_COLORS = [_TAB10(i) for i in range(_TAB10.N)]
GATE_COLORS = {
    "i": "tab:blue",
    "f": "tab:green",
    "g": "tab:purple",
    "o": "tab:orange",
    "r": "tab:red",
    "z": "tab:cyan",
    "n": "tab:purple",
    "h": "tab:blue",
}
PART_COLORS = {"cec": "tab:green", "c": "tab:orange", "state": "tab:blue", "remainder": "tab:red"}
CELL_COLORS = {"rnn": "tab:blue", "lstm": "tab:orange", "gru": "tab:purple"}


def run_color(i: int) -> Any:
    """The colour of the report's i-th run, the same in every figure."""
    return RUN_COLORS[i % len(RUN_COLORS)]


def cell_color(cell: str, fallback: int = 0) -> Any:
    """A cell family's colour (by the first word of its label), else the fallback run colour."""
    return CELL_COLORS.get(cell.split(" ")[0].lower(), run_color(fallback))


def gate_color(gate: str, fallback: int = 0) -> Any:
    return GATE_COLORS.get(gate, run_color(fallback))


def panels(n: int, width: float = 4.0, height: float = 3.0, cols: int = 3) -> tuple[Figure, list[Any]]:
    """A constrained-layout figure with n axes, at most `cols` to a row; spare cells are removed."""
    cols = max(1, min(n, cols))
    rows = -(-n // cols)
    with plt.rc_context(RC):  # a Figure outside pyplot's registry: freed with its last reference
        fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
        axes = fig.subplots(rows, cols, squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        fig.delaxes(ax)
    for ax in flat[:n]:
        style_axes(ax)
    return fig, flat[:n]


def style_axes(ax: Any) -> None:
    """The RC look on axes made outside `panels` (rc_context applies at creation only)."""
    ax.grid(True, alpha=0.25)
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.tick_params(labelsize=7)


def thin(ax: Any, axis: str = "both", n: int = 6) -> None:
    """At most about n ticks on a linear axis (integers only where the data are counts)."""
    for which in ("x", "y") if axis == "both" else (axis,):
        a = ax.xaxis if which == "x" else ax.yaxis
        if a.get_scale() == "linear":
            a.set_major_locator(MaxNLocator(nbins=n, integer=True))


def log_axis(ax: Any, values: Sequence[float], axis: str = "y") -> None:
    """A log axis whose labels read as numbers: 1, 2, 5 per decade over a short range (0.2, 0.5, 1),
    the decades alone over a long one; no minor labels (6×10⁻² beside 7×10⁻² collide)."""
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    a = ax.yaxis if axis == "y" else ax.xaxis
    pos = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    short = bool(pos) and math.log10(max(pos) / min(pos)) < 2.5
    a.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if short else (1.0,), numticks=8))
    a.set_major_formatter(FuncFormatter(lambda v, _: sci(v, 1)))
    a.set_minor_locator(NullLocator() if short else LogLocator(base=10, subs="auto", numticks=12))
    a.set_minor_formatter(NullFormatter())


def spans_decades(values: Sequence[float], decades: float = 2.0) -> bool:
    """True where the positive values span more than `decades` powers of ten: draw them on a log axis."""
    pos = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    return bool(pos) and math.log10(max(pos) / min(pos)) > decades


def sci(x: float | None, digits: int = 2) -> str:
    """A number as a person reads it: 0.62, 3e−41, below 1e−300; – where there is none."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if math.isinf(x):
        return "∞" if x > 0 else MINUS + "∞"
    if x != 0 and abs(x) < TINY:
        return "below 1e−300"
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e4:
        return f"{x:.{digits}g}".replace("-", MINUS)
    mant, exp = f"{x:.{max(digits - 1, 0)}e}".split("e")
    mant = mant.rstrip("0").rstrip(".") if "." in mant else mant
    return f"{mant}e{int(exp)}".replace("-", MINUS)


def ratio(x: float | None) -> str:
    """A ratio of norms: like `sci`, but an exact 0 is an underflow, shown as "below 1e−300"."""
    if x == 0:
        return "below 1e−300"
    return sci(x)


def from_log10(decades: float | None) -> str:
    """10^decades as text, for a norm kept as a logarithm: 10^−350 is shown, never rounded to 0."""
    if decades is None or math.isnan(decades):
        return "–"
    if decades > -300:
        return sci(10.0**decades)
    return f"1e{round(decades)}".replace("-", MINUS)


def percent(x: float | None) -> str:
    if x is None or math.isnan(x):
        return "–"
    return f"{100 * x:.0f} %" if x == 0 or x >= 0.01 else f"{100 * x:.1g} %"


def num(x: float | None, decimals: int = 3) -> str:
    """A fixed-point number with a true minus sign: −0.475."""
    return "–" if x is None or math.isnan(x) else f"{x:.{decimals}f}".replace("-", MINUS)


def png(fig: Figure) -> str:
    """The figure as base64 PNG."""
    buf = io.BytesIO()
    with plt.rc_context(RC):
        fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode()
