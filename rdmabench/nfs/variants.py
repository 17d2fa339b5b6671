"""NFS mount options as axes: a scenario's ``[nfs]`` table -> the variants each nfs-* transport runs with.

    [nfs]
    version = ["3", "4.2"]     # a value or a list: each value is one variant (3, 4, 4.1, 4.2)
    nconnect = [1, 4]          # 1..16 TCP connections (or RDMA QPs) per server
    rsize = "1MiB"             # read size; a power of two from 4KiB to 1MiB
    wsize = ["256KiB", "1MiB"] # write size, likewise

``parse(table)`` returns every combination (the product, in the table's key order version, nconnect,
rsize, wsize, each list in its own order) as a ``Variant``, or raises ``VariantError(key, problem)``.
A variant says what it asks for (``label``: "v4.2 nconnect=4 rsize=1M", only the keys the table set;
``requested``: {"vers", "nconnect", "rsize", "wsize"}) and gives the nfs transports their options
(``options``). The kernel may apply something else -- the server caps rsize/wsize at its
max_block_size, a v4 mount of "4" becomes 4.2, nconnect is shared by every mount of one server and
ignored where the client does not support it -- so what was applied is read back from /proc/mounts
after each mount, and ``changes(requested, applied)`` says where the two differ.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from ..errors import RdmabenchError
from ..units import parse_size

KEYS = ("version", "nconnect", "rsize", "wsize")
VERSIONS = ("3", "4", "4.1", "4.2")
NCONNECT = (1, 16)
IO_SIZE = (4 << 10, 1 << 20)
# what a variant asks for, as /proc/mounts names it
MOUNT_NAME = {"version": "vers", "nconnect": "nconnect", "rsize": "rsize", "wsize": "wsize"}


class VariantError(RdmabenchError):
    def __init__(self, key: str, problem: str):
        super().__init__(f"{key}: {problem}")
        self.key, self.problem = key, problem


@dataclass(frozen=True)
class Variant:
    version: str | None = None
    nconnect: int | None = None
    rsize: int | None = None
    wsize: int | None = None

    @property
    def label(self) -> str:
        parts = [f"v{self.version}"] if self.version else []
        parts += [f"{k}={_short(getattr(self, k)) if k != 'nconnect' else self.nconnect}"
                  for k in ("nconnect", "rsize", "wsize") if getattr(self, k) is not None]
        return " ".join(parts)

    @property
    def requested(self) -> dict:
        """The options asked for, under their /proc/mounts names (vers as a string, the rest integers)."""
        return {MOUNT_NAME[k]: getattr(self, k) for k in KEYS if getattr(self, k) is not None}

    def options(self) -> dict:
        """The nfs transports' options for this variant (transports/nfs.py: version, mount_options)."""
        out: dict = {"variant": self.label}
        if self.version is not None:
            out["version"] = self.version
        extra = {k: getattr(self, k) for k in ("nconnect", "rsize", "wsize") if getattr(self, k) is not None}
        if extra:
            out["mount_options"] = extra
        return out


def _short(n: int) -> str:
    for unit, mult in (("M", 1 << 20), ("K", 1 << 10)):
        if n % mult == 0:
            return f"{n // mult}{unit}"
    return str(n)


def _kind(value) -> str:
    return {bool: "a boolean", str: "a string", int: "an integer", float: "a number", list: "an array",
            dict: "a table"}.get(type(value), type(value).__name__)


def _version(key: str, v) -> str:
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        raise VariantError(key, f"expected a string such as \"4.2\", got {_kind(v)} ({v!r})")
    text = str(v)
    if text not in VERSIONS:
        raise VariantError(key, f"NFS version {v!r} is not one of {', '.join(VERSIONS)}")
    return text


def _nconnect(key: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise VariantError(key, f"expected an integer, got {_kind(v)} ({v!r})")
    lo, hi = NCONNECT
    if not lo <= v <= hi:
        raise VariantError(key, f"{v}; use {lo} to {hi} (the kernel's limit)")
    return v


def _io_size(key: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        raise VariantError(key, f"expected a size (\"1MiB\" or bytes), got {_kind(v)} ({v!r})")
    try:
        n = parse_size(v)
    except ValueError as err:
        raise VariantError(key, str(err)) from None
    lo, hi = IO_SIZE
    if not lo <= n <= hi or n & (n - 1):
        raise VariantError(key, f"{v!r} is {n} bytes; use a power of two from 4KiB to 1MiB")
    return n


_CHECK = {"version": _version, "nconnect": _nconnect, "rsize": _io_size, "wsize": _io_size}


def parse(table: dict) -> tuple[Variant, ...]:
    """Every combination of the table's values; () for an empty table (the transports' own defaults)."""
    for key in table:
        if key not in KEYS:
            raise VariantError(key, f"unknown key; known: {', '.join(KEYS)}")
    axes = []
    for key in KEYS:
        if key not in table:
            continue
        raw = table[key]
        values = raw if isinstance(raw, list) else [raw]
        if not values:
            raise VariantError(key, "empty list; give at least one value (or leave the key out)")
        seen: list = []
        for i, v in enumerate(values):
            where = f"{key}[{i}]" if isinstance(raw, list) else key
            value = _CHECK[key](where, v)
            if value in seen:
                raise VariantError(where, f"{v!r} is listed twice")
            seen.append(value)
        axes.append([(key, v) for v in seen])
    return tuple(Variant(**dict(combo)) for combo in itertools.product(*axes)) if axes else ()


def changes(requested: dict, applied: dict) -> dict:
    """{option: {"requested", "applied"}} for every requested option the kernel applied otherwise
    (``applied`` as mounts.mount_options reports it; an option it does not show is None)."""
    out = {}
    for key, want in requested.items():
        got = applied.get(key)
        if str(got) != str(want):
            out[key] = {"requested": want, "applied": got}
    return out


def natural_key(label: str) -> tuple:
    """Sort "nconnect=4" before "nconnect=16": digits compare as numbers."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", label))
