"""The lab's kernel NFS server (RDMA on 20049 and TCP on 2049), set up inside a guest as root.

    python -m rdmabench.nfs.server start --export /srv/nfsexp --size 512m [--generate 32GiB:pc1:0.0002 ...]
    python -m rdmabench.nfs.server stop [--export /srv/nfsexp]
    python -m rdmabench.nfs.server status

``start`` follows docs/lab.md's verified recipe: a tmpfs on /var/lib/nfs (the state files), rpc_pipefs,
a tmpfs of ``--size`` as the export (the guest's 9p root cannot be exported), the export in
/etc/exports (``rw,fsid=0,no_subtree_check,no_root_squash,insecure,async``; when /etc/exports is not
writable, ``exportfs -o`` with the same options instead), nfsd with lease and grace times of 10 s,
rpcbind, rpc.mountd, ``rpc.nfsd 8``, then ``rdma 20049`` added to /proc/fs/nfsd/portlist and the
grace period ended. Each ``--generate SIZE:STAGE[:SCALE]`` writes a sector's files into the export
(workloads.sector.generate: Lotus layout, a manifest with every file's digest at
``<export>/.rdmabench-manifest.json``) BEFORE nfsd starts, so a client that can mount finds them.
Last, ``<export>/.rdmabench-nfs-ready`` (JSON: ports, sectors, digests, nfsd's max_block_size) is written and
``rdmabench-nfs: ready ...`` printed; it exits 0 and the kernel server keeps running.

``stop``: ``rpc.nfsd 0``, ``exportfs -ua``, mountd and rpcbind killed (by the pids they run under),
the export's tmpfs left in place (``--unmount`` removes it too).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from ..errors import RdmabenchError
from .mounts import RDMA_PORT, TCP_PORT, read_mounts

EXPORT_OPTIONS = "rw,fsid=0,no_subtree_check,no_root_squash,insecure,async"
READY_FILE = ".rdmabench-nfs-ready"
READY_MARKER = "rdmabench-nfs: ready"
STATE_DIR = Path("/var/lib/nfs")
PIPEFS = Path("/run/rpc_pipefs")
NFSD_FS = Path("/proc/fs/nfsd")
EXPORTS = Path("/etc/exports")


class NfsServerError(RdmabenchError):
    pass


def _run(*argv: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise NfsServerError(f"{argv[0]} is not installed (Debian: nfs-kernel-server, nfs-common, rpcbind)") from None
    except subprocess.TimeoutExpired:
        raise NfsServerError(f"{' '.join(argv)} did not finish in {timeout:g} s") from None
    if check and done.returncode != 0:
        raise NfsServerError(f"{' '.join(argv)} failed: {(done.stderr or done.stdout).strip() or done.returncode}")
    return done


def _mounted(path: Path, fstype: str | None = None) -> bool:
    p = os.path.normpath(str(path))
    return any(os.path.normpath(m.target) == p and (fstype is None or m.fstype == fstype) for m in read_mounts())


def _write(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _pids(name: str) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "comm").read_text().strip() == name:
                    out.append(int(d.name))
            except OSError:
                pass
    return out


def _prepare_export(export: Path, size: str) -> None:
    """A tmpfs of ``size`` at ``export``; its parent is created, or (read-only and empty) given a tmpfs."""
    if _mounted(export, "tmpfs"):
        return
    try:
        export.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        parent = export.parent
        if err.errno != 30 or not parent.is_dir() or any(parent.iterdir()):
            raise NfsServerError(f"cannot create the export directory {export}: {err}; "
                                 "choose an export under /tmp or a writable, empty parent") from None
        _run("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(parent))
        export.mkdir(parents=True, exist_ok=True)
    _run("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(export))


def _generate(export: Path, specs: list[str]) -> list[dict]:
    from ..workloads import sector

    out = []
    for i, spec in enumerate(specs):
        parts = spec.split(":")
        if len(parts) not in (2, 3):
            raise NfsServerError(f"--generate {spec!r}: write SIZE:STAGE[:SCALE], e.g. 32GiB:pc1:0.0002")
        shape = sector.shape(parts[0], parts[1], scale=parts[2] if len(parts) == 3 else 1, number=i + 1)
        gen = sector.generate(shape, export)
        out.append({"spec": spec, "sector_id": shape.sector_id, "stage": shape.stage,
                    "sealed_bytes": shape.sealed_bytes, "cache_bytes": shape.cache_bytes,
                    "sealed_digest": gen.sealed_digest, "cache_digest": gen.cache_digest})
    return out


def start(export: Path, size: str = "512m", generate: list[str] | None = None, threads: int = 8,
          rdma_port: int = RDMA_PORT, grace: int = 10) -> dict:
    if os.geteuid() != 0:
        raise NfsServerError("the NFS server is set up as root (inside the lab guest)")
    export = Path(export).absolute()
    t0 = time.monotonic()
    # State files on a tmpfs: the guest's /var may be read-only or shared.
    if not _mounted(STATE_DIR, "tmpfs"):
        _run("mount", "-t", "tmpfs", "tmpfs", str(STATE_DIR))
    for d in ("sm", "sm.bak", "v4recovery"):
        (STATE_DIR / d).mkdir(exist_ok=True)
    for f in ("etab", "rmtab", "state"):
        (STATE_DIR / f).touch()
    PIPEFS.mkdir(parents=True, exist_ok=True)
    if not _mounted(PIPEFS):
        _run("mount", "-t", "rpc_pipefs", "sunrpc", str(PIPEFS))
    _prepare_export(export, size)
    sectors = _generate(export, generate or [])
    _run("modprobe", "nfsd")
    _run("modprobe", "rpcrdma")
    if not _mounted(NFSD_FS):
        _run("mount", "-t", "nfsd", "nfsd", str(NFSD_FS))
    if not _pids("nfsd"):  # lease and grace times can only be set while nfsd is down
        _write(NFSD_FS / "nfsv4leasetime", f"{grace}\n")
        _write(NFSD_FS / "nfsv4gracetime", f"{grace}\n")
    if not _pids("rpcbind"):
        _run("rpcbind", "-w")
    line = f"{export} *({EXPORT_OPTIONS})\n"
    try:
        _write(EXPORTS, line)
        how = "/etc/exports"
        _run("exportfs", "-ra")
    except OSError:
        how = "exportfs -o"
        _run("exportfs", "-o", EXPORT_OPTIONS, f"*:{export}")
    if not _pids("rpc.mountd"):
        _run("rpc.mountd")
    _run("rpc.nfsd", str(threads))
    portlist = (NFSD_FS / "portlist").read_text()
    if f"rdma {rdma_port}" not in portlist:
        _write(NFSD_FS / "portlist", f"rdma {rdma_port}\n")
        portlist = (NFSD_FS / "portlist").read_text()
    if f"rdma {rdma_port}" not in portlist or f"tcp {TCP_PORT}" not in portlist:
        raise NfsServerError(f"nfsd is not listening on rdma {rdma_port} and tcp {TCP_PORT}: portlist {portlist!r}")
    try:
        _write(NFSD_FS / "v4_end_grace", "Y\n")
    except OSError:
        pass  # older kernels: the (10 s) grace period just runs out
    info = {"export": str(export), "exported_by": how, "options": EXPORT_OPTIONS, "rdma_port": rdma_port,
            "tcp_port": TCP_PORT, "threads": threads, "max_block_size": _max_block_size(), "ip": os.environ.get("RDMABENCH_IP"), "sectors": sectors,
            "v3_path": str(export), "v4_path": "/", "seconds": round(time.monotonic() - t0, 2)}
    tmp = export / f".{READY_FILE}.tmp"
    tmp.write_text(json.dumps(info, indent=1))
    os.replace(tmp, export / READY_FILE)
    return info


def _max_block_size() -> int | None:
    """nfsd's largest READ/WRITE payload (it sizes it from the host's memory: 256 KiB in a 2 GiB guest):
    clients asking for a larger rsize/wsize get this instead."""
    try:
        return int((NFSD_FS / "max_block_size").read_text())
    except (OSError, ValueError):
        return None


def stop(export: Path | None = None, unmount: bool = False) -> None:
    if os.geteuid() != 0:
        raise NfsServerError("stopping the NFS server needs root")
    _run("rpc.nfsd", "0", check=False)
    _run("exportfs", "-ua", check=False)
    for name in ("rpc.mountd", "rpcbind"):
        for pid in _pids(name):
            try:
                os.kill(pid, 15)
            except ProcessLookupError:
                pass
    if export is not None:
        (Path(export) / READY_FILE).unlink(missing_ok=True)
        if unmount and _mounted(Path(export)):
            _run("umount", str(export), check=False)


def status() -> dict:
    try:
        portlist = (NFSD_FS / "portlist").read_text().split("\n")
    except OSError:
        portlist = []
    return {"nfsd_threads": len(_pids("nfsd")), "portlist": [p for p in portlist if p],
            "mountd": bool(_pids("rpc.mountd")), "rpcbind": bool(_pids("rpcbind"))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rdmabench.nfs.server", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start", help="set up and start the kernel NFS server (RDMA 20049, TCP 2049)")
    s.add_argument("--export", default="/srv/nfsexp", type=Path)
    s.add_argument("--size", default="512m", help="size of the export's tmpfs (mount's size=, e.g. 512m, 2g)")
    s.add_argument("--generate", action="append", default=[], metavar="SIZE:STAGE[:SCALE]",
                   help="write a sector into the export (e.g. 32GiB:pc1:0.0002); repeat for more (numbers 1, 2, ...)")
    s.add_argument("--threads", type=int, default=8)
    s.add_argument("--rdma-port", type=int, default=RDMA_PORT)
    s.add_argument("--grace", type=int, default=10, help="NFSv4 lease and grace time, seconds")
    p = sub.add_parser("stop", help="stop nfsd, unexport, stop mountd and rpcbind")
    p.add_argument("--export", type=Path)
    p.add_argument("--unmount", action="store_true", help="also unmount the export's tmpfs")
    sub.add_parser("status", help="nfsd threads, ports, mountd/rpcbind")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "start":
            info = start(a.export, a.size, a.generate, a.threads, a.rdma_port, a.grace)
            sectors = " ".join(f"{x['sector_id']}({x['stage']})" for x in info["sectors"]) or "none"
            print(f"{READY_MARKER} export={info['export']} rdma={info['rdma_port']} tcp={info['tcp_port']} "
                  f"via={info['exported_by'].replace(' ', '_')} sectors={sectors} in {info['seconds']} s", flush=True)
        elif a.cmd == "stop":
            stop(a.export, a.unmount)
            print("rdmabench-nfs: stopped", flush=True)
        else:
            print(json.dumps(status()))
    except RdmabenchError as err:
        print(f"rdmabench-nfs: error: {err}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
