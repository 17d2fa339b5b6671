"""One result file: a versioned JSON document, written atomically.

    {"schema": "rdmabench-result", "schema_version": 2,
     "tool": {"name": "rdmabench", "version": ...}, "created": ISO-8601 UTC,
     "kind": "verbs" | "transfer" | "crosscheck" | "baseline" | "cluster",
     "context": {...}          # host, kernel, device, ...: see context.py
     "peer_context": {...}     # the other end's, when there is one
     "options": {...}          # exactly what was asked for
     "rows": [{...}, ...]}     # one per measurement, every kind the same shape: see row.py

Files ending in .gz are gzipped. Nothing else in the suite writes result files. Files of schema_version 1
(rows shaped by kind) are read and their rows converted (row.from_v1).
"""

from __future__ import annotations

import datetime as _dt
import gzip
import json
import math
import os
import secrets
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..errors import RdmabenchError
from . import row

SCHEMA = "rdmabench-result"
SCHEMA_VERSION = 2
READS = (1, 2)  # schema versions this rdmabench reads: 1 by converting its rows
KINDS = ("verbs", "transfer", "crosscheck", "baseline", "cluster")


class ResultFileError(RdmabenchError):
    pass


def results_folder() -> Path:
    """Where results go unless a command is given a path: $RDMABENCH_RESULTS (the lab sets it), else ./results."""
    return Path(os.environ.get("RDMABENCH_RESULTS") or "results")


@dataclass
class Result:
    kind: str
    context: dict
    options: dict
    rows: list[dict] = field(default_factory=list)
    peer_context: dict | None = None
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    tool: dict = field(default_factory=lambda: {"name": "rdmabench", "version": __version__})

    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "tool": self.tool, "created": self.created,
            "kind": self.kind, "context": self.context, "peer_context": self.peer_context,
            "options": self.options, "rows": self.rows,
        }

    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>") -> "Result":
        if data.get("schema") != SCHEMA:
            raise ResultFileError(f"{source}: not an rdmabench result file (schema is {data.get('schema')!r})")
        version = data.get("schema_version")
        if version not in READS:
            raise ResultFileError(f"{source}: schema_version {version!r}; this rdmabench reads versions "
                                  f"{', '.join(map(str, READS))}")
        if data.get("kind") not in KINDS:
            raise ResultFileError(f"{source}: kind {data.get('kind')!r} is not one of {', '.join(KINDS)}")
        rows = data["rows"]
        if version == 1:
            try:
                rows = [row.from_v1(data["kind"], r) for r in rows]
            except (KeyError, ValueError, TypeError) as err:
                raise ResultFileError(f"{source}: schema_version 1 rows that do not convert: {err}") from None
        elif any(not isinstance(r, dict) or set(r) != set(row.KEYS) for r in rows):
            raise ResultFileError(f"{source}: a row without the keys {', '.join(row.KEYS)}")
        return cls(kind=data["kind"], context=data["context"], options=data["options"], rows=rows,
                   peer_context=data.get("peer_context"), created=data["created"], tool=data["tool"])

    def default_path(self, folder: Path) -> Path:
        stamp = self.created.replace(":", "").replace("-", "").replace("+0000", "Z")[:15]
        host = self.context.get("host", {}).get("hostname") or socket.gethostname()
        return folder / f"{self.kind}-{host}-{stamp}.json"

    def publish(self, output: Path | None = None, warn=lambda msg: print(msg, file=sys.stderr, flush=True)) -> Path:
        """Save to ``output`` (or the results folder); if that cannot be written, save it in the system's
        temporary folder instead and say where: a measurement is never lost to a read-only folder."""
        target = Path(output) if output else self.default_path(results_folder())
        try:
            return self.save(target)
        except OSError as err:
            fallback = Path(tempfile.gettempdir()) / "rdmabench-results" / target.name
            try:
                path = self.save(fallback)
            except OSError as err2:
                raise ResultFileError(f"cannot write the result to {target} ({err.strerror or err}) nor to "
                                      f"{fallback} ({err2.strerror or err2})") from None
            warn(f"rdmabench: cannot write {target} ({err.strerror or err}); the result is saved at {path} instead")
            return path

    def save(self, path: Path) -> Path:
        """Write to a temporary file beside the target, read it back, then rename: never a half-written file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        doc, replaced = finite(self.to_dict())
        if replaced:  # JSON has no NaN or infinity: such a figure is kept as null, and the file says where
            doc["options"] = {**(doc.get("options") or {}), "not_a_number": replaced}
        data = json.dumps(doc, indent=1, allow_nan=False).encode()
        if path.suffix == ".gz":
            data = gzip.compress(data)
        tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as to any file
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            load(Path(tmp), gz=path.suffix == ".gz")  # it parses and validates, or we do not publish it
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path


def finite(value, where: str = "") -> tuple:
    """``value`` with every NaN or infinite float replaced by None, and where each was ("rows[3].detail.x"):
    a tool's misfiring figure (perftest prints -nan when its clock misreads) must not cost the whole file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None, [f"{where or '.'} was {value!r}"]
    if isinstance(value, dict):
        out, notes = {}, []
        for k, v in value.items():
            out[k], n = finite(v, f"{where}.{k}" if where else str(k))
            notes += n
        return out, notes
    if isinstance(value, (list, tuple)):
        out, notes = [], []
        for i, v in enumerate(value):
            item, n = finite(v, f"{where}[{i}]")
            out.append(item)
            notes += n
        return out, notes
    return value, []


def load(path: Path, gz: bool | None = None) -> Result:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ResultFileError(f"{path}: cannot read: {err.strerror}") from None
    if gz or (gz is None and path.suffix == ".gz"):
        raw = gzip.decompress(raw)
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ResultFileError(f"{path}: not valid JSON: {err}") from None
    return Result.from_dict(data, str(path))
