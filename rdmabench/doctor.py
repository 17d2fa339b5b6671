"""`rdmabench doctor`: a preflight of a real host, one line per check, PASS/WARN/FAIL and the fix.

Everything is read, nothing is changed. Sources: sysfs (/sys/class/infiniband: ports, GIDs and their types and
netdevs, fw_ver, the bus device's numa_node and PCIe link; /sys/class/net/N: mtu, speed and, on mlx5, ecn/;
/sys/devices/system/cpu/cpu*/cpufreq/scaling_governor; .../clocksource/clocksource0/current_clocksource),
iproute2's `dcb pfc show dev N` and `ethtool -S N` (pause counters) where installed and supported.

What fails: what stops RDMA from working (no device, a port not ACTIVE, no RoCE v2 GID with an IPv4
address on Ethernet, a netdev MTU too small for the active MTU). What warns: what works but makes the
figures wrong or not hardware figures (soft-RoCE, a virtual machine or emulation, a small MTU, PCIe below
the port, a governor that scales, a clock source other than tsc, PFC/ECN that cannot be told or is off).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from . import devices, linerate
from .devices import read_sysfs
from .errors import RdmabenchError
from .linerate import ROCE_HEADROOM
from .results.context import virtualization

CPU_ROOT = Path("/sys/devices/system/cpu")
NODE_ROOT = Path("/sys/devices/system/node")
CLOCK_FILE = Path("/sys/devices/system/clocksource/clocksource0")


@dataclass
class Check:
    name: str
    status: str  # PASS, WARN, FAIL, or SKIP (does not apply here: said why)
    found: str
    fix: str = ""

    def line(self, prefix: str = "") -> str:
        text = f"{self.status:<4}  {prefix}{self.name:<15} {self.found}"
        return text + (f"\n      fix: {self.fix}" if self.fix and self.status != "PASS" else "")


@dataclass
class Env:
    """Where the doctor looks: the real system by default, fake trees in tests."""
    ib_root: Path = field(default_factory=lambda: devices.SYSFS_ROOT)
    net_root: Path = field(default_factory=lambda: devices.NET_ROOT)
    cpu_root: Path = CPU_ROOT
    node_root: Path = NODE_ROOT
    clock_dir: Path = CLOCK_FILE
    virt: str | None = None  # none, tcg, kvm, ... (None: ask results.context)
    run: Callable[[list[str]], tuple[int, str]] | None = None  # a command's (exit status, stdout+stderr)

    def sh(self, argv: list[str]) -> tuple[int, str] | None:
        """None where the tool is not installed."""
        if self.run:
            return self.run(argv)
        if not shutil.which(argv[0]):
            return None
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as err:
            return 1, str(err)
        return p.returncode, (p.stdout + p.stderr).strip()


def no_device(env: Env) -> list[Check]:
    return [Check("RDMA device", "FAIL", f"none under {env.ib_root}: no RDMA driver is loaded",
                  "hardware: modprobe mlx5_ib (ConnectX) and `rdma link show`; soft-RoCE: modprobe rdma_rxe && "
                  "rdma link add rxe0 type rxe netdev NETDEV; or try the lab: rdmabench lab -- rdmabench doctor")]


def checks(dev: devices.Device, env: Env) -> list[Check]:
    port = dev.ports[0] if dev.ports else None
    rxe = dev.driver in ("rdma_rxe", "rxe")
    out = [_driver(dev, rxe), _machine(env), _port(dev, port, rxe)]
    if port is None:
        return out
    nd = port.netdev
    out += [_link_layer(port), _mtu(dev, port), _gid(dev, port)]
    if port.link_layer == "Ethernet":
        out += [_pfc(nd, env, rxe), _ecn(nd, env, rxe), _pause(nd, env, rxe)]
    line = linerate.of(dev, port.number, env.ib_root, env.net_root)
    out += [_pcie(dev, line, rxe), _firmware(dev, rxe), _numa(dev, env, rxe), _governor(env), _clock(env)]
    return out


def _driver(dev, rxe: bool) -> Check:
    if rxe:
        return Check("driver", "WARN", f"{dev.name}: rdma_rxe, soft-RoCE: not a hardware figure",
                     "for hardware figures run on the NIC's RDMA device (ConnectX: mlx5_ib over mlx5_core)")
    if dev.driver:
        return Check("driver", "PASS", f"{dev.name}: {dev.driver}, hardware" + (f" ({dev.hca_type})" if dev.hca_type else ""))
    return Check("driver", "WARN", f"{dev.name}: its bus device names no driver",
                 f"ls -l /sys/class/infiniband/{dev.name}/device/driver; `rdma link show`")


def _machine(env: Env) -> Check:
    virt = env.virt if env.virt is not None else virtualization()
    if virt == "none":
        return Check("machine", "PASS", "bare metal")
    what = "emulation (QEMU TCG): absolute figures mean nothing" if virt == "tcg" else f"virtual machine ({virt})"
    return Check("machine", "WARN", what, "run on bare metal (or pass the NIC through with SR-IOV/VFIO) for hardware figures")


def _port(dev, port, rxe: bool = False) -> Check:
    if port is None:
        return Check("port", "FAIL", f"{dev.name} has no port in sysfs", "`rdma link show`; reload the driver")
    found = f"port {port.number}: {port.state}, {port.phys_state}" + (f", {port.rate}" if port.rate else "") + (
        " (rxe's rate is the kernel's stand-in, not its netdev's)" if rxe and port.rate else "")
    if port.state == "ACTIVE":
        return Check("port", "PASS", found)
    nd = port.netdev or "NETDEV"
    return Check("port", "FAIL", found, f"ip link set {nd} up; check the cable and the switch port "
                 f"(`ethtool {nd}`: Link detected); `rdma link show {dev.name}/{port.number}`")


def _link_layer(port) -> Check:
    if port.link_layer == "Ethernet":
        return Check("link layer", "PASS", "Ethernet (RoCE)")
    if port.link_layer == "InfiniBand":
        return Check("link layer", "PASS", "InfiniBand (RoCE checks below do not apply)")
    return Check("link layer", "WARN", f"{port.link_layer!r}", f"cat {devices.SYSFS_ROOT}/DEV/ports/1/link_layer")


def _mtu(dev, port) -> Check:
    nd, mtu, active = port.netdev, port.netdev_mtu, port.active_mtu
    if port.link_layer != "Ethernet":
        return Check("MTU", "PASS" if active else "WARN", f"active MTU {active or 'unknown'}")
    if mtu is None:
        return Check("MTU", "WARN", f"no netdev MTU known ({nd or 'no netdev'})", "ip link show; give the port an address")
    if active is None:
        inferred = linerate.active_mtu_from_netdev(mtu)
        return Check("MTU", "WARN", f"netdev {nd} MTU {mtu}; active MTU unknown (pyverbs could not ask), "
                     f"about {inferred}", "apt-get install python3-pyverbs; `ibv_devinfo -d " + dev.name + "`")
    found = f"netdev {nd} MTU {mtu}, active MTU {active}"
    if mtu < active + ROCE_HEADROOM:
        return Check("MTU", "FAIL", f"{found}: a {active}-byte RoCE packet needs netdev MTU >= {active + ROCE_HEADROOM}",
                     f"ip link set {nd} mtu 9000 (and the same or more on the switch ports), or use --mtu "
                     f"{linerate.active_mtu_from_netdev(mtu) or 256}")
    if active < 4096:
        return Check("MTU", "WARN", f"{found}: RoCE at MTU {active} carries "
                     f"{linerate.roce_goodput(100, active):.1f}% of the line, 4096 {linerate.roce_goodput(100, 4096):.1f}%",
                     f"ip link set {nd} mtu 9000 at both ends and on the switch (SN2700: mtu 9216 on its ports)")
    return Check("MTU", "PASS", found)


def _gid(dev, port) -> Check:
    if port.link_layer == "InfiniBand":
        return Check("GID", "PASS" if port.gids else "FAIL", f"{len(port.gids)} GID(s)", "check the subnet manager")
    v2 = [g for g in port.gids if g.type.lower().replace(" ", "") == "rocev2"]
    ok = [g for g in v2 if g.ipv4]
    if ok:
        g = ok[0]
        return Check("GID", "PASS", f"index {g.index}: RoCE v2 {g.compact} on {g.netdev}")
    found = ("no GID at all" if not port.gids else
             f"{len(port.gids)} GID(s), {len(v2)} RoCE v2, none with an IPv4 address")
    return Check("GID", "FAIL", found, f"ip addr add ADDRESS/24 dev {port.netdev or 'NETDEV'} (a RoCE v2 GID "
                 "appears with it; rdma_cm and rdmabench use it); check `rdmabench devices`")


def _cannot_tell(name: str, why: str, how: str) -> Check:
    return Check(name, "WARN", f"cannot tell: {why}", how)


def _pfc(nd, env: Env, rxe: bool) -> Check:
    if rxe:
        return Check("PFC", "SKIP", "soft-RoCE: no lossless fabric to configure")
    if not nd:
        return _cannot_tell("PFC", "no netdev", "give the port an address")
    how = (f"enable PFC on the RoCE priority at both NICs and on the switch: dcb pfc set dev {nd} prio-pfc 3:on "
           "(or run lossy with ECN/DCQCN); check with dcb pfc show dev " + nd)
    r = env.sh(["dcb", "pfc", "show", "dev", nd])
    if r is None:
        return _cannot_tell("PFC", "iproute2's dcb is not installed", "apt-get install iproute2 (5.11 or later); " + how)
    code, text = r
    if code != 0:
        return _cannot_tell("PFC", f"dcb pfc show dev {nd}: {text.splitlines()[-1] if text else f'exit {code}'}", how)
    on = re.findall(r"(\d):on", text)
    if on:
        return Check("PFC", "PASS", f"{nd}: PFC on priority {','.join(on)}")
    return Check("PFC", "WARN", f"{nd}: PFC off on every priority (RoCE runs lossy: drops under congestion "
                 "unless ECN/DCQCN reacts)", how)


def _ecn(nd, env: Env, rxe: bool) -> Check:
    if rxe:
        return Check("ECN", "SKIP", "soft-RoCE: no DCQCN")
    ecn = env.net_root / (nd or "-") / "ecn"
    if not ecn.is_dir():
        return _cannot_tell("ECN", f"{nd} shows no ecn/ in sysfs (mlx5 has /sys/class/net/N/ecn/roce_rp)",
                            "check the NIC vendor's tools for DCQCN, and ECN marking on the switch")
    rp = {p.name for p in (ecn / "roce_rp" / "enable").glob("*") if read_sysfs(p) == "1"} if (ecn / "roce_rp").is_dir() else set()
    np_ = {p.name for p in (ecn / "roce_np" / "enable").glob("*") if read_sysfs(p) == "1"} if (ecn / "roce_np").is_dir() else set()
    found = (f"{nd}: DCQCN reaction point on priority {','.join(sorted(rp)) or 'none'}, "
             f"notification point on {','.join(sorted(np_)) or 'none'}")
    if rp and np_:
        return Check("ECN", "PASS", found)
    return Check("ECN", "WARN", found, f"echo 1 > /sys/class/net/{nd}/ecn/roce_rp/enable/3 and .../roce_np/enable/3, "
                 "and ECN marking on the switch's RoCE queue")


def _pause(nd, env: Env, rxe: bool) -> Check:
    if rxe or not nd:
        return Check("pause frames", "SKIP", "soft-RoCE: no pause counters" if rxe else "no netdev")
    r = env.sh(["ethtool", "-S", nd])
    if r is None:
        return _cannot_tell("pause frames", "ethtool is not installed", f"apt-get install ethtool; ethtool -S {nd} | grep pause")
    code, text = r
    counters = dict(re.findall(r"^\s*(\w*pause\w*):\s*(\d+)", text, re.M)) if code == 0 else {}
    if not counters:
        return _cannot_tell("pause frames", f"ethtool -S {nd} shows no pause counters", f"ethtool -S {nd}")
    seen = {k: int(v) for k, v in counters.items() if int(v)}
    found = ", ".join(f"{k}={v}" for k, v in sorted(seen.items())[:6]) or "all zero"
    return Check("pause frames", "PASS", f"{nd}: {len(counters)} pause counters, {found} (nonzero: PFC is working "
                 "against congestion; growing fast during a run: a congested or misconfigured link)")


def _pcie(dev, line: dict, rxe: bool) -> Check:
    if rxe:
        return Check("PCIe", "SKIP", "soft-RoCE: no PCIe device of its own")
    link = line.get("pcie")
    if not link or not link.get("gbps"):
        return _cannot_tell("PCIe", f"no PCIe link in {devices.SYSFS_ROOT}/{dev.name}/device (a VF, or a bus "
                            "sysfs does not describe)", f"lspci -vv -s $(basename $(readlink "
                            f"/sys/class/infiniband/{dev.name}/device)) | grep LnkSta")
    found = (f"{link['speed_gts']:g} GT/s x{link['width']} ~{link['gbps']:.1f} Gb/s (estimate; max "
             f"{link.get('max_speed') or '?'} x{link.get('max_width') or '?'})")
    wire = line.get("roce_goodput_gbps") or line.get("port_gbps")
    down = link.get("max_width") and link["max_width"].isdigit() and int(link["max_width"]) > link["width"]
    if wire and link["gbps"] < wire:
        return Check("PCIe", "WARN", f"{found} below the port's {wire:.1f} Gb/s",
                     "move the NIC to a slot with its full width (x16 for 100 GbE at Gen3)" +
                     ("; it is trained below its max width" if down else ""))
    if down:
        return Check("PCIe", "WARN", f"{found}: trained below its max width", "reseat the card or use a full-width slot")
    return Check("PCIe", "PASS", found + (f", above the port's {wire:.1f} Gb/s" if wire else ""))


def _firmware(dev, rxe: bool) -> Check:
    if rxe:
        return Check("firmware", "SKIP", "soft-RoCE has no firmware")
    if dev.fw_ver:
        return Check("firmware", "PASS", f"{dev.fw_ver}" + (f" (board {dev.board_id})" if dev.board_id else "")
                     + ": recorded in every result; compare with the vendor's current release")
    return Check("firmware", "WARN", "fw_ver not readable", f"cat /sys/class/infiniband/{dev.name}/fw_ver; ibv_devinfo")


def _numa(dev, env: Env, rxe: bool) -> Check:
    nodes = sorted(p.name for p in env.node_root.glob("node[0-9]*")) if env.node_root.is_dir() else []
    if rxe:
        return Check("NUMA", "SKIP", "soft-RoCE: follows its netdev")
    node = read_sysfs(env.ib_root / dev.name / "device" / "numa_node")
    if len(nodes) <= 1:
        return Check("NUMA", "PASS", f"{len(nodes) or 'one'} NUMA node: nothing to place")
    if node is None or node == "-1":
        return Check("NUMA", "WARN", f"{len(nodes)} NUMA nodes, the NIC's is not reported",
                     "enable NUMA/SRAT reporting in the BIOS; until then pin by hand with numactl")
    return Check("NUMA", "PASS", f"NIC on node {node} of {len(nodes)}: run there "
                 f"(numactl --cpunodebind={node} --membind={node} rdmabench ...)")


def _governor(env: Env) -> Check:
    govs = {}
    for f in sorted(env.cpu_root.glob("cpu[0-9]*/cpufreq/scaling_governor")):
        govs.setdefault(read_sysfs(f) or "?", []).append(f.parent.parent.name)
    if not govs:
        return _cannot_tell("CPU governor", "no cpufreq in sysfs (a VM, or the firmware sets the frequency)",
                            "on bare metal: cpupower frequency-info; set the BIOS power profile to performance")
    found = ", ".join(f"{g} on {len(c)} CPU(s)" for g, c in govs.items())
    if set(govs) == {"performance"}:
        return Check("CPU governor", "PASS", found)
    return Check("CPU governor", "WARN", f"{found}: latency and CPU figures vary with the clock",
                 "cpupower frequency-set -g performance (for the run)")


def _clock(env: Env) -> Check:
    cs = read_sysfs(env.clock_dir / "current_clocksource")
    avail = read_sysfs(env.clock_dir / "available_clocksource") or ""
    if cs is None:
        return _cannot_tell("clock source", "current_clocksource not readable", "dmesg | grep -i clocksource")
    if cs == "tsc":
        return Check("clock source", "PASS", "tsc")
    fix = ("echo tsc > /sys/devices/system/clocksource/clocksource0/current_clocksource" if "tsc" in avail.split()
           else "the kernel marked the TSC unstable (dmesg | grep -i tsc): check the BIOS, or tsc=reliable on bare metal")
    return Check("clock source", "WARN", f"{cs} (available: {avail or '?'}): each clock read costs microseconds, "
                 "latency timing is skewed", fix)


def run(device: str | None, env: Env | None = None) -> tuple[str | None, list[Check]]:
    """(the device checked, its checks). A --device that is not here raises DeviceNotFound listing those that are."""
    env = env or Env()
    names = devices.device_names(env.ib_root)
    if device is None and not names:
        return None, no_device(env)
    dev = devices.choose(device, root=env.ib_root)
    return dev.name, checks(dev, env)


def failed(results: list[Check]) -> bool:
    return any(c.status == "FAIL" for c in results)


def as_dicts(results: list[Check]) -> list[dict]:
    return [asdict(c) for c in results]


def service(device: str | None):
    """The "doctor" service of `rdmabench serve`: this host's checks, on request (no input is read)."""
    def handle(chan, hello) -> None:
        try:
            name, results = run(device)
        except RdmabenchError as err:
            name, results = device, [Check("RDMA device", "FAIL", str(err))]
        chan.send("doctor", device=name, checks=as_dicts(results))
    return handle
