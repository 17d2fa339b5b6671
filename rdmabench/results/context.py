"""The context a result carries: where it ran, on what, with which software.

Collected in one place so no runner needs to know how (pyperf's
_collect_metadata.py is the model). Every figure rdmabench reports is labelled
with `environment`: measured on RDMA hardware, or on soft-RoCE (rxe), and then
whether under emulation (TCG) where absolute numbers mean nothing.
"""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
from pathlib import Path

import psutil

from .. import __version__, devices, linerate


def _first(path: str, key: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _os_release() -> str | None:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return None


@functools.lru_cache(maxsize=None)  # installed versions do not change under a run; crosscheck asks per pair
def _package_version(name: str) -> str | None:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", name], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def virtualization() -> str:
    """'none' on bare metal; 'tcg' or 'kvm' inside QEMU; else the hypervisor's name if known."""
    accel = os.environ.get("RDMABENCH_LAB_ACCEL")
    if accel:
        return accel
    flags = _first("/proc/cpuinfo", "flags") or ""
    if "hypervisor" not in flags.split():
        return "none"
    vendor = (Path("/sys/class/dmi/id/sys_vendor").read_text().strip()
              if Path("/sys/class/dmi/id/sys_vendor").exists() else "")
    return vendor.lower() or "unknown-hypervisor"


def container(root: Path = Path("/")) -> str | None:
    """The container engine this process runs under, by the file each leaves in its containers: podman's
    /run/.containerenv, docker's /.dockerenv; None outside one."""
    if (root / "run/.containerenv").exists():
        return "podman"
    if (root / ".dockerenv").exists():
        return "docker"
    return None


def environment(driver: str | None, virt: str) -> str:
    if driver == "rdma_rxe" or driver == "rxe":
        if virt == "tcg":
            return "soft-RoCE (rxe) under emulation (QEMU TCG): ratios only, not a hardware figure"
        return f"soft-RoCE (rxe), virtualization {virt}: not a hardware figure"
    if driver is None:  # TCP and files only (http, shared, a live Lotus fetch): real figures on bare metal
        return "hardware, no RDMA device" if virt == "none" else f"no RDMA device, virtual machine ({virt})"
    return "hardware" if virt == "none" else f"hardware NIC in a virtual machine ({virt})"


def is_hardware(environment_text: str) -> bool:
    """Whether a figure measured there is a hardware figure: bare metal, and no soft-RoCE."""
    return environment_text.startswith("hardware") and "virtual machine" not in environment_text


def timer() -> dict:
    """The clock the native hot loops read, and what the kernel's own clock costs here."""
    out = {"clocksource": None, "native": None, "tsc_hz": None, "clock_gettime_ns": None}
    try:
        out["clocksource"] = Path("/sys/devices/system/clocksource/clocksource0/current_clocksource").read_text().strip()
    except OSError:
        pass
    try:
        from ..engines.native import clock

        native = clock()
    except Exception:  # the extension not built: the python engine still runs
        return out
    out.update(native=native["timer"], tsc_hz=native["tsc_hz"], clock_gettime_ns=round(native["clock_gettime_ns"], 1))
    return out


def host() -> dict:
    uname = platform.uname()
    return {
        "hostname": socket.gethostname(),
        "kernel": uname.release,
        "os": _os_release(),
        "machine": uname.machine,
        "cpu_model": _first("/proc/cpuinfo", "model name"),
        "cpu_count": psutil.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "python": platform.python_version(),
        "rdmabench": __version__,
        "rdma_core": _package_version("rdma-core"),
        "libibverbs": _package_version("libibverbs1"),
        "perftest": _package_version("perftest"),
        "virtualization": virtualization(),
        "container": container(),
        "timer": timer(),
    }


def device(name: str, gid_index: int | None, port: int = 1, dev: devices.Device | None = None) -> dict:
    """``dev``: the device as the caller just described it (devices.describe reads every GID's sysfs files:
    ~1.7 s under the lab's emulation), else it is described here."""
    dev = dev if dev is not None and dev.name == name else devices.require(name)
    p = next((x for x in dev.ports if x.number == port), None)
    gid = next((g for g in (p.gids if p else []) if g.index == gid_index), None)
    return {
        "name": dev.name,
        "driver": dev.driver,
        "firmware": dev.fw_ver,
        "node_guid": dev.node_guid,
        "hca_type": dev.hca_type,
        "port": port,
        "port_state": p.state if p else None,
        "link_layer": p.link_layer if p else None,
        "rate": p.rate if p else None,
        "active_mtu": p.active_mtu if p else None,
        "max_msg_sz": p.max_msg_sz if p else None,
        "netdev": p.netdev if p else None,
        "netdev_mtu": p.netdev_mtu if p else None,
        "gid_index": gid_index,
        "gid": gid.compact if gid else None,
        "gid_type": gid.type if gid else None,
        "line_rate": linerate.of(dev, port, devices.SYSFS_ROOT, devices.NET_ROOT),  # the port's physical limit
    }


def collect(device_name: str | None = None, gid_index: int | None = None, port: int = 1,
            dev: devices.Device | None = None) -> dict:
    ctx = {"host": host()}
    if device_name:
        ctx["device"] = device(device_name, gid_index, port, dev)
    driver = ctx.get("device", {}).get("driver")
    ctx["environment"] = environment(driver, ctx["host"]["virtualization"])
    ctx["hardware"] = is_hardware(ctx["environment"])
    return ctx
