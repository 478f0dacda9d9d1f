"""The long-range tasks of the papers, as seeded generators with a fixed test set each.

`make_task(name, protocol=None, seq_len=None, **options)` builds one; `TASKS` lists them.
"""

from __future__ import annotations

from typing import Any

from .. import _checks
from .adding import Adding, Multiplication
from .base import Batch, Task
from .copy import CopyMemory
from .digits import SequentialDigits
from .latch import Latch
from .reber import Reber
from .temporal_order import TemporalOrder

TASKS: dict[str, type[Task]] = {
    t.name: t for t in (Adding, Multiplication, TemporalOrder, CopyMemory, Latch, Reber, SequentialDigits)
}


def make_task(name: str, protocol: str | None = None, seq_len: int | None = None, **options: Any) -> Task:
    """The task `name` ("adding", "multiplication", "temporal_order", "copy", "latch", "reber", "digits").

    Example:
        >>> task = make_task("adding", "le", seq_len=100)
        >>> task.baseline_loss, task.success
        (0.16666666666666666, 'test MSE < 0.01')
    """
    cls = TASKS[_checks.choice("task", name, TASKS)]
    return cls(protocol, seq_len, **options)


__all__ = [
    "TASKS",
    "Adding",
    "Batch",
    "CopyMemory",
    "Latch",
    "Multiplication",
    "Reber",
    "SequentialDigits",
    "Task",
    "TemporalOrder",
    "make_task",
]
