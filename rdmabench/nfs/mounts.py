"""NFS mounts: /proc/mounts parsed, mount/umount with bounded waits, protocol checks.

    read_mounts() -> [MountEntry]           # /proc/mounts, options parsed into a dict
    find_mount(path) -> MountEntry | None   # the mount that holds path (longest mount point)
    mount(server, export, mountpoint, proto="rdma"|"tcp", version="3"|"4.2"|..., root=None) -> MountEntry
    umount(mountpoint)                      # plain, then forced, then lazy
    check_proto(mountpoint, "rdma"|"tcp")   # NfsMountError unless the kernel says proto=<expected>
    mount_options(mountpoint) -> {"vers", "proto", "port", "rsize", "wsize", "nconnect", ...}

Never a hang: every mount is ``soft`` with ``timeo``/``retrans`` (defaults: timeo=100 deciseconds,
retrans=2, so an I/O to a server that stopped fails with EIO after about timeo*(retrans+1) =
30 s instead of blocking forever as a ``hard`` mount would), ``retry=0`` (mount.nfs tries once
instead of for 2 minutes), and the mount command itself runs under a subprocess timeout.
``soft`` is right for a benchmark (an error beats a hang) and wrong for production data; every
record carries the options in force so it says so.

The kernel shares one NFS client per server: an NFSv4 mount asked for ``proto=rdma`` while a
``proto=tcp`` v4 mount of the same server exists comes up as ``proto=tcp`` (seen in the lab).
``mount`` therefore checks what the kernel reports and fails rather than mislabel a figure.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RdmabenchError

RDMA_PORT = 20049
TCP_PORT = 2049
PROTOS = ("rdma", "tcp")
DEFAULT_TIMEO = 100   # deciseconds (10 s) per RPC try
DEFAULT_RETRANS = 2
MOUNT_TIMEOUT = 60.0  # seconds for the mount command as a whole
UMOUNT_TIMEOUT = 30.0
NFS_TYPES = ("nfs", "nfs4")


class NfsMountError(RdmabenchError):
    """An NFS mount could not be made, removed, or is not what it was claimed to be."""


@dataclass(frozen=True)
class MountEntry:
    source: str
    target: str
    fstype: str
    options: dict = field(default_factory=dict)  # "rw" -> True, "vers" -> "3", ...

    @property
    def is_nfs(self) -> bool:
        return self.fstype in NFS_TYPES

    @property
    def server(self) -> str | None:
        host, _, path = self.source.rpartition(":")
        return host.strip("[]") if host and path.startswith("/") else None

    @property
    def export(self) -> str | None:
        host, _, path = self.source.rpartition(":")
        return path if host and path.startswith("/") else None


def _unescape(field_: str) -> str:
    """/proc/mounts writes space, tab, newline and backslash as octal escapes (\\040 ...)."""
    out, i = [], 0
    while i < len(field_):
        if field_[i] == "\\" and i + 4 <= len(field_) and field_[i + 1:i + 4].isdigit():
            out.append(chr(int(field_[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field_[i])
            i += 1
    return "".join(out)


def parse_options(text: str) -> dict:
    """'rw,vers=3,proto=rdma' -> {"rw": True, "vers": "3", "proto": "rdma"} (order kept)."""
    opts: dict = {}
    for part in text.split(","):
        if not part:
            continue
        key, eq, value = part.partition("=")
        opts[key] = value if eq else True
    return opts


def parse_mounts(text: str) -> list[MountEntry]:
    """Entries of a /proc/mounts text, in order; malformed lines are ignored."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        out.append(MountEntry(_unescape(fields[0]), _unescape(fields[1]), fields[2], parse_options(fields[3])))
    return out


def read_mounts(path: str | Path = "/proc/mounts") -> list[MountEntry]:
    return parse_mounts(Path(path).read_text())


def find_mount(path: str | Path, mounts: list[MountEntry] | None = None) -> MountEntry | None:
    """The mount holding ``path``: the longest mount point that is ``path`` or a parent of it (the last
    listed wins when a point is mounted over)."""
    mounts = read_mounts() if mounts is None else mounts
    p = os.path.normpath(os.path.abspath(str(path)))
    best: MountEntry | None = None
    for m in mounts:
        t = os.path.normpath(m.target)
        if p == t or p.startswith(t.rstrip("/") + "/"):
            if best is None or len(t) >= len(os.path.normpath(best.target)):
                best = m
    return best


def _entry_at(mountpoint: str | Path, mounts: list[MountEntry] | None = None) -> MountEntry | None:
    """The mount whose mount point is exactly ``mountpoint`` (the last one listed)."""
    mounts = read_mounts() if mounts is None else mounts
    p = os.path.normpath(os.path.abspath(str(mountpoint)))
    found = [m for m in mounts if os.path.normpath(m.target) == p]
    return found[-1] if found else None


