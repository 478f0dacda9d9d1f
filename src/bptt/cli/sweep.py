"""`bptt sweep`: every `bptt train` flag, a comma-separated value an axis; and resume, status, report.

bptt sweep --cell rnn,lstm,gru --seq-len 10,20,50,100 --seed 0,1,2 --out runs/sweep
bptt sweep --spec grid.toml --out runs/sweep --executor ray
bptt sweep resume runs/sweep
bptt sweep status runs/sweep [--json]
bptt sweep report runs/sweep
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._checks import InputError
from ..sweep.driver import EXECUTORS, SweepOptions, run_sweep
from ..sweep.grid import Axis, Point, axes_from_flags, axes_from_toml, config_key, merge, points
from ..sweep.ledger import open_existing, status_rows
from ..training.trainer import TrainConfig
from .base import Command

ACTIONS = ("resume", "status", "report")
#: the options a sweep's ledger keeps for `bptt sweep resume` (a deadline holds for one invocation only)
SAVED_OPTIONS = ("executor", "workers", "address", "max_attempts", "threads")
_OWN = {"--out", "--resume"}  # train flags the sweep sets itself


class _Refuse(argparse.ArgumentParser):
    """An argparse parser that raises InputError instead of exiting (for grid points)."""

    def error(self, message: str) -> Any:
        raise InputError(message)


def _train_parser() -> argparse.ArgumentParser:
    from .train import add_arguments as train_arguments

    p = _Refuse(prog="bptt train", add_help=False)
    train_arguments(p)
    return p


def parse_train(argv: Sequence[str]) -> TrainConfig:
    """The TrainConfig that `bptt train ARGV` would run; a bad flag raises InputError with argparse's message.

    Example:
        >>> parse_train(["--cell", "gru", "--seq-len", "50"]).seq_len
        50
    """
    from .train import train_config

    cfg: TrainConfig = train_config(_train_parser().parse_args(list(argv))).validate()
    return cfg


def train_flags() -> list[argparse.Action]:
    """`bptt train`'s flags (less --out and --resume)."""
    return [
        a
        for a in _train_parser()._actions
        if a.option_strings and not set(a.option_strings) & _OWN and a.dest != "help"
    ]


def add_options(p: argparse.ArgumentParser) -> None:
    """The flags of how a sweep runs (shared with `bptt reproduce`)."""
    g = p.add_argument_group("sweep")
    g.add_argument(
        "--executor", choices=EXECUTORS, default=None, help="where runs execute: process (default) or ray"
    )
    g.add_argument(
        "--workers",
        type=int,
        default=None,
        help="runs at once (default: the CPU count; with ray, the cluster's CPUs)",
    )
    g.add_argument(
        "--address",
        default=None,
        help="ray: an existing cluster, 'auto' or ray://host:port (default: a local Ray instance)",
    )
    g.add_argument(
        "--max-attempts",
        type=int,
        default=None,
        help="attempts per run before it stays failed (default: 3)",
    )
    g.add_argument("--threads", type=int, default=None, help="torch threads per run (default: 1)")
    g.add_argument(
        "--deadline",
        type=float,
        default=None,
        dest="deadline_s",
        metavar="SECONDS",
        help="start no run after this many seconds; running ones finish, the rest stay pending for a resume",
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "words",
        nargs="*",
        metavar="[resume|status|report] DIR",
        help="continue, show or report the sweep in DIR (without: start or continue the sweep in --out)",
    )
    p.add_argument(
        "--out",
        default=None,
        help="the sweep's directory: one run directory per grid point and ledger.sqlite",
    )
    p.add_argument(
        "--spec",
        metavar="FILE.toml",
        help="the grid as TOML: a list is an axis, a value a fixed flag, [sweep] the options; flags given here win",
    )
    p.add_argument("--json", action="store_true", help="status: a JSON array instead of a table")
    add_options(p)
    g = p.add_argument_group("bptt train flags (a comma-separated value is an axis of the grid)")
    for a in train_flags():
        if a.nargs == 0:  # a switch (--no-early-stop, --dry-run): given or not, in every run
            g.add_argument(
                *a.option_strings, dest=a.dest, action="store_const", const=True, default=None, help=a.help
            )
        else:
            g.add_argument(*a.option_strings, dest=a.dest, default=None, metavar="V[,V…]", help=a.help)


def options_from(args: argparse.Namespace, saved: dict[str, Any] | None = None) -> SweepOptions:
    """Sweep options: flags, over the spec's or the ledger's saved ones, over the defaults."""
    saved = dict(saved or {})
    given = {
        k: getattr(args, k) for k in (*SAVED_OPTIONS, "deadline_s") if getattr(args, k, None) is not None
    }
    known = {k: v for k, v in saved.items() if k in SAVED_OPTIONS}
    unknown = sorted(set(saved) - set(known) - {"out"})
    if unknown:
        raise InputError(f"unknown sweep options {', '.join(unknown)}; expected {', '.join(SAVED_OPTIONS)}")
    return SweepOptions(**{**known, **given}).validate()


def _axes(args: argparse.Namespace) -> tuple[list[Axis], dict[str, Any]]:
    flags = {a.option_strings[-1]: getattr(args, a.dest, None) for a in train_flags()}
    base, spec_options = axes_from_toml(args.spec) if args.spec else ([], {})
    return merge(base, axes_from_flags(flags)), spec_options


