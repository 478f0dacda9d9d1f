"""Progress of the diagnostics that can take seconds: silent unless a caller asks for it.

    with bptt.diagnostics.progress.shown():      # rich bars with a time estimate, transient, on stderr
        summarize(trace, full=True)

Every slow diagnostic (the exact Jacobian norms, the Lyapunov spectrum, the forget-gate split, the
bounds measured along a trace, the contributions) reports through `task`; where no display is
shown, a task costs one context-variable read and draws nothing. The bars are transient and go to
the console given to `shown` (stderr by default), so standard output and JSON stay clean.

`few_threads` runs the small per-step products on one thread: their matrices (B × S × S with S a
few hundred) are too small for intra-op threads to pay, and on a machine busy with other work
those threads wait on each other (measured: `bptt diagnose` of a 64-unit LSTM 5 to 7 times slower
with 2 threads than with 1 on 2 busy cores). The thread count is put back afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

_display: ContextVar[Progress | None] = ContextVar("bptt_diagnostics_progress", default=None)

SMALL_STATE = 512  # state sizes up to this run their per-step products on one thread


def _nothing(n: int = 1) -> None:
    return None


@contextmanager
def shown(console: Console | None = None) -> Iterator[Progress]:
    """Show the diagnostics run inside as rich progress bars with an estimate of the time left.

    Nested calls share the outer display. Example:
        >>> from bptt.diagnostics import progress
        >>> with progress.shown() as bars, progress.task("work", total=2) as advance:
        ...     advance(); advance()
        ...     int(bars.tasks[0].completed)
        2
    """
    outer = _display.get()
    if outer is not None:
        yield outer
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
        console=console if console is not None else Console(stderr=True),
        transient=True,
    )
    token = _display.set(bars)
    try:
        with bars:
            yield bars
    finally:
        _display.reset(token)


@contextmanager
def task(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A bar for one diagnostic of `total` units (None: of unknown length); yields `advance(n=1)`."""
    bars = _display.get()
    if bars is None:
        yield _nothing
        return
    task_id = bars.add_task(description, total=total)

    def advance(n: int = 1) -> None:
        bars.advance(task_id, n)

    try:
        yield advance
    finally:
        bars.remove_task(task_id)


def showing() -> bool:
    """Whether a display is shown (a caller asked for progress)."""
    return _display.get() is not None


@contextmanager
def few_threads(state_size: int) -> Iterator[None]:
    """One intra-op thread while the per-step products are small (state size ≤ `SMALL_STATE`)."""
    before = torch.get_num_threads()
    if state_size > SMALL_STATE or before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