_INT_KEYS = ("rsize", "wsize", "port", "nconnect", "timeo", "retrans", "namlen")


def mount_options(mountpoint: str | Path, mounts: list[MountEntry] | None = None) -> dict:
    """What a result needs to say about an NFS mount, as the kernel reports it:
    {"source", "server", "export", "fstype", "vers", "proto", "port", "rsize", "wsize", "nconnect",
    "timeo", "retrans", "soft", "options"}. ``port`` is the default (2049, or 20049 for rdma) when the
    kernel omits it; ``nconnect`` 1 when omitted. NfsMountError if ``mountpoint`` is not an NFS mount."""
    m = _entry_at(mountpoint, mounts)
    if m is None or not m.is_nfs:
        what = "nothing is mounted there" if m is None else f"it is {m.fstype}, not NFS"
        raise NfsMountError(f"{mountpoint} is not an NFS mount point ({what})")
    o = m.options
    out = {"source": m.source, "server": m.server, "export": m.export, "fstype": m.fstype,
           "vers": o.get("vers"), "proto": o.get("proto")}
    for key in _INT_KEYS:
        if key in o and o[key] is not True:
            try:
                out[key] = int(o[key])
            except ValueError:
                out[key] = o[key]
    out.setdefault("port", RDMA_PORT if out["proto"] == "rdma" else TCP_PORT)
    out.setdefault("nconnect", 1)
    out["soft"] = bool(o.get("soft") or o.get("softerr"))
    out["options"] = ",".join(k if v is True else f"{k}={v}" for k, v in o.items())
    return out


def check_proto(mountpoint: str | Path, expected: str, mounts: list[MountEntry] | None = None) -> dict:
    """The mount's options (as ``mount_options``) if the kernel says ``proto=<expected>``; otherwise an
    NfsMountError that says what it really is, so an ``nfs-rdma`` figure never comes from TCP."""
    if expected not in PROTOS:
        raise ValueError(f"proto {expected!r} is not one of {', '.join(PROTOS)}")
    opts = mount_options(mountpoint, mounts)
    got = opts.get("proto")
    if got != expected:
        raise NfsMountError(
            f"{mountpoint} ({opts['source']}) is mounted with proto={got}, not proto={expected}: a figure "
            f"labelled nfs-{expected} would come from {got or 'an unknown protocol'}. Mount it with "
            f"proto={expected}" + (f",port={RDMA_PORT}" if expected == "rdma" else "")
            + " (and no other mount of the same server over another protocol: the kernel shares one client)")
    return opts


def remote_path(export: str, version: str, fsid0: bool = True, root: str | None = None) -> str:
    """The path to ask the server for: NFSv3 the export itself; NFSv4 ``/`` when the export is the
    pseudo-root (``fsid=0``, as the lab's server exports it) — a v4 mount of the full path fails there.
    ``root``: the directory exported as the pseudo-root when ``export`` is a folder below it; v4 then
    asks for that folder relative to the pseudo-root (root /srv/x, export /srv/x/storage -> /storage)."""
    if not (str(version).startswith("4") and fsid0):
        return export
    if root:
        rel = os.path.relpath(os.path.normpath(export), os.path.normpath(root))
        if rel == ".":
            return "/"
        if rel == ".." or rel.startswith("../") or os.path.isabs(rel):
            raise NfsMountError(f"export {export} is not under the exported root {root}")
        return "/" + rel
    return "/"


def build_options(proto: str, version: str = "3", port: int | None = None, *, soft: bool = True,
                  timeo: int = DEFAULT_TIMEO, retrans: int = DEFAULT_RETRANS, lock: bool = False,
                  extra: dict | str | None = None) -> str:
    """The -o string: vers, proto, port (20049 for rdma unless given), soft/timeo/retrans, retry=0,
    nolock for NFSv3 (unless ``lock``: that needs rpc.statd on both ends), then ``extra``
    (a dict or 'k=v,k' string; its keys override ours)."""
    if proto not in PROTOS:
        raise NfsMountError(f"NFS proto {proto!r} is not one of {', '.join(PROTOS)}")
    version = str(version)
    if version not in ("3", "4", "4.0", "4.1", "4.2"):
        raise NfsMountError(f"NFS version {version!r} is not one of 3, 4, 4.0, 4.1, 4.2")
    opts: dict = {"vers": version, "proto": proto}
    if port is None and proto == "rdma":
        port = RDMA_PORT
    if port is not None:
        opts["port"] = int(port)
    opts["soft" if soft else "hard"] = True
    opts["timeo"] = int(timeo)
    opts["retrans"] = int(retrans)
    opts["retry"] = 0
    if version == "3" and not lock:
        opts["nolock"] = True
    if extra:
        more = parse_options(extra) if isinstance(extra, str) else dict(extra)
        if "hard" in more:
            opts.pop("soft", None)
        opts.update(more)
    return ",".join(k if v is True else f"{k}={v}" for k, v in opts.items())