def progress_bar() -> Any:
    """A rich progress bar for the driver: runs finished of all, with the counts and the latest news."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .base import console

    return Progress(
        TextColumn("sweep"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[news]}"),
        console=console(),
    )


def sweep_with_bar(
    grid: Sequence[Any], out: Path, options: SweepOptions, meta: dict[str, Any]
) -> dict[str, int]:
    with progress_bar() as bar:
        job = bar.add_task("sweep", total=len(grid), counts="", news="")

        def show(c: dict[str, int], news: str) -> None:
            finished = c["done"] + (c["failed"] if c["pending"] + c["running"] == 0 else 0)
            bar.update(
                job,
                completed=finished,
                counts=f"{c['done']} done · {c['running']} running · {c['failed']} failed · {c['pending']} pending",
                news=news[:60],
            )

        return run_sweep(grid, out, options, progress=show, meta=meta)


def run(args: argparse.Namespace) -> int:
    from .base import console

    words = list(args.words)
    if words and words[0] in ACTIONS:
        action, rest = words[0], words[1:]
        if len(rest) != 1:
            raise InputError(f"expected bptt sweep {action} DIR, got {' '.join(words)!r}")
        out = Path(rest[0])
        if action == "status":
            return status(out, args.json)
        if action == "report":
            from ..sweep.report import write_sweep_report

            html, csv = write_sweep_report(out)
            console().print(f"wrote {html} and {csv}")
            return 0
        return resume(out, args)
    if words:
        raise InputError(f"expected one of {', '.join(ACTIONS)} or train flags, got {words[0]!r}")
    axes, spec_options = _axes(args)
    out_text = args.out or spec_options.get("out")
    if not out_text:
        raise InputError(
            "expected --out DIR (or out in the spec's [sweep] table) for the sweep's runs and ledger"
        )
    options = options_from(args, spec_options)
    grid = points(axes, parse_train)
    meta = {"axes": [[a.flag, list(a.values), a.switch] for a in axes], "options": saved_options(options)}
    out = Path(out_text)
    console().print(f"{len(grid)} runs in {out} ({options.executor})")
    counts = sweep_with_bar(grid, out, options, meta)
    return _verdict(counts, out)


def resume(out: Path, args: argparse.Namespace) -> int:
    """`bptt sweep resume DIR`: the grid and options the ledger saved, with any flags given now."""
    from .base import console

    ledger = open_existing(out)
    try:
        meta = ledger.meta("sweep")
    finally:
        ledger.close()
    if meta is None:
        raise InputError(f"the ledger in {out} has no saved grid; rerun the bptt sweep command instead")
    options = options_from(args, meta["options"])
    if "points" in meta:  # a grid that is no product of axes (bptt reproduce)
        grid = [_point(name, argv) for name, argv in meta["points"]]
    else:
        grid = points(
            [Axis(flag, tuple(values), bool(switch)) for flag, values, switch in meta["axes"]], parse_train
        )
    console().print(f"resuming {len(grid)} runs in {out} ({options.executor})")
    counts = sweep_with_bar(grid, out, options, meta)
    return _verdict(counts, out)


def _point(name: str, argv: Sequence[str]) -> Point:
    cfg = parse_train(argv)
    return Point(name, tuple(argv), cfg, config_key(cfg))


def saved_options(options: SweepOptions) -> dict[str, Any]:
    """The options the ledger keeps (`SAVED_OPTIONS`), as JSON values."""
    return {k: getattr(options, k) for k in SAVED_OPTIONS}


def _verdict(counts: dict[str, int], out: Path) -> int:
    from .base import console

    console().print(
        f"{counts['done']} done, {counts['failed']} failed, {counts['pending'] + counts['running']} not run; "
        f"bptt sweep status {out}"
    )
    return 0 if counts["failed"] == 0 and counts["pending"] + counts["running"] == 0 else 1


def status(out: Path, as_json: bool) -> int:
    from rich.table import Table

    from .base import console

    rows = status_rows(out)
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    table = Table(title=f"sweep {out}")
    for col in (
        "run",
        "status",
        "attempts",
        "T",
        "test loss",
        "chance",
        "solved",
        "steps",
        "sequences",
        "wall s",
        "error",
    ):
        table.add_column(col, justify="right" if col not in ("run", "status", "error") else "left")
    colour = {"done": "green", "failed": "red", "running": "yellow", "pending": "dim"}

    def f(x: Any, spec: str = ".4g") -> str:
        return "–" if x is None else format(x, spec)

    for r in rows:
        table.add_row(
            r["name"],
            f"[{colour[r['status']]}]{r['status']}[/]",
            str(r["attempts"]),
            str(r["config"].get("seq_len") or "–"),
            f(r["test_loss"]),
            f(r["baseline_loss"]),
            "–" if r["solved"] is None else ("yes" if r["solved"] else "no"),
            f(r["steps"], "d"),
            f(r["sequences"], "d"),
            f(r["wall_s"], ".1f"),
            (r["error"] or "").splitlines()[0][:60] if r["error"] else "",
        )
    out_console = console()
    out_console.print(table)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    out_console.print(", ".join(f"{n} {s}" for s, n in counts.items()) or "no runs")
    return 0


COMMAND = Command(
    "sweep",
    "a grid of training runs (every train flag; comma lists are axes) with a ledger that survives anything",
    "bptt sweep --cell rnn,lstm --seq-len 10,50,100 --seed 0,1,2 --out runs/sweep; bptt sweep status runs/sweep",
    add_arguments,
    run,
)
