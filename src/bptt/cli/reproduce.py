"""`bptt reproduce NAME`: the papers' experiments with their own protocols, our figure beside theirs.

bptt reproduce hs97-adding [--seq-len 100] [--trials 10]     HS97 Exp. 4 / Table 7
bptt reproduce vanishing [--workers N]                        the seeds' curve: success rate against T
bptt reproduce copy-baseline                                  Arjovsky et al. 2016's copy task
… --quick                                                     CI sizes: seconds, not the paper's numbers
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .. import _io
from .._checks import InputError
from .base import Command

NAMES = ("hs97-adding", "vanishing", "copy-baseline")
FULL_TIMES = {
    "hs97-adding": "T = 100, 10 trials: about 35 min on one core (the trials run side by side)",
    "vanishing": "360 runs: several hours on 2 cores; about 5 min with --workers 16 on 16 cores",
    "copy-baseline": "8 runs of 5000 steps: about 2 h on 2 cores",
}


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .sweep import add_options

    p.add_argument("name", choices=NAMES, help="the experiment: " + ", ".join(NAMES))
    p.add_argument("--quick", action="store_true", help="CI sizes: checks that everything runs, in seconds")
    p.add_argument(
        "--out", default=None, help="where the runs, the ledger and the report go (default: runs/NAME)"
    )
    g = p.add_argument_group("vanishing and copy-baseline")
    g.add_argument(
        "--cells",
        type=_names,
        default=None,
        help="cells, comma-separated, any of the registry's (default: rnn,lstm,gru)",
    )
    g.add_argument("--seq-lens", type=_ints, default=None, help="the lengths T, comma-separated")
    g.add_argument("--seeds", type=int, default=None, help="seeds per point (vanishing default: 5)")
    g.add_argument("--steps", type=int, default=None, help="training steps per run (vanishing default: 1000)")
    g = p.add_argument_group("hs97-adding")
    g.add_argument("--seq-len", type=int, default=None, help="T: 100 (default), 500 or 1000 as in Table 7")
    g.add_argument("--trials", type=int, default=None, help="independent trials (default: 10, as the paper)")
    g.add_argument("--max-sequences", type=int, default=None, help="budget per trial (default: 300000)")
    g.add_argument(
        "--seed", type=int, default=0, help="seed of the trials' weights and sequences (default: 0)"
    )
    add_options(p)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out or f"runs/{args.name}")
    if args.name == "hs97-adding":
        return _hs97(args, out)
    return _sweep(args, out)


def _hs97(args: argparse.Namespace, out: Path) -> int:
    from ..reproduce.hs97 import HS97Config
    from ..reproduce.hs97 import run as run_hs97
    from .base import console

    given: dict[str, Any] = {
        k: getattr(args, k) for k in ("seq_len", "trials", "max_sequences") if getattr(args, k) is not None
    }
    if args.quick:
        given = {"seq_len": 10, "trials": 2, "max_sequences": 400, "window": 50, "test_size": 64, **given}
    cfg = HS97Config(seed=args.seed, report_every=100 if args.quick else 2000, **given).validate()
    con = console()
    con.print(
        f"HS97 Exp. 4, adding, T = {cfg.seq_len}: {cfg.trials} trials of a 2 × 2-cell memory-block LSTM (93 weights), "
        f"online, lr {cfg.lr}, truncated gradient"
    )
    with con.status("training") as status:

        def show(n: int, finished: int, mse: float) -> None:
            status.update(
                f"{n} sequences per trial; {finished}/{cfg.trials} trials met the criterion; recent MSE {mse:.4f}"
            )

        result = run_hs97(cfg, progress=show)
    s = result.summary()
    _io.write_json(out / "hs97-adding.json", s)
    paper = s["paper_sequences"]
    ours = s["mean_sequences"]
    con.print(
        f"solved {s['solved']}/{s['trials']} trials; sequences to the criterion: mean {ours:,.0f}"
        if ours is not None
        else f"solved 0/{s['trials']} trials within {cfg.max_sequences:,} sequences"
    )
    if paper is not None:
        con.print(f"paper (Table 7): {paper:,} sequences, {s['paper_wrong']} wrong of 2560")
    con.print(
        f"wrong of {cfg.test_size} test sequences, mean over trials: {s['mean_wrong']:.1f}; {s['seconds']:.1f} s"
    )
    con.print(f"wrote {out / 'hs97-adding.json'}")
    return 0


def _sweep(args: argparse.Namespace, out: Path) -> int:
    from rich.table import Table

    from ..reproduce.curves import copy_baseline, copy_chance, success_table, vanishing
    from ..sweep.ledger import status_rows
    from ..sweep.report import write_sweep_report
    from .base import console
    from .sweep import options_from, saved_options, sweep_with_bar
    from .sweep import parse_train as parse

    if args.seeds is not None and args.seeds < 1:
        raise InputError(f"expected --seeds ≥ 1, got {args.seeds}")
    options = options_from(args)
    if args.cells:
        from ..cells import registry

        unknown = [c for c in args.cells if c not in registry.names()]
        if unknown:
            raise InputError(
                f"unknown cells {', '.join(unknown)}; expected some of {', '.join(registry.names())}"
            )
    kw: dict[str, Any] = {"quick": args.quick}
    if args.name == "vanishing":
        kw["steps"] = args.steps
        if args.quick:
            kw.update(cells=("rnn", "lstm"), tasks=("adding",), seq_lens=(5, 10), seeds=2, clips=("norm",))
    elif args.quick:
        kw.update(seq_lens=(5,))
    kw.update({k: getattr(args, k) for k in ("cells", "seq_lens", "seeds") if getattr(args, k)})
    plan = vanishing(parse, **kw) if args.name == "vanishing" else copy_baseline(parse, **kw)
    con = console()
    con.print(f"{plan.name}: {len(plan.grid)} runs in {out}; full size: {FULL_TIMES[plan.name]}")
    meta = {
        "points": [[p.name, list(p.argv)] for p in plan.grid],
        "options": saved_options(options),
    }
    counts = sweep_with_bar(plan.grid, out, options, meta)
    rows = status_rows(out)
    keys = {p.key for p in plan.grid}
    rows = [r for r in rows if r["key"] in keys]
    html, _ = write_sweep_report(out, title=f"bptt reproduce {plan.name}")
    if plan.name == "vanishing":
        Ts, table = success_table(rows)
        t = Table(title="success rate (solved/runs) against T")
        t.add_column("series")
        for T in Ts:
            t.add_column(f"T={T}", justify="right")
        for series, cells in table.items():
            t.add_row(series, *[cells.get(T, "–") for T in Ts])
        con.print(t)
        _io.write_json(out / "vanishing.json", {"T": Ts, "success": table})
    else:
        t = Table(title="copy task: test cross-entropy against the memoryless baseline 10·ln 8/(T+20)")
        for col in ("run", "T", "test loss", "baseline", "loss / baseline"):
            t.add_column(col, justify="left" if col == "run" else "right")
        lines = []
        for r in rows:
            T = int(r["seq_len"] or r["config"]["seq_len"])
            loss = r["test_loss"]
            t.add_row(
                r["name"],
                str(T),
                "–" if loss is None else f"{loss:.4f}",
                f"{copy_chance(T):.4f}",
                "–" if loss is None else f"{loss / copy_chance(T):.3f}",
            )
            lines.append({"run": r["name"], "T": T, "test_loss": loss, "baseline": copy_chance(T)})
        con.print(t)
        _io.write_json(out / "copy-baseline.json", lines)
    con.print(f"report: {html}")
    if counts["failed"] or counts["pending"] or counts["running"]:
        con.print(
            f"{counts['failed']} failed, {counts['pending'] + counts['running']} not run: bptt sweep status {out}"
        )
        return 1
    return 0


COMMAND = Command(
    "reproduce",
    "the papers' experiments with their protocols: hs97-adding, vanishing, copy-baseline (--quick: CI sizes)",
    "bptt reproduce vanishing --workers 16 --out runs/vanishing",
    add_arguments,
    run,
)