def mount_argv(server: str, export: str, mountpoint: str | Path, proto: str, version: str = "3",
               port: int | None = None, *, root: str | None = None, **kw) -> list[str]:
    host = f"[{server}]" if ":" in server else server
    return ["mount", "-t", "nfs", "-o", build_options(proto, version, port, **kw),
            f"{host}:{remote_path(export, version, root=root)}", str(mountpoint)]


def _load_rpcrdma() -> None:
    if not os.path.isdir("/sys/module/rpcrdma"):
        subprocess.run(["modprobe", "rpcrdma"], capture_output=True, timeout=30)


def mount(server: str, export: str, mountpoint: str | Path, proto: str = "rdma", version: str = "3",
          port: int | None = None, extra: dict | str | None = None, *, timeout: float = MOUNT_TIMEOUT,
          soft: bool = True, timeo: int = DEFAULT_TIMEO, retrans: int = DEFAULT_RETRANS,
          lock: bool = False, root: str | None = None) -> MountEntry:
    """Mount ``server:export`` on ``mountpoint`` (created if missing) and check the kernel agrees on the
    protocol. Needs root. NfsMountError within ``timeout`` seconds on any failure (no server, no such
    export, wrong port), with mount.nfs's own message. ``root``: see remote_path (NFSv4 below the pseudo-root)."""
    mountpoint = Path(mountpoint)
    argv = mount_argv(server, export, mountpoint, proto, version, port, soft=soft, timeo=timeo,
                      retrans=retrans, lock=lock, extra=extra, root=root)
    if os.geteuid() != 0:
        raise NfsMountError(f"mounting NFS needs root; run as root or mount it yourself: {' '.join(argv)}")
    existing = _entry_at(mountpoint)
    if existing is not None and existing.is_nfs:
        raise NfsMountError(f"{mountpoint} already has {existing.source} mounted; unmount it first")
    mountpoint.mkdir(parents=True, exist_ok=True)
    if proto == "rdma":
        _load_rpcrdma()
    t0 = time.monotonic()
    code, out = _run_bounded(argv, timeout)
    if code is None:
        _cleanup_after_failure(mountpoint)
        raise NfsMountError(f"mounting {argv[-2]} on {mountpoint} did not finish in {timeout:g} s "
                            f"(is the server up and exporting it?): {' '.join(argv)}")
    if code != 0:
        msg = out.strip() or f"exit status {code}"
        raise NfsMountError(f"mounting {argv[-2]} on {mountpoint} ({argv[4]}) failed after "
                            f"{time.monotonic() - t0:.1f} s: {msg}")
    entry = _entry_at(mountpoint)
    if entry is None or not entry.is_nfs:
        raise NfsMountError(f"mount {argv[-2]} on {mountpoint} reported success but /proc/mounts does not show it")
    try:
        check_proto(mountpoint, proto)
    except NfsMountError:
        umount(mountpoint)
        raise
    return entry


def _run_bounded(argv: list[str], timeout: float) -> tuple[int | None, str]:
    """(exit status, stderr+stdout), or (None, ...) after ``timeout``: the process is killed and not
    waited for beyond 5 s (a mount stuck in the kernel cannot be reaped; subprocess.run would block)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out or ""
    except subprocess.TimeoutExpired:
        proc.kill()
        try:
            proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        return None, ""


def _cleanup_after_failure(mountpoint: Path) -> None:
    entry = _entry_at(mountpoint)
    if entry is not None and entry.is_nfs:
        umount(mountpoint)


def umount(mountpoint: str | Path, timeout: float = UMOUNT_TIMEOUT) -> None:
    """Unmount: plain umount, then ``umount -f`` (aborts RPCs to a dead server), then ``umount -l``
    (detach now, clean up when idle). NfsMountError only if all three fail and it is still mounted."""
    mountpoint = str(mountpoint)
    errors = []
    for argv in (["umount", mountpoint], ["umount", "-f", mountpoint], ["umount", "-l", mountpoint]):
        code, out = _run_bounded(argv, timeout)
        if code == 0 or _entry_at(mountpoint) is None:
            return
        errors.append(f"{' '.join(argv)}: " + (out.strip() if code is not None else f"no answer in {timeout:g} s"))
    if _entry_at(mountpoint) is not None:
        raise NfsMountError(f"could not unmount {mountpoint}: " + "; ".join(errors))


def is_mounted(mountpoint: str | Path) -> bool:
    e = _entry_at(mountpoint)
    return e is not None and e.is_nfs
