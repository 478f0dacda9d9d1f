"""What every command shares: the `Command` record, one-line errors, configs from flags by field name.

A command is a module exposing `COMMAND = Command(name, summary, example, add_arguments, run)`;
`bptt.cli.COMMANDS` lists the modules. `add_arguments` declares the flags (with the argparse types of
`bptt.cli.args`, which check ranges where the value enters); `run` does the work and returns the exit
status. A `UsageError`, a missing file or a bad value (`InputError`) ends in one line on stderr and
exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from rich.console import Console

if TYPE_CHECKING:
    from rich.progress import Progress


class UsageError(Exception):
    """A mistake in what the user asked for, reported as one line."""


@dataclass(frozen=True)
class Command:
    """One `bptt` command: its name, a one-line summary, an example, its flags and what it runs."""

    name: str
    summary: str
    example: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


class Parser(argparse.ArgumentParser):
    """argparse with errors as one line (`bptt train: error: argument --steps: expected …`), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def console() -> Console:
    """rich output; wide enough for the tables when written to a file or a pipe."""
    return Console(width=None if sys.stdout.isatty() else 150)


def step_bar(out: Console, name: str = "{task.description}") -> Progress:
    """A rich progress bar of training steps: the run's name (formatted by `name`), the bar, the steps
    done of all, the task's `info` field (the latest loss and gradient norm) and the time elapsed."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn(name),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=out,
    )


C = TypeVar("C")


def given(args: argparse.Namespace, name: str) -> bool:
    """Whether the flag whose dest is `name` was on the command line (its default is `SUPPRESS`)."""
    return name in vars(args)


def config_from_args(cls: type[C], args: argparse.Namespace, **overrides: Any) -> C:
    """The dataclass `cls` with every field whose name is a flag's dest taken from `args`.

    Flags declared with `default=argparse.SUPPRESS` are absent unless given, so the dataclass's own
    default stands; `overrides` set fields that no flag names directly.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class Settings:
        ...     steps: int = 10
        ...     lr: float = 0.1
        >>> config_from_args(Settings, argparse.Namespace(steps=3, out="runs"))
        Settings(steps=3, lr=0.1)
    """
    assert dataclasses.is_dataclass(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in vars(args).items() if k in names}
    return cls(**{**values, **overrides})


def kwargs_from_args(func: Callable[..., Any], args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of `func` that a flag's dest names, taken from `args`.

    Example:
        >>> def f(steps: int, lr: float = 0.1) -> None: ...
        >>> kwargs_from_args(f, argparse.Namespace(steps=3, out="runs"))
        {'steps': 3}
    """
    import inspect

    names = inspect.signature(func).parameters
    return {k: v for k, v in vars(args).items() if k in names}


def out_of_memory(err: BaseException) -> bool:
    """Whether `err` is an allocation that failed (host or device)."""
    import torch

    if isinstance(err, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and any(
        k in text for k in ("can't allocate memory", "out of memory", "not enough memory")
    )


@contextlib.contextmanager
def memory_errors(sizes: str) -> Iterator[None]:
    """Turn a failed allocation into one line naming the flags whose `sizes` asked for it."""
    try:
        yield
    except (MemoryError, RuntimeError) as err:
        if not out_of_memory(err):
            raise
        raise UsageError(f"out of memory for {sizes}: ask for smaller sizes") from None
