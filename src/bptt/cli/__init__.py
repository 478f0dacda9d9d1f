"""The `bptt` command line: one thin module per command, each with a help string on every flag.

A command is a module exposing `COMMAND` (a `Command`: name, summary, example, `add_arguments`,
`run`); adding one is that module and its line in `COMMAND_MODULES`. Flags are checked where they
enter (the argparse types of `bptt.cli.args`) and settings are built from them by field name
(`config_from_args`). User mistakes (a bad flag, a missing file, an unknown task, a bad size) end in
one line on stderr and exit status 2, without a traceback; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .._checks import InputError, InputTypeError
from .base import Command, Parser, UsageError, config_from_args, console, given
from .train import train_config

#: every command, in the order `bptt --help` lists them; a new command is one more line here
COMMAND_MODULES = (
    "bptt.cli.demo",
    "bptt.cli.bench",
    "bptt.cli.train",
    "bptt.cli.diagnose",
    "bptt.cli.report",
    "bptt.cli.theory",
)

COMMANDS: list[Command] = [importlib.import_module(m).COMMAND for m in COMMAND_MODULES]


def parser() -> argparse.ArgumentParser:
    """The `bptt` parser with every command's flags."""
    top = Parser(
        prog="bptt",
        description="Backpropagation through time, made visible.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n"
        + "\n".join(f"  {c.name:<10} {c.summary}\n  {'':<10} e.g. {c.example}" for c in COMMANDS),
    )
    sub = top.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)
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
    """Run `bptt ARGV`; returns the exit status (argparse's own errors exit with 2)."""
    args = parser().parse_args(argv)
    try:
        status: int = args.run(args)
        return status
    except (UsageError, FileNotFoundError, InputError, InputTypeError) as err:
        print(f"bptt {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bptt {args.command}: interrupted", file=sys.stderr)
        return 130


__all__ = [
    "COMMANDS",
    "COMMAND_MODULES",
    "Command",
    "UsageError",
    "config_from_args",
    "console",
    "given",
    "main",
    "parser",
    "train_config",
]
