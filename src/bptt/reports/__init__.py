"""Reports: plots and one self-contained HTML page for one run or several side by side."""

from .data import RunData, load_run
from .html import render, write_report

__all__ = ["RunData", "load_run", "render", "write_report"]
