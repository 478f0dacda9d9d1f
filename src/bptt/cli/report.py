"""`bptt report`: one self-contained HTML report for one run or several side by side."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import args as a
from .base import Command, console


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "runs", nargs="+", metavar="RUN_DIR", help="run directories written by bptt train, demo or diagnose"
    )
    p.add_argument(
        "--out",
        type=a.out_file,
        default=None,
        help="the HTML file to write (default: report.html in the first run directory)",
    )
    p.add_argument("--title", type=a.text, default="bptt report", help="the page's title")


def run(args: argparse.Namespace) -> int:
    from ..reports import write_report

    out_path = args.out or Path(args.runs[0]) / "report.html"
    with console().status("drawing the report"):
        path = write_report(args.runs, out_path, args.title)
    console().print(f"wrote {path}")
    return 0


COMMAND = Command(
    "report",
    "one self-contained HTML report for one run or several side by side",
    "bptt report runs/demo/rnn-adding runs/demo/lstm-adding --out report.html",
    add_arguments,
    run,
)
