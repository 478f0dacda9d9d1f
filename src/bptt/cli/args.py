"""argparse types: one validator per kind of value, each checking its range where the value enters.

Each returns a function from the flag's text to its value, raising `argparse.ArgumentTypeError`
with what was expected and what came, which argparse prints as one line naming the flag.

Example:
    >>> count(1)("3"), real(0, lo_open=True)("0.5")
    (3, 0.5)
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from pathlib import Path

Bad = argparse.ArgumentTypeError

#: the largest seed torch's generators take
SEED_MAX = 2**63 - 1


def _range(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '≥'} {lo:g}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '≤'} {hi:g}")
    return " and ".join(parts)


def count(lo: int = 1, hi: int | None = None) -> Callable[[str], int]:
    """An integer in [lo, hi]: sizes, lengths, steps, intervals, seeds."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise Bad(f"expected an integer, got {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            raise Bad(f"expected an integer {_range(lo, hi, False, False)}, got {value}")
        return value

    return parse


def real(
    lo: float | None = None, hi: float | None = None, lo_open: bool = False, hi_open: bool = False
) -> Callable[[str], float]:
    """A finite number in the range: rates, scales, thresholds, biases."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise Bad(f"expected a number, got {text!r}") from None
        bad = (
            not math.isfinite(value)
            or (lo is not None and (value <= lo if lo_open else value < lo))
            or (hi is not None and (value >= hi if hi_open else value > hi))
        )
        if bad:
            what = _range(lo, hi, lo_open, hi_open)
            raise Bad(f"expected a finite number{' ' + what if what else ''}, got {text!r}")
        return value

    return parse


def pair(lo: int = 1) -> Callable[[str], tuple[int, int]]:
    """Two integers `A,B`, each ≥ lo (e.g. truncated BPTT's K1,K2)."""

    def parse(text: str) -> tuple[int, int]:
        try:
            a, b = (int(v) for v in text.split(","))
        except ValueError:
            raise Bad(f"expected two integers A,B such as 20,40, got {text!r}") from None
        if min(a, b) < lo:
            raise Bad(f"expected integers ≥ {lo}, got {text!r}")
        return a, b

    return parse


def shape(text: str) -> tuple[int, ...]:
    """A benchmark shape BxTxIxH, or BxTxIxHxL with L layers, every size ≥ 1."""
    try:
        sizes = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        sizes = ()
    if len(sizes) not in (4, 5):
        raise Bad(f"expected a shape BxTxIxH such as 32x200x2x128 (or BxTxIxHxL with L layers), got {text!r}")
    if min(sizes) < 1:
        raise Bad(f"expected sizes ≥ 1 in {text!r}")
    return sizes


def some_of(valid: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    """A comma-separated, non-empty selection of the names in `valid`."""

    def parse(text: str) -> tuple[str, ...]:
        items = tuple(v.strip() for v in text.split(",") if v.strip())
        bad = [v for v in items if v not in valid]
        if bad or not items:
            raise Bad(f"unknown {', '.join(bad) or 'empty list'}; expected some of {', '.join(valid)}")
        return items

    return parse


def text(text: str) -> str:
    """A non-empty line of text (a title, a protocol name)."""
    if not text.strip() or "\n" in text or "\x00" in text:
        raise Bad(f"expected a non-empty line of text, got {text!r}")
    return text


def existing(text: str) -> Path:
    """A file or directory that exists."""
    path = Path(text)
    if "\x00" in text or not path.exists():
        raise Bad(f"no file or directory at {text!r}")
    return path


def existing_file(text: str) -> Path:
    """A file that exists and is not a directory."""
    path = existing(text)
    if path.is_dir():
        raise Bad(f"expected a file, got the directory {text!r}")
    return path


def _path(text: str, what: str) -> Path:
    """A path named by non-empty text without NUL bytes (`what`: directory or file, for the error)."""
    if not text or "\x00" in text:
        raise Bad(f"expected a {what} path, got {text!r}")
    return Path(text)


def _makeable(text: str, verb: str) -> Path:
    """The path `text`, where no parent that exists is a file (`verb`: make or write, for the error)."""
    path = Path(text)
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise Bad(f"cannot {verb} {text!r}: {str(parent)!r} is a file")
    return path


def out_dir(text: str) -> Path:
    """A directory to write into: absent (it is made) or a directory, not a file."""
    path = _path(text, "directory")
    if path.exists() and not path.is_dir():
        raise Bad(f"expected a directory to write into, got the existing file {text!r}")
    return _makeable(text, "make")


def out_file(text: str) -> Path:
    """A file to write: absent or a file, not a directory, in a directory that is or can be made."""
    path = _path(text, "file")
    if path.is_dir():
        raise Bad(f"expected a file to write, got the directory {text!r}")
    return _makeable(text, "write")
