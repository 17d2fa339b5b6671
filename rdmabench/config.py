"""Scenario files (TOML) -> a validated Scenario, or one error naming the file, the key and the problem.

    name = "default"                      # optional; the file's stem otherwise
    handoffs = ["pc1-pc2", "finalize", "c1-c2"]
    transports = ["http", "shared", "rdma-write", "rdma-read"]
    repetitions = 3                       # optional, default 3
    miner = 1000                          # optional: sectors are s-t0<miner>-<n>
    token = "..."                         # optional: the bearer token of the http transport
    storage_dir = "/tmp/rdmabench/storage"  # optional: the source side's Lotus storage path
    work_dir = "/tmp/rdmabench/work"        # optional: the destination side's

    [transports_for]                      # optional: a hand-off's own transports (else `transports`)
    "c1-c2" = ["http", "rdma-write"]

    [http]                                # optional
    bind = "127.0.0.1"
    port = 0

    [transfer]                            # optional: how the rdma transports move files (defaults shown)
    chunk = "1MiB"                        # bytes per RDMA message (a multiple of 4KiB); http: per Range piece
    inflight = 16                         # chunks in flight per stream (registered: chunk x inflight x streams)
    streams = 1                           # QPs one file is split across (http: TCP streams per file)
    parallel = 1                          # files of a cache directory moved at once (Lotus's ParallelFetchLimit)
    verify = "stream"                     # "stream": digested as the bytes pass; "reread": also read back after fsync
    direct = false                        # O_DIRECT file I/O at both ends
    cold = false                          # drop the source's cached pages before each transfer

    [nfs]                                 # optional: NFS mount options as axes of the nfs-* transports
    version = ["3", "4.2"]                # a value or a list; each list is an axis: 3, 4, 4.1, 4.2
    nconnect = [1, 4]                     # 1..16 connections per server
    rsize = "1MiB"                        # a power of two from 4KiB to 1MiB; wsize likewise

    [[shapes]]                            # one or more
    sector_size = "32GiB"                 # 2KiB 8MiB 512MiB 32GiB 64GiB
    scale = "1/16384"                     # optional, default 1: a number or "a/b" in (0, 1]

Everything is checked before anything runs, including that every transport can carry every hand-off
it is listed for (the C1 output is a blob held in memory: shared, rdma-read and nfs-* move files only). Relative paths are taken from the current directory.
The [nfs] table's combinations (its product: 2 versions x 2 nconnect above = 4 variants) each run as
their own transport: every nfs-* transport of the plan runs once per variant, one after the other in
each repetition, and each row says which (measured "variant": "v4.2 nconnect=4 rsize=1M"). Each record
carries what the kernel applied, read back from /proc/mounts after the mount, and what differed from
the request (a server that caps rsize at 256K shows rsize requested 1048576, applied 262144). Without
an [nfs] table the nfs-* transports run once, with their defaults (v3), and rows have no variant.
Hand-off -> what moves: pc1-pc2: the sector at stage pc1 (sealed + layers + tree-d);
finalize: stage finalized (sealed + tree-r-last, p_aux, t_aux); c1-c2: the C1 output (unscaled).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

from .errors import RdmabenchError
from .nfs import variants as nfs_variants
from .units import parse_size
from .transports.base import known as known_transports
from .workloads import sector

HANDOFFS = ("pc1-pc2", "finalize", "c1-c2")
HANDOFF_STAGE = {"pc1-pc2": "pc1", "finalize": "finalized", "c1-c2": None}


class ConfigError(RdmabenchError):
    pass


@dataclass(frozen=True)
class Shape:
    sector_size: int
    scale: Fraction = Fraction(1)

    def sector(self, stage: str, miner: int, number: int) -> sector.SectorShape:
        return sector.shape(self.sector_size, stage, miner=miner, number=number, scale=self.scale)

    @property
    def label(self) -> str:
        return sector.shape(self.sector_size, "pc1", scale=self.scale).label()


class Step(NamedTuple):
    """One transfer of the plan; ``variant`` is the [nfs] combination an nfs-* transport runs with (else None)."""
    handoff: str
    shape: Shape
    transport: str
    repetition: int
    variant: nfs_variants.Variant | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    path: Path
    handoffs: tuple[str, ...]
    transports: tuple[str, ...]  # every transport the scenario uses
    shapes: tuple[Shape, ...]
    repetitions: int = 3
    miner: int = 1000
    token: str = "rdmabench"
    storage_dir: Path = Path("/tmp/rdmabench/storage")
    work_dir: Path = Path("/tmp/rdmabench/work")
    http_bind: str = "127.0.0.1"
    http_port: int = 0
    raw: dict = field(default_factory=dict, compare=False, repr=False)
    transfer: dict = field(default_factory=lambda: dict(TRANSFER_DEFAULTS), compare=False)  # [transfer], filled in
    transports_for: dict = field(default_factory=dict, compare=False)  # hand-off -> its transports
    nfs: tuple = ()  # the [nfs] table's variants (nfs.variants.Variant); () runs nfs-* with their defaults

    def transports_of(self, handoff: str) -> tuple[str, ...]:
        return self.transports_for.get(handoff, self.transports)

    def variants_of(self, transport: str) -> tuple:
        """The variants ``transport`` runs with: the [nfs] ones for nfs-*, else one (None)."""
        return self.nfs if self.nfs and transport.startswith("nfs-") else (None,)

    def plan(self) -> list[Step]:
        """Every (hand-off, shape, transport, repetition, variant) in run order: repetitions innermost
        alternate transports (an nfs-* transport's variants one after the other), so a slow drift of the
        host spreads over all of them alike."""
        return [Step(h, s, t, r, v) for h in self.handoffs for s in self.shapes for r in range(self.repetitions)
                for t in self.transports_of(h) for v in self.variants_of(t)]

    def bytes_per_transfer(self, handoff: str, shape: Shape) -> int:
        from .workloads import c1
        stage = HANDOFF_STAGE[handoff]
        if stage is None:
            return c1.c1_size(shape.sector_size)
        return shape.sector(stage, self.miner, 1).total_bytes


_TOP = {"name": str, "handoffs": list, "transports": list, "repetitions": int, "miner": int, "token": str,
        "storage_dir": str, "work_dir": str, "shapes": list, "http": dict, "transports_for": dict,
        "transfer": dict, "nfs": dict}
_REQUIRED = ("handoffs", "transports", "shapes")
_SHAPE = {"sector_size": (str, int), "scale": (str, int, float)}
_HTTP = {"bind": str, "port": int}
_TRANSFER = {"chunk": (str, int), "inflight": int, "streams": int, "parallel": int, "verify": str, "direct": bool,
             "cold": bool}
TRANSFER_DEFAULTS = {"chunk": 1 << 20, "inflight": 16, "streams": 1, "parallel": 1, "verify": "stream",
                     "direct": False, "cold": False}
VERIFY_MODES = ("stream", "reread")
_TYPE_NAMES = {bool: "a boolean", str: "a string", int: "an integer", list: "an array", dict: "a table", float: "a number"}


def _kind(value) -> str:
    return {bool: "a boolean", str: "a string", int: "an integer", float: "a number", list: "an array",
            dict: "a table"}.get(type(value), type(value).__name__)


def _check_type(where: str, key: str, value, expected) -> None:
    types = expected if isinstance(expected, tuple) else (expected,)
    ok = any(isinstance(value, t) and not (isinstance(value, bool) and t is not bool) for t in types)
    if not ok:
        want = " or ".join(_TYPE_NAMES[t] for t in types)
        raise ConfigError(f"{where}: {key}: expected {want}, got {_kind(value)} ({value!r})")


def _unknown(where: str, prefix: str, table: dict, known) -> None:
    for key in table:
        if key not in known:
            raise ConfigError(f"{where}: {prefix}{key}: unknown key; known: {', '.join(known)}")


def loads(text: str, path: Path | str = "<string>") -> Scenario:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    return from_table(data, str(path), Path(path))


def from_table(data: dict, where: str, path: Path) -> Scenario:
    """A scenario from its parsed table; errors read "<where>: <key>: <problem>" (``where``: the file, or the
    file and the table a scenario is part of, as for a cluster file's [fan_in])."""
    _unknown(where, "", data, _TOP)
    for key in _REQUIRED:
        if key not in data:
            raise ConfigError(f"{where}: {key}: missing (required)")
    for key, value in data.items():
        _check_type(where, key, value, _TOP[key])

    def names(key: str, known: tuple[str, ...], what: str, values=None) -> tuple[str, ...]:
        values = data[key] if values is None else values
        if not values:
            raise ConfigError(f"{where}: {key}: empty; name at least one {what}")
        seen = []
        for i, v in enumerate(values):
            _check_type(where, f"{key}[{i}]", v, str)
            if v not in known:
                raise ConfigError(f"{where}: {key}[{i}]: unknown {what} {v!r}; known: {', '.join(known)}")
            if v in seen:
                raise ConfigError(f"{where}: {key}[{i}]: {what} {v!r} is listed twice")
            seen.append(v)
        return tuple(seen)

    handoffs = names("handoffs", HANDOFFS, "hand-off")
    transports = names("transports", known_transports(), "transport")
    per_handoff = {}
    for h, values in data.get("transports_for", {}).items():
        if h not in handoffs:
            raise ConfigError(f"{where}: transports_for.{h}: not one of this scenario's handoffs "
                              f"({', '.join(handoffs)})")
        _check_type(where, f"transports_for.{h}", values, list)
        per_handoff[h] = names(f"transports_for.{h}", known_transports(), "transport", values)
    for h in handoffs:
        for t in per_handoff.get(h, transports):
            problem = _cannot_carry(t, h)
            if problem:
                key = f"transports_for.{h}" if h in per_handoff else "transports"
                raise ConfigError(f"{where}: {key}: {t!r} cannot carry the {h} hand-off ({problem}); give {h} its "
                                  f"own list under [transports_for], e.g. \"{h}\" = [\"http\", \"rdma-write\"]")
    used = tuple(dict.fromkeys(transports + tuple(t for ts in per_handoff.values() for t in ts)))

    shapes = []
    if not data["shapes"]:
        raise ConfigError(f"{where}: shapes: empty; give at least one [[shapes]] table")
    for i, s in enumerate(data["shapes"]):
        key = f"shapes[{i}]"
        _check_type(where, key, s, dict)
        _unknown(where, f"{key}.", s, _SHAPE)
        if "sector_size" not in s:
            raise ConfigError(f"{where}: {key}.sector_size: missing (required)")
        for k, v in s.items():
            _check_type(where, f"{key}.{k}", v, _SHAPE[k])
        try:
            size = sector.parse_sector_size(s["sector_size"])
        except sector.WorkloadError as err:
            raise ConfigError(f"{where}: {key}.sector_size: {err}") from None
        try:
            scale = sector.parse_scale(s.get("scale", 1))
        except sector.WorkloadError as err:
            raise ConfigError(f"{where}: {key}.scale: {err}") from None
        shapes.append(Shape(size, scale))

    reps = data.get("repetitions", 3)
    if reps < 1:
        raise ConfigError(f"{where}: repetitions: must be at least 1, got {reps}")
    miner = data.get("miner", 1000)
    if miner < 0:
        raise ConfigError(f"{where}: miner: must be a non-negative actor id, got {miner}")
    token = data.get("token", "rdmabench")
    if not token:
        raise ConfigError(f"{where}: token: empty (the http fetch is always authenticated)")
    http = data.get("http", {})
    _unknown(where, "http.", http, _HTTP)
    for k, v in http.items():
        _check_type(where, f"http.{k}", v, _HTTP[k])
    bind, port = http.get("bind", "127.0.0.1"), http.get("port", 0)
    if not bind:
        raise ConfigError(f"{where}: http.bind: empty; name the address to listen on (0.0.0.0 only if you mean it)")
    if not 0 <= port <= 65535:
        raise ConfigError(f"{where}: http.port: {port} is not a TCP port (0..65535; 0 picks a free one)")
    transfer = transfer_options(where, data.get("transfer", {}))
    nfs = nfs_options(where, data.get("nfs"), used)
    for key in ("storage_dir", "work_dir"):
        if key in data and not data[key]:
            raise ConfigError(f"{where}: {key}: empty")
    return Scenario(
        name=data.get("name") or path.stem, path=path, handoffs=handoffs, transports=used,
        transports_for={h: per_handoff.get(h, transports) for h in handoffs},  # `transports` where none is given
        shapes=tuple(shapes), repetitions=reps, miner=miner, token=token,
        storage_dir=Path(data.get("storage_dir", "/tmp/rdmabench/storage")),
        work_dir=Path(data.get("work_dir", "/tmp/rdmabench/work")), http_bind=bind, http_port=port, raw=data,
        transfer=transfer, nfs=nfs)


def transfer_options(where: str, table: dict) -> dict:
    """The [transfer] table checked and completed with its defaults (TRANSFER_DEFAULTS)."""
    _unknown(where, "transfer.", table, _TRANSFER)
    out = dict(TRANSFER_DEFAULTS)
    for k, v in table.items():
        _check_type(where, f"transfer.{k}", v, _TRANSFER[k])
        out[k] = v
    try:
        out["chunk"] = parse_size(out["chunk"])
    except ValueError as err:
        raise ConfigError(f"{where}: transfer.chunk: {err}") from None
    if out["chunk"] < 4096 or out["chunk"] > 64 << 20 or out["chunk"] % 4096:
        raise ConfigError(f"{where}: transfer.chunk: {out['chunk']} bytes; use a multiple of 4KiB from 4KiB to 64MiB")
    for k, hi in (("inflight", 1024), ("streams", 64), ("parallel", 64)):
        if not 1 <= out[k] <= hi:
            raise ConfigError(f"{where}: transfer.{k}: {out[k]}; use 1 to {hi}")
    if out["chunk"] * out["inflight"] * out["streams"] > 1 << 30:
        raise ConfigError(f"{where}: transfer: chunk x inflight x streams is {out['chunk'] * out['inflight'] * out['streams']} "
                          "bytes of registered memory per end; keep it at most 1GiB")
    if out["verify"] not in VERIFY_MODES:
        raise ConfigError(f"{where}: transfer.verify: {out['verify']!r}; use one of {', '.join(VERIFY_MODES)}")
    return out


def nfs_options(where: str, table: dict | None, transports: tuple[str, ...]) -> tuple:
    """The [nfs] table's variants (nfs.variants.parse), each value checked; () when there is no table."""
    if table is None:
        return ()
    try:
        found = nfs_variants.parse(table)
    except nfs_variants.VariantError as err:
        raise ConfigError(f"{where}: nfs.{err.key}: {err.problem}") from None
    if not found:
        raise ConfigError(f"{where}: nfs: empty table; set one of {', '.join(nfs_variants.KEYS)} or leave it out")
    if not any(t.startswith("nfs-") for t in transports):
        raise ConfigError(f"{where}: nfs: no nfs-* transport in this scenario would use it; add nfs-rdma or "
                          "nfs-tcp to transports, or leave [nfs] out")
    return found


def _cannot_carry(transport: str, handoff: str) -> str | None:
    """Why ``transport`` cannot move what ``handoff`` moves, or None if it can."""
    from . import transports

    kind = "blob" if HANDOFF_STAGE[handoff] is None else "file"
    kinds = transports.capabilities(transport).kinds
    if kind in kinds:
        return None
    if kind == "blob":
        return f"the C1 output is a blob held in memory and {transport} moves only {' and '.join(sorted(kinds))}s"
    return f"{transport} moves only {' and '.join(sorted(kinds))}s"


def read(path: Path) -> str:
    """A config file's text, or ConfigError naming the file and why it cannot be read."""
    try:
        return path.read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None


def load(path: Path | str) -> Scenario:
    """Read and validate a scenario file; ConfigError("<file>: <key>: <problem>") on anything wrong."""
    path = Path(path)
    return loads(read(path), path)
