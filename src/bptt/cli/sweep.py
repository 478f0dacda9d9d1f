"""`bptt sweep`: a grid of training runs with a ledger that survives anything (see `bptt.sweep`)."""

from __future__ import annotations

import argparse

from .base import Command


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..sweep.cli import add_arguments as sweep_arguments

    sweep_arguments(p)


def run(args: argparse.Namespace) -> int:
    from ..sweep.cli import run as run_sweep

    return run_sweep(args)


COMMAND = Command(
    "sweep",
    "a grid of training runs (every train flag; comma lists are axes) with a ledger that survives anything",
    "bptt sweep --cell rnn,lstm --seq-len 10,50,100 --seed 0,1,2 --out runs/sweep; bptt sweep status runs/sweep",
    add_arguments,
    run,
)
