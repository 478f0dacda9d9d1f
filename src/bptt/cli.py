"""The `bptt` command line: every command with a help string on every flag and an example.

User mistakes (a missing file, an unknown task, a bad size) end in one line on stderr and exit
status 2, without a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.console import Console


def console() -> Console:
    """rich output; wide enough for the tables when written to a file or a pipe."""
    return Console(width=None if sys.stdout.isatty() else 150)


class UsageError(Exception):
    """A mistake in what the user asked for, reported as one line."""


@dataclass(frozen=True)
class Command:
    name: str
    summary: str
    example: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _shape(text: str) -> tuple[int, int, int, int]:
    try:
        B, T, I, H = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a shape BxTxIxH such as 32x200x2x128, got {text!r}"
        ) from None
    if min(B, T, I, H) < 1:
        raise argparse.ArgumentTypeError(f"expected sizes ≥ 1 in {text!r}")
    return B, T, I, H


def _csv(valid: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        items = tuple(v.strip() for v in text.split(",") if v.strip())
        bad = [v for v in items if v not in valid]
        if bad or not items:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(bad) or 'empty list'}; expected some of {', '.join(valid)}"
            )
        return items

    return parse


# -- bench ---------------------------------------------------------------------------------------


def _bench_arguments(p: argparse.ArgumentParser) -> None:
    from .bench import CELLS, DEFAULT_SHAPES, BenchConfig

    d = BenchConfig()
    p.add_argument(
        "--cells",
        type=_csv(CELLS),
        default=d.cells,
        help=f"cells to time, comma-separated (default: all: {','.join(CELLS)})",
    )
    p.add_argument(
        "--shapes",
        type=_shape,
        nargs="+",
        default=d.shapes,
        help="shapes BxTxIxH (default: " + " ".join("x".join(map(str, s)) for s in DEFAULT_SHAPES) + ")",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=d.repeats,
        help=f"timed repeats per measurement; medians are reported (default: {d.repeats})",
    )
    p.add_argument(
        "--warmup", type=int, default=d.warmup, help=f"untimed runs before timing (default: {d.warmup})"
    )
    p.add_argument("--device", default=d.device, help="cpu or cuda (default: cpu)")
    p.add_argument("--no-trace", action="store_true", help="skip the full-trace measurement")
    p.add_argument(
        "--no-contributions",
        action="store_true",
        help="skip the contribution norms against T autograd backward passes",
    )
    p.add_argument(
        "--diagnostics",
        action="store_true",
        help="also time every diagnostic of an LSTM (H = 128) at T = 125…1000",
    )
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")


def _bench(args: argparse.Namespace) -> int:
    import torch

    from . import bench

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda asked for, but no CUDA device is available")
    if args.repeats < 1 or args.warmup < 0:
        raise UsageError(f"expected --repeats ≥ 1 and --warmup ≥ 0, got {args.repeats} and {args.warmup}")
    cfg = bench.BenchConfig(
        cells=tuple(args.cells),
        shapes=tuple(args.shapes),
        repeats=args.repeats,
        warmup=args.warmup,
        device=args.device,
        trace=not args.no_trace,
        contributions=not args.no_contributions,
        diagnostics=args.diagnostics,
    )
    out = console()
    with out.status("measuring") as status:
        result = bench.run(cfg, progress=lambda what: status.update(f"measuring {what}"))
    for item in bench.render(result):
        out.print(item)
    if args.json:
        bench.write_json(result, args.json)
        out.print(f"wrote {args.json}")
    return 0


# -- theory --------------------------------------------------------------------------------------


def _theory_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", metavar="PATH", help="also write the claims as JSON to PATH")


def _theory(args: argparse.Namespace) -> int:
    from rich.table import Table

    from . import _io, theory

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


COMMANDS = [
    Command(
        "bench",
        "time the explicit engine against torch.nn's fused modules, side by side",
        "bptt bench --cells lstm,gru --shapes 32x200x2x128 --json bench.json",
        _bench_arguments,
        _bench,
    ),
    Command(
        "theory",
        "print the seeds' closed forms, each checked against bptt's own measurement",
        "bptt theory",
        _theory_arguments,
        _theory,
    ),
]


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="bptt",
        description="Backpropagation through time, made visible.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n"
        + "\n".join(f"  {c.name:<10} {c.summary}\n  {'':<10} e.g. {c.example}" for c in COMMANDS),
    )
    sub = top.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for c in COMMANDS:
        p = sub.add_parser(
            c.name,
            help=c.summary,
            description=c.summary[0].upper() + c.summary[1:] + ".",
            epilog=f"example:\n  {c.example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        c.add_arguments(p)
        p.set_defaults(run=c.run)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except (UsageError, FileNotFoundError) as err:
        print(f"bptt {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bptt {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
