"""``nfs-rdma`` and ``nfs-tcp``: a Lotus storage path exported by the kernel NFS server, copied by the worker.

The export is a Lotus storage root (``sealed/<id>``, ``cache/<id>/...``). Two directions:
  pull (PC1 -> PC2): the item is read from the export and written to local disk (``item.destination``);
  push (finalize):   the item is read from local disk (``item.source``) and written into the export.
``ctx.options["direction"]`` chooses ("pull" | "push"); without it, an item whose source lies under
the mount is a pull, one whose destination lies under it a push, anything else a pull. The export
side of an item is ``<mount>/<lotus_type>/<sector_id>`` unless its own path is already under the mount.

Options (``ctx.options``):
  mount        a mount point the user mounted; it must be NFS with the transport's proto (checked)
  server, export   or: rdmabench mounts ``server:export`` itself (root needed); ``server`` defaults to
               ``ctx.peer``. NFSv4 mounts the pseudo-root ``server:/`` (the export has fsid=0)
  version      "3" (default) | "4" | "4.1" | "4.2";  port (default 20049 for rdma, 2049 for tcp)
  mount_dir    where to mount (default /tmp/rdmabench-nfs-<proto>)
  mount_options  extra mount options ("nconnect=4,rsize=1048576" or a dict)
  export_root  the directory the server exports as the NFSv4 pseudo-root (fsid=0) when ``export`` is a
               folder below it: v4 then mounts ``server:/<folder>`` (mounts.remote_path)
  timeo, retrans, mount_timeout   the soft-mount bounds (mounts.DEFAULT_TIMEO/RETRANS, MOUNT_TIMEOUT)
  cold         "remount" (default when rdmabench mounted: umount + mount before every pull, so the
               client's page cache is empty), "drop_caches" (echo 3 > /proc/sys/vm/drop_caches, the
               default for a user's mount when root), "none" (warm; the default when not root)
  bufsize      copy buffer (1 MiB)

Verification: a pull hashes the bytes as they are written to the local file (what arrived) and
compares with ``item.digest`` before the rename. A push writes and closes (close-to-open: the close
flushes to the server), then reads the temporary back through a FRESH mount (or dropped caches), so
the digest is of what the server holds, not of the client's page cache; only then is it renamed.
The runner times the move, read-back included as every transport's verification is; a push reports
its phases, ``transfer_s`` (write + close) and ``verify_s`` (the read-back). A pull's cache is made
cold in ``ready``, before the clock starts.
Either way the destination is written under a temporary name beside it and renamed, so it holds the
whole verified item or nothing. Records carry ``extra["mount"]`` (mounts.mount_options: vers, proto,
port, rsize, wsize, nconnect, timeo, retrans, soft: what /proc/mounts says was applied, read after the
mount the item went through) and ``extra["cold"]``; when rdmabench mounted, also ``extra["requested"]``
(vers, and nconnect/rsize/wsize where asked) and ``extra["changed"]`` ({option: {requested, applied}}
where the kernel applied something else: a server's smaller rsize, v4 -> 4.2, an nconnect it ignored).

Two hosts: the kernel NFS server is the passive end, which rdmabench does not start from here
(``python -m rdmabench.nfs.server start`` on the storage host), so ``start_passive`` returns None.
Its capabilities say so: ``client_only`` (the runner runs every copy on the worker, which is both the
NFS client and, for a push, the source, and sets ``direction``) and ``needs_export`` (the storage
host's export: ``server`` and ``export``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from .. import integrity
from ..nfs import mounts, variants
from ..workloads.item import Item
from .base import Capabilities, Context, TransferRecord, Transport, TransportError, register

BUFFER = 1 << 20
COLD_MODES = ("remount", "drop_caches", "none")


def _drop_caches() -> None:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def _copy_file(src: Path, dst: Path, buf: bytearray) -> tuple[int, str]:
    """Copy through ``buf``; (bytes, digest of the bytes written)."""
    h = integrity.new_hasher()
    mv = memoryview(buf)
    total = 0
    fin = os.open(src, os.O_RDONLY)
    try:
        fout = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            while n := os.readv(fin, [buf]):
                chunk = mv[:n]
                h.update(chunk)
                off = 0
                while off < n:
                    off += os.write(fout, chunk[off:])
                total += n
        finally:
            os.close(fout)  # NFS: close flushes the dirty pages to the server
    finally:
        os.close(fin)
    return total, h.hexdigest()


def _copy_item(src: Path, dst: Path, kind: str, buf: bytearray) -> tuple[int, str]:
    if kind == "dir":
        dst.mkdir()
        entries = []
        for name, _size in integrity.dir_entries(src):
            n, d = _copy_file(src / name, dst / name, buf)
            entries.append((name, n, d))
        return sum(e[1] for e in entries), integrity.combine(entries)
    return _copy_file(src, dst, buf)


def _requested(version: str, extra) -> dict:
    """The options whose applied value a record compares: vers, and nconnect/rsize/wsize where asked for."""
    more = mounts.parse_options(extra) if isinstance(extra, str) else dict(extra or {})
    out: dict = {"vers": version}
    for key in ("nconnect", "rsize", "wsize"):
        if key in more and more[key] is not True:
            value = more[key]
            out[key] = int(value) if str(value).isdigit() else value
    return out


def _under(path: Path | None, root: Path) -> bool:
    if path is None:
        return False
    p, r = os.path.abspath(path), os.path.abspath(root)
    return p == r or p.startswith(r.rstrip("/") + "/")


class _NfsTransport(Transport):
    proto = ""
    capabilities = Capabilities(kinds=frozenset({"file", "dir"}), client_only=True, needs_export=True)

    def __init__(self):
        self.mountpoint: Path | None = None
        self._owned = False
        self._mount_args: dict | None = None
        self.requested: dict | None = None  # what rdmabench asked the kernel for (None: a user's mount)
        self.cold = "none"

    def prepare(self, ctx: Context) -> None:
        o = ctx.options
        self.ctx = ctx
        self.direction = o.get("direction")
        if self.direction not in (None, "pull", "push"):
            raise TransportError(f"{self.name}: direction {self.direction!r} is not pull or push")
        self.buf = bytearray(int(o.get("bufsize", BUFFER)))
        root = os.geteuid() == 0
        if o.get("mount"):
            self.mountpoint = Path(o["mount"])
            try:
                mounts.check_proto(self.mountpoint, self.proto)
            except mounts.NfsMountError as err:
                raise TransportError(f"{self.name}: {err}") from None
            default_cold = "drop_caches" if root else "none"
        else:
            server = o.get("server") or ctx.peer
            export = o.get("export")
            if not server or not export:
                raise TransportError(f"{self.name}: name a mounted NFS directory (options.mount) or the "
                                     "server and export to mount (options.server, options.export)")
            self.mountpoint = Path(o.get("mount_dir") or f"/tmp/rdmabench-nfs-{self.proto}")
            self._mount_args = dict(server=server, export=export, mountpoint=self.mountpoint, proto=self.proto,
                                    version=str(o.get("version", "3")), port=o.get("port"),
                                    extra=o.get("mount_options"), root=o.get("export_root"),
                                    timeout=float(o.get("mount_timeout", mounts.MOUNT_TIMEOUT)),
                                    timeo=int(o.get("timeo", mounts.DEFAULT_TIMEO)),
                                    retrans=int(o.get("retrans", mounts.DEFAULT_RETRANS)))
            self.requested = _requested(self._mount_args["version"], o.get("mount_options"))
            self._mount()
            default_cold = "remount"
        cold = o.get("cold")  # a boolean is the [transfer] table's source-side cold: this transport's own modes are strings
        self.cold = cold if isinstance(cold, str) else default_cold
        if self.cold not in COLD_MODES:
            raise TransportError(f"{self.name}: cold {self.cold!r} is not one of {', '.join(COLD_MODES)}")
        if self.cold == "remount" and self._mount_args is None:
            raise TransportError(f"{self.name}: cold=remount needs rdmabench to own the mount "
                                 "(options.server and options.export); use cold=drop_caches for options.mount")
        if self.cold != "none" and not root:
            raise TransportError(f"{self.name}: cold={self.cold} needs root; use cold=none for a warm-cache figure")

    def _mount(self) -> None:
        try:
            mounts.mount(**self._mount_args)
        except mounts.NfsMountError as err:
            raise TransportError(f"{self.name}: {err}") from None
        self._owned = True

    def _remount(self) -> None:
        mounts.umount(self.mountpoint)
        self._owned = False
        self._mount()

    def _make_cold(self) -> None:
        if self.cold == "remount":
            self._remount()
        elif self.cold == "drop_caches":
            _drop_caches()

    def _export_path(self, item: Item, own: Path | None) -> Path:
        if _under(own, self.mountpoint):
            return Path(own)
        return self.mountpoint / item.lotus_type / item.sector_id

    def _direction(self, item: Item) -> str:
        if self.direction:
            return self.direction
        if _under(item.destination, self.mountpoint) and not _under(item.source, self.mountpoint):
            return "push"
        return "pull"

    def ready(self, item: Item) -> None:
        if self._direction(item) == "pull":
            self._make_cold()

    def move(self, item: Item) -> TransferRecord:
        if item.kind not in self.capabilities.kinds:
            raise TransportError(f"{self.name}: cannot move a {item.kind}")
        label = item.label
        direction = self._direction(item)
        if direction == "pull":
            src, dst = self._export_path(item, item.source), item.destination
            if dst is None:
                raise TransportError(f"{self.name}: {label} has no destination")
        else:
            src, dst = item.source, self._export_path(item, item.destination)
            if src is None:
                raise TransportError(f"{self.name}: {label} has no source")
        try:
            opts = mounts.check_proto(self.mountpoint, self.proto)  # after a remount too: never mislabel
        except mounts.NfsMountError as err:
            raise TransportError(f"{self.name}: {err}") from None
        if not os.path.exists(src):
            raise TransportError(f"{self.name}: {label}: {src} does not exist"
                                 + (" on the export" if direction == "pull" else ""))
        integrity.check_free_space(Path(dst).parent if Path(dst).parent.exists() else self.mountpoint, item.size)
        phases = {}
        try:
            t0 = time.perf_counter()
            with integrity.atomic_destination(dst, expected=item.digest) as d:
                total, digest = _copy_item(Path(src), d.path, item.kind, self.buf)
                t1 = time.perf_counter()
                if direction == "push":
                    # What the server holds, read back with a cold client (not our page cache).
                    if self.cold == "none" and self._mount_args is None and os.geteuid() != 0:
                        d.digest = integrity.digest(d.path)  # no way to go cold; recorded below
                    elif self._mount_args is not None:
                        self._remount()
                        d.digest = integrity.digest(d.path)
                    else:
                        _drop_caches()
                        d.digest = integrity.digest(d.path)
                    phases = {"transfer_s": t1 - t0, "verify_s": time.perf_counter() - t1}
                else:
                    d.digest = digest
        except OSError as err:
            raise TransportError(f"{self.name}: {label} ({direction}) {src} -> {dst}: {err}") from None
        return TransferRecord(
            transport=self.name, item=label, bytes=total, phases=phases,
            verified=item.digest is not None and d.verified, digest=d.digest, wire_bytes=None,
            extra={"kind": item.kind, "direction": direction,
                   "cold": self.cold if direction == "pull" else "n/a (push)",
                   "verify": "in-stream digest at the destination" if direction == "pull"
                   else ("read back through a fresh mount" if self._mount_args is not None
                         else "read back after drop_caches" if os.geteuid() == 0 else "read back, warm cache"),
                   "mount": opts, **self._asked(opts)})

    def _asked(self, applied: dict) -> dict:
        """What was asked for and where the kernel applied something else (nothing for a user's mount)."""
        if self.requested is None:
            return {}
        return {"requested": self.requested, "changed": variants.changes(self.requested, applied)}

    def teardown(self) -> None:
        if self._owned and self.mountpoint is not None:
            try:
                mounts.umount(self.mountpoint)
            finally:
                self._owned = False


@register
class NfsRdmaTransport(_NfsTransport):
    name = "nfs-rdma"
    proto = "rdma"


@register
class NfsTcpTransport(_NfsTransport):
    name = "nfs-tcp"
    proto = "tcp"
