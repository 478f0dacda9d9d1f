"""Records to JSON and back: the one place where a result dataclass becomes plain data.

A record is a dataclass whose fields are numbers, strings, None, lists, dicts with string keys,
or other records. `to_json` turns a tensor into numbers with None where a value is not finite
(JSON has no NaN or infinity); `from_json` reads the plain data back into the dataclass, guided by
its field types, and says which field of which record did not fit.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Point:
    ...     x: float
    ...     tags: list[str]
    >>> to_json(Point(1.5, ["a"]))
    {'x': 1.5, 'tags': ['a']}
    >>> from_json(Point, {"x": 2, "tags": []})
    Point(x=2.0, tags=[])
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, TypeVar, Union

from torch import Tensor

from ._checks import InputError

R = TypeVar("R")

Series = list[float | None]  # one number per step, distance or unit; None where not finite
Table = list[Series]  # one series per layer-direction


def finite(x: Tensor | float | list[Any]) -> Any:
    """A tensor (or number, or nested list) as nested lists of floats, None where not finite."""
    value: Any = x.detach().double().tolist() if isinstance(x, Tensor) else x
    if isinstance(value, list):
        return [finite(v) for v in value]
    return float(value) if math.isfinite(value) else None


def to_json(record: Any) -> Any:
    """A record (or list or dict of them) as plain data for `json.dumps`."""
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        return {f.name: to_json(getattr(record, f.name)) for f in dataclasses.fields(record)}
    if isinstance(record, Tensor):
        return finite(record)
    if isinstance(record, float):
        return finite(record)
    if isinstance(record, (list, tuple)):
        return [to_json(v) for v in record]
    if isinstance(record, dict):
        return {str(k): to_json(v) for k, v in record.items()}
    return record


def from_json(cls: type[R], data: Any) -> R:
    """The record `cls` read back from what `to_json` wrote; keys it does not know are ignored."""
    return typing.cast(R, _read(cls, data, cls.__name__))


def _read(tp: Any, data: Any, where: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return data
    if origin in (Union, types.UnionType):
        if data is None and type(None) in args:
            return None
        errors = []
        for arm in (a for a in args if a is not type(None)):
            try:
                return _read(arm, data, where)
            except InputError as err:
                errors.append(str(err))
        raise InputError(errors[0] if len(errors) == 1 else f"{where}: expected {tp}, got {data!r:.80}")
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise InputError(f"{where}: expected an object for {tp.__name__}, got {type(data).__name__}")
        hints = typing.get_type_hints(tp)
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name in data:
                kwargs[f.name] = _read(hints[f.name], data[f.name], f"{where}.{f.name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise InputError(f"{where}: expected a field {f.name!r}, got keys {', '.join(data)}")
        return tp(**kwargs)
    if origin is list:
        if not isinstance(data, list):
            raise InputError(f"{where}: expected a list, got {type(data).__name__}")
        return [_read(args[0], v, f"{where}[{i}]") for i, v in enumerate(data)]
    if origin is dict:
        if not isinstance(data, dict):
            raise InputError(f"{where}: expected an object, got {type(data).__name__}")
        return {k: _read(args[1], v, f"{where}.{k}") for k, v in data.items()}
    if tp is float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise InputError(f"{where}: expected a number, got {data!r:.80}")
        return float(data)
    if tp in (int, str, bool):
        if not isinstance(data, tp) or (tp is int and isinstance(data, bool)):
            raise InputError(f"{where}: expected {tp.__name__}, got {data!r:.80}")
        return data
    raise TypeError(f"{where}: records hold no {tp!r}")
