"""Sweeps that survive anything: a grid of `bptt train` runs, a SQLite ledger, process or Ray executors.

`points(axes, parse)` is the grid (the command line's parser is `bptt.cli.sweep.parse_train`); `run_sweep(grid, out, SweepOptions(...))` runs what is not
done yet; `write_sweep_report(out)` draws the curves against T. See `bptt sweep --help`.
"""

from .driver import EXECUTORS, SweepOptions, run_sweep
from .grid import (
    Axis,
    Point,
    axes_from_flags,
    axes_from_toml,
    config_dict,
    config_from_dict,
    config_key,
    points,
)
from .ledger import Ledger, open_existing, status_rows
from .report import curves, write_sweep_report
from .runner import run_one

__all__ = [
    "EXECUTORS",
    "Axis",
    "Ledger",
    "Point",
    "SweepOptions",
    "axes_from_flags",
    "axes_from_toml",
    "config_dict",
    "config_from_dict",
    "config_key",
    "curves",
    "open_existing",
    "points",
    "run_one",
    "run_sweep",
    "status_rows",
    "write_sweep_report",
]
