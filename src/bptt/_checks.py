"""Input checks shared by every entry point.

Each check raises where the bad value enters and says what was expected and what came instead
(`expected input of size 2 in the last dimension, got 3`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, TypeVar

import torch
from torch import Tensor


class InputError(ValueError):
    """A bad value given to bptt: what was expected and what came. The CLI prints it as one line."""


class InputTypeError(TypeError):
    """A value of the wrong type given to bptt. The CLI prints it as one line."""


class ShapeError(InputError, RuntimeError):
    """A tensor of the wrong size: a ValueError like bptt's other input errors, and a RuntimeError
    where `torch.nn`'s recurrent modules raise one, so `except RuntimeError` catches it as it would
    catch torch's."""


class Notice(UserWarning):
    """Something the user should know that does not stop the work (e.g. a resume that fell back
    to the previous checkpoint). The CLI prints it as one line."""


def shape_str(shape: Iterable[int]) -> str:
    """`(2, 3)` for a shape; `(3,)` for one dimension."""
    dims = tuple(int(d) for d in shape)
    return str(dims)


T = TypeVar("T")


def _instance(name: str, value: Any, kind: type[T], what: str) -> T:
    """`value` if it is a `kind` (a bool counts as no int), or an InputTypeError naming `name` and `what`."""
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise InputTypeError(f"expected {name} to be {what}, got {type(value).__name__}")
    return value


def positive_int(name: str, value: Any) -> int:
    """`value` as an int ≥ 1, or a TypeError/ValueError naming `name`."""
    n = _instance(name, value, int, "an int")
    if n < 1:
        raise InputError(f"expected {name} ≥ 1, got {n}")
    return n


def flag(name: str, value: Any) -> bool:
    return _instance(name, value, bool, "a bool")


def choice(name: str, value: Any, valid: Iterable[str]) -> str:
    valid = list(valid)
    if not isinstance(value, str) or value not in valid:
        raise InputError(f"unknown {name} {value!r}; expected one of {', '.join(repr(v) for v in valid)}")
    return value


def tensor(name: str, value: Any) -> Tensor:
    return _instance(name, value, Tensor, "a torch.Tensor")


def floating(name: str, value: Tensor, dtype: torch.dtype) -> Tensor:
    """`value` must have the model's floating dtype (PyTorch refuses mixed dtypes too)."""
    if value.dtype != dtype:
        raise InputError(
            f"expected {name} of dtype {dtype} (the model's), got {value.dtype}; "
            f"convert with .to({dtype}) or the model with .to({value.dtype})"
        )
    return value


def shape(name: str, value: Tensor, expected: tuple[int, ...]) -> Tensor:
    if tuple(value.shape) != tuple(expected):
        raise ShapeError(f"expected {name} of shape {shape_str(expected)}, got {shape_str(value.shape)}")
    return value


def first_non_finite(x: Tensor) -> tuple[int, ...] | None:
    """Index of the first non-finite entry of `x` in row-major order, or None.

    Whether there is one comes back from one sum, exactly: NaN and ±inf carry through a sum, so a
    finite sum has only finite terms (one operator and one wait; on a GPU, where each launches,
    instead of the six of `isfinite`, a not and a reduction). Only a sum that is not finite (a
    non-finite entry, or finite entries whose sum overflows) looks for the index.
    """
    if not (x.is_floating_point() or x.is_complex()):
        return None  # integers and booleans are finite
    total = (torch.view_as_real(x.resolve_conj()) if x.is_complex() else x).sum()
    if math.isfinite(total.item()):
        return None
    bad = (~torch.isfinite(x)).reshape(-1).nonzero()
    if bad.numel() == 0:
        return None  # every entry finite; their sum overflowed
    flat = int(bad[0, 0])
    return tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), x.shape))
