"""`bptt demo`: RNN against LSTM on the adding problem, exploding with and without clipping, the report."""

from __future__ import annotations

import argparse
from typing import Any

from . import args as a
from .base import Command, config_from_args, console, memory_errors, step_bar


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..demo import DemoConfig

    d = DemoConfig()
    S = argparse.SUPPRESS
    p.add_argument(
        "--out", type=a.out_dir, default=S, help=f"where the runs and report.html go (default: {d.out})"
    )
    p.add_argument(
        "--seq-len", type=a.count(1), default=S, help=f"adding-problem length T (default: {d.seq_len})"
    )
    p.add_argument(
        "--hidden-size",
        type=a.count(1),
        default=S,
        help=f"hidden units of every model (default: {d.hidden_size})",
    )
    p.add_argument(
        "--steps",
        type=a.count(1),
        default=S,
        help=f"training budget of the RNN and the LSTM (default: {d.steps})",
    )
    p.add_argument(
        "--seed", type=a.count(0, a.SEED_MAX), default=S, help=f"seed of every run (default: {d.seed})"
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        default=S,
        help="tiny sizes and four steps per run, to check that everything runs",
    )


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from .. import demo

    cfg = config_from_args(demo.DemoConfig, args, out=str(getattr(args, "out", demo.DemoConfig.out)))
    out = console()
    with step_bar(out, "{task.description:<22}") as bar:  # the four runs' bars aligned
        jobs = {name: bar.add_task(name, total=tc.steps, info="") for name, tc in demo.plan(cfg)}

        def show(name: str, row: dict[str, Any]) -> None:
            info = f"loss {row['loss']:.3g}  ‖g‖ {row['grad_norm']:.3g}"
            bar.update(jobs[name], completed=row["step"] + 1, info=info)

        with memory_errors("--hidden-size and --seq-len"):
            result = demo.run(cfg, progress=show)
    table = Table(title="bptt demo")
    for col in (
        "run",
        "solved",
        "test loss / chance",
        "gradient far / near",
        "λ1 vs 1/γ",
        "λ_max",
        "stopped",
    ):
        table.add_column(col)
    for r in result["runs"]:
        ratio = (
            f"{r['gradient_far_over_near']:.2g} at d = {r['distance']}"
            if r["gradient_far_over_near"] is not None
            else "–"
        )
        loss = (
            f"{r['test_loss']:.3g} / {r['baseline_loss']:.3g}"
            if r["test_loss"] is not None
            else f"– / {r['baseline_loss']:.3g}"
        )
        lam = (
            f"{r['lambda1']:.3g} vs {r['threshold']:.3g}: {r['verdict'].split(' (')[0]}"
            if r["threshold"]
            else (r["verdict"] or "–")
        )
        lmax = f"{r['lambda_max']:.3f}" if r["lambda_max"] is not None else "–"
        stopped = (
            f"non-finite at step {r['nonfinite_step']}"
            if r["stopped"] == "nonfinite"
            else ("solved" if r["stopped"] == "solved" else f"{r['steps']} steps")
        )
        table.add_row(r["run"], "[green]yes[/]" if r["solved"] else "no", loss, ratio, lam, lmax, stopped)
    out.print(table)
    for claim in result["claims"]:
        out.print(f"• {claim}")
    out.print(f"report: {result['report']}")
    return 0


COMMAND = Command(
    "demo",
    "the headline job: RNN against LSTM on the adding problem, exploding with and without clipping, and the report",
    "bptt demo --out runs/demo",
    add_arguments,
    run,
)
