"""`bptt reproduce NAME`: the papers' experiments with their own protocols (see `bptt.reproduce`)."""

from __future__ import annotations

import argparse

from .base import Command


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..reproduce.cli import add_arguments as reproduce_arguments

    reproduce_arguments(p)


def run(args: argparse.Namespace) -> int:
    from ..reproduce.cli import run as run_reproduce

    return run_reproduce(args)


COMMAND = Command(
    "reproduce",
    "the papers' experiments with their protocols: hs97-adding, vanishing, copy-baseline (--quick: CI sizes)",
    "bptt reproduce vanishing --workers 16 --out runs/vanishing",
    add_arguments,
    run,
)
