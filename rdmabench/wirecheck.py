"""Checking what comes off the wire before it is used: every field's presence, type and range.

A listener reads each request through ``fields(msg, SPEC, where)``: it returns the request's
arguments, typed, or raises ``BadMessage`` naming the field and what is wrong with it. Unknown
fields are refused too: a typo or a hostile extra must never be passed on as a keyword.

    SPEC = {"size": Int(1, 1 << 40), "stage": Str(choices=("pc1", "pc2")), "note": Opt(Str())}
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import RdmabenchError


class BadMessage(RdmabenchError):
    """A request with a missing, unknown, wrong-typed or out-of-range field: refused, connection closed."""


@dataclass(frozen=True)
class Num:
    """A finite number (an int or a float) in lo..hi."""

    lo: float = 0.0
    hi: float = 1e12
    what = "a number"

    def _is(self, v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    def check(self, v, name):
        if not self._is(v):
            raise BadMessage(f"field {name!r} must be {self.what}, not {_kind(v)}")
        if not self.lo <= v <= self.hi:
            raise BadMessage(f"field {name!r} is {v}, outside {_num(self.lo)}..{_num(self.hi)}")
        return v


@dataclass(frozen=True)
class Int(Num):
    """An integer (not a boolean, not a float) in lo..hi."""

    lo: int = 0
    hi: int = (1 << 63) - 1
    what = "an integer"

    def _is(self, v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class Bool:
    def check(self, v, name):
        if not isinstance(v, bool):
            raise BadMessage(f"field {name!r} must be true or false, not {_kind(v)}")
        return v


@dataclass(frozen=True)
class Str:
    choices: tuple[str, ...] | None = None
    max_len: int = 4096

    def check(self, v, name):
        if not isinstance(v, str):
            raise BadMessage(f"field {name!r} must be a string, not {_kind(v)}")
        if len(v) > self.max_len or "\0" in v:
            raise BadMessage(f"field {name!r} is over {self.max_len} characters or holds a NUL")
        if self.choices is not None and v not in self.choices:
            raise BadMessage(f"field {name!r} is {v[:80]!r}, not one of {', '.join(self.choices)}")
        return v


@dataclass(frozen=True)
class Opt:
    """The field may be absent or null (then it is None)."""

    inner: object

    def check(self, v, name):
        return None if v is None else self.inner.check(v, name)


@dataclass(frozen=True)
class ListOf:
    inner: object
    max_items: int = 10_000

    def check(self, v, name):
        if not isinstance(v, list):
            raise BadMessage(f"field {name!r} must be a list, not {_kind(v)}")
        if len(v) > self.max_items:
            raise BadMessage(f"field {name!r} has {len(v)} entries, more than {self.max_items}")
        return [self.inner.check(x, f"{name}[{i}]") for i, x in enumerate(v)]


@dataclass(frozen=True)
class Dict:
    """A nested object checked against its own spec (``spec=None``: any JSON object, kept as it is).
    Only the keys it has come back: an absent optional key stays absent (its reader's default applies)."""

    spec: dict | None = None

    def check(self, v, name):
        if not isinstance(v, dict):
            raise BadMessage(f"field {name!r} must be an object, not {_kind(v)}")
        return v if self.spec is None else {k: x for k, x in fields(v, self.spec, name).items() if k in v}


def fields(msg, spec: dict, where: str) -> dict:
    """``msg``'s fields named in ``spec``, each checked; absent ``Opt`` fields come back as None."""
    if not isinstance(msg, dict):
        raise BadMessage(f"{where} must be an object, not {_kind(msg)}")
    extra = sorted(set(msg) - set(spec))
    if extra:
        raise BadMessage(f"{where}: unknown field {str(extra[0])[:80]!r}")
    out = {}
    for name, check in spec.items():
        if name not in msg and not isinstance(check, Opt):
            raise BadMessage(f"{where}: field {name!r} is missing")
        out[name] = check.check(msg.get(name), f"{where}.{name}" if where else name)
    return out


def _num(x) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _kind(v) -> str:
    if isinstance(v, float) and not math.isfinite(v):
        return "a non-finite number"
    return {type(None): "null", bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "an object"}.get(type(v), type(v).__name__)
