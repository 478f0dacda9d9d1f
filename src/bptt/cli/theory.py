"""`bptt theory`: the seeds' closed forms, each checked against bptt's own measurement."""

from __future__ import annotations

import argparse

from . import args as a
from .base import Command, console


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", type=a.out_file, metavar="PATH", help="also write the claims as JSON to PATH")


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from .. import _io, theory

    out = console()
    with out.status("measuring the claims"):
        claims = theory.claims()
    table = Table(title="the seeds' closed forms, measured by bptt")
    for col in ("claim", "formula", "closed form", "measured", "rel. error", ""):
        table.add_column(col, justify="right" if col in ("closed form", "measured", "rel. error") else "left")
    for c in claims:
        table.add_row(
            c.name,
            c.formula,
            f"{c.closed_form:.10g}",
            f"{c.measured:.10g}",
            f"{c.rel_err:.1e}",
            "[green]✓[/]" if c.holds else "[red]✗[/]",
        )
    out.print(table)
    held = sum(c.holds for c in claims)
    out.print(f"{held} of {len(claims)} claims hold within their tolerance")
    if args.json:
        _io.write_json(args.json, [dict(c.__dict__, rel_err=c.rel_err, holds=c.holds) for c in claims])
        out.print(f"wrote {args.json}")
    return 0 if held == len(claims) else 1


COMMAND = Command(
    "theory",
    "print the seeds' closed forms, each checked against bptt's own measurement",
    "bptt theory",
    add_arguments,
    run,
)
