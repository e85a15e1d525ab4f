"""Typed parameter sets of methods and models: a frozen dataclass per registered class, filled from the config.

``resolve_params`` applies config overrides to the dataclass defaults and checks each value against the field's
annotation (bool, int, float, str, ``Literal[...]``, ``tuple[int, ...]`` / ``tuple[float, ...]``, optional
``None``) and against the closed ranges of the dataclass's ``RANGES`` (field -> (low, high), None = unbounded);
a dataclass may check relations in ``__post_init__`` by raising ``ValueError``. Every problem becomes one
SslsegError line naming the owner and the key.

A parameter added after runs were made is declared with ``added()``: at its default it is left out of
``params_dict`` (run identities, provenance), so those runs keep their identity.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Literal, Union

from sslseg import SslsegError

__all__ = ["resolve_params", "params_dict", "added"]


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _check(value: Any, tp: Any) -> Any:
    """``value`` converted to ``tp``, or raise TypeError with the expected type's name."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Union:
        if value is None and type(None) in args:
            return None
        return _check(value, next(a for a in args if a is not type(None)))
    if origin is Literal:
        if value not in args:
            raise TypeError(f"one of {', '.join(map(repr, args))}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TypeError("a list")
        item = args[0]
        return tuple(_check(v, item) for v in value)
    if tp is bool:
        if not isinstance(value, bool):
            raise TypeError("true or false")
        return value
    if tp is int:
        if not (_number(value) and float(value).is_integer()):
            raise TypeError("an integer")
        return int(value)
    if tp is float:
        if not _number(value):
            raise TypeError("a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise TypeError("a string")
        return value
    return value


def resolve_params(owner: str, cls: type, overrides: dict | None = None):
    """``cls(**defaults updated by overrides)`` with every override type-checked; ``owner`` names it in errors
    (e.g. "method 'bcp'")."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in dict(overrides or {}).items():
        if key not in fields:
            known = ", ".join(fields) or "none"
            raise SslsegError(f"unknown parameter {key!r} for {owner} (known: {known})")
        try:
            values[key] = _check(value, hints[key])
        except TypeError as e:
            raise SslsegError(f"parameter {key!r} of {owner} must be {e}, got {value!r}") from None
    try:
        params = cls(**values)
    except ValueError as e:
        raise SslsegError(f"{owner}: {e}") from None
    for key, (lo, hi) in getattr(cls, "RANGES", {}).items():
        v = getattr(params, key)
        if v is not None and ((lo is not None and v < lo) or (hi is not None and v > hi)):
            span = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
            raise SslsegError(f"parameter {key!r} of {owner} must be in {span}, got {v!r}")
    return params


def added(default: Any = None) -> Any:
    """A dataclass field left out of ``params_dict`` while it holds ``default``."""
    return dataclasses.field(default=default, metadata={"added": True})


def params_dict(params) -> dict:
    """JSON-able view of a params instance (tuples become lists; ``added`` fields at their default left out), for
    run identities and provenance."""
    out = {}
    for f in dataclasses.fields(params):
        v = getattr(params, f.name)
        if not (f.metadata.get("added") and v == f.default):
            out[f.name] = list(v) if isinstance(v, tuple) else v
    return out
