"""RDMA device discovery: devices, ports and GIDs, read from sysfs.

Everything here comes from /sys/class/infiniband, which every RDMA driver
(mlx5_ib, rxe, ...) fills the same way, so discovery works without opening a
verbs context. The one fact sysfs lacks, a port's active MTU, is asked of
pyverbs when it is importable.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import DeviceNotFound, NoDevices, RdmabenchError

SYSFS_ROOT = Path("/sys/class/infiniband")
NET_ROOT = Path("/sys/class/net")  # netdevs: their MTU (tests point this at a fake tree)

LAB_HINT = (
    "To try rdmabench without RDMA hardware, run it inside the soft-RoCE lab:\n"
    "  rdmabench lab -- rdmabench devices\n"
    "On real hardware, load the NIC's RDMA driver (for ConnectX: modprobe mlx5_ib) "
    "and check `rdma link`."
)


@dataclass
class Gid:
    index: int
    gid: str  # as the kernel prints it: 8 groups of 4 hex digits
    type: str  # "RoCE v2", "IB/RoCE v1", ...
    netdev: str | None
    ipv4: str | None  # the IPv4 address of an IPv4-mapped GID

    @property
    def compact(self) -> str:
        """Short form; an IPv4-mapped GID shows its IPv4 address (::ffff:10.77.0.1)."""
        return f"::ffff:{self.ipv4}" if self.ipv4 else str(ipaddress.IPv6Address(self.gid))


@dataclass
class Port:
    number: int
    state: str  # ACTIVE, DOWN, ...
    phys_state: str  # LinkUp, Disabled, ...
    link_layer: str  # Ethernet or InfiniBand
    rate: str | None
    active_mtu: int | None  # bytes; None when pyverbs could not be asked
    max_msg_sz: int | None
    netdev: str | None
    netdev_mtu: int | None
    gids: list[Gid] = field(default_factory=list)
    recommended_gid_index: int | None = None


@dataclass
class Device:
    name: str
    fw_ver: str | None
    node_guid: str | None
    hca_type: str | None
    board_id: str | None
    driver: str | None
    ports: list[Port] = field(default_factory=list)
    max_qp_rd_atom: int | None = None  # RDMA READs one QP may have outstanding (perftest's -o default)
    max_qp_wr: int | None = None  # the deepest send or receive queue one QP may have
    max_cqe: int | None = None  # the most entries one completion queue may hold

    def to_dict(self) -> dict:
        return asdict(self)


def read_sysfs(path: Path) -> str | None:
    """A sysfs attribute's text, stripped; None where it cannot be read (absent, or the driver refuses)."""
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _after_colon(value: str | None) -> str:
    """sysfs port state reads like '4: ACTIVE'; keep the word."""
    if not value:
        return "unknown"
    return value.split(":", 1)[-1].strip()


def _ipv4_of(gid: str) -> str | None:
    try:
        mapped = ipaddress.IPv6Address(gid).ipv4_mapped
    except ValueError:
        return None
    return str(mapped) if mapped else None


def _gids(port_dir: Path) -> list[Gid]:
    gids = []
    gid_dir = port_dir / "gids"
    if not gid_dir.is_dir():
        return gids
    for entry in sorted(gid_dir.iterdir(), key=lambda p: int(p.name)):
        value = read_sysfs(entry)
        if not value or set(value.replace(":", "")) == {"0"}:
            continue  # an unused slot of the GID table
        index = int(entry.name)
        gids.append(
            Gid(
                index=index,
                gid=value,
                type=read_sysfs(port_dir / "gid_attrs" / "types" / entry.name) or "unknown",
                netdev=read_sysfs(port_dir / "gid_attrs" / "ndevs" / entry.name),
                ipv4=_ipv4_of(value),
            )
        )
    return gids


def recommend_gid_index(link_layer: str, gids: list[Gid]) -> int | None:
    """The GID index to use by default.

    InfiniBand: index 0. RoCE: the RoCE v2 GID that carries an IPv4 address
    (routable, what rdma_cm picks for an IPv4 peer); else any RoCE v2 GID;
    else the first GID.
    """
    if not gids:
        return None
    if link_layer.lower() == "infiniband":
        return gids[0].index
    v2 = [g for g in gids if g.type.lower().replace(" ", "") == "rocev2"]
    for g in v2:
        if g.ipv4:
            return g.index
    return (v2 or gids)[0].index


def verbs_facts(device: str) -> dict:
    """What only the verbs API tells: firmware, max message size, each port's active MTU.

    Empty when pyverbs is missing or the device cannot be opened: the device is
    still listed from sysfs.
    """
    try:
        from pyverbs.device import Context  # Debian's python3-pyverbs
    except ImportError:
        return {}
    try:
        with Context(name=device) as ctx:
            attr = ctx.query_device()
            facts = {"fw_ver": getattr(attr, "fw_version", None) or None, "ports": {},
                     "max_qp_rd_atom": int(attr.max_qp_rd_atom), "max_qp_wr": int(attr.max_qp_wr),
                     "max_cqe": int(attr.max_cqe)}
            for port in range(1, attr.phys_port_cnt + 1):
                pattr = ctx.query_port(port)
                facts["ports"][port] = {
                    "active_mtu": 128 << int(pattr.active_mtu),  # IBV_MTU_256 == 1 ... IBV_MTU_4096 == 5
                    "max_msg_sz": int(pattr.max_msg_sz),
                }
            return facts
    except Exception:  # a device that cannot be opened still gets listed
        return {}


def _port(dev_dir: Path, port_dir: Path, facts: dict) -> Port:
    number = int(port_dir.name)
    link_layer = read_sysfs(port_dir / "link_layer") or "unknown"
    gids = _gids(port_dir)
    netdevs = [g.netdev for g in gids if g.netdev]
    netdev = netdevs[0] if netdevs else None
    if netdev is None:
        # IB ports and RoCE ports with no address yet: the device's net/ folder
        net_dir = dev_dir / "device" / "net"
        if net_dir.is_dir():
            names = sorted(p.name for p in net_dir.iterdir())
            netdev = names[0] if names else None
    mtu = read_sysfs(NET_ROOT / netdev / "mtu") if netdev else None
    return Port(
        number=number,
        state=_after_colon(read_sysfs(port_dir / "state")),
        phys_state=_after_colon(read_sysfs(port_dir / "phys_state")),
        link_layer=link_layer,
        rate=read_sysfs(port_dir / "rate"),
        active_mtu=facts.get("active_mtu"),
        max_msg_sz=facts.get("max_msg_sz"),
        netdev=netdev,
        netdev_mtu=int(mtu) if mtu and mtu.isdigit() else None,
        gids=gids,
        recommended_gid_index=recommend_gid_index(link_layer, gids),
    )


def device_names(root: Path = SYSFS_ROOT) -> list[str]:
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir())


def describe(name: str, root: Path = SYSFS_ROOT) -> Device:
    dev_dir = root / name
    if not dev_dir.is_dir():
        raise DeviceNotFound(not_found_message(name, device_names(root)))
    driver_link = dev_dir / "device" / "driver"
    driver = os.path.basename(os.readlink(driver_link)) if driver_link.is_symlink() else None
    if driver is None and name.startswith("rxe"):
        driver = "rdma_rxe"  # soft-RoCE sits on a netdev, not on a bus device
    facts = verbs_facts(name) if root == SYSFS_ROOT else {}
    ports_dir = dev_dir / "ports"
    ports = []
    if ports_dir.is_dir():
        for port_dir in sorted(ports_dir.iterdir(), key=lambda p: int(p.name)):
            ports.append(_port(dev_dir, port_dir, facts.get("ports", {}).get(int(port_dir.name), {})))
    return Device(
        name=name,
        fw_ver=read_sysfs(dev_dir / "fw_ver") or facts.get("fw_ver"),
        node_guid=read_sysfs(dev_dir / "node_guid"),
        hca_type=read_sysfs(dev_dir / "hca_type"),
        board_id=read_sysfs(dev_dir / "board_id"),
        driver=driver,
        ports=ports,
        max_qp_rd_atom=facts.get("max_qp_rd_atom"),
        max_qp_wr=facts.get("max_qp_wr"),
        max_cqe=facts.get("max_cqe"),
    )


def not_found_message(name: str, names: list[str]) -> str:
    if names:
        return f"no RDMA device named {name!r}; devices on this host: {', '.join(names)}"
    return f"no RDMA device named {name!r}: this host has no RDMA devices.\n{LAB_HINT}"


def discover(root: Path = SYSFS_ROOT) -> list[Device]:
    """All devices, or NoDevices with advice when there are none."""
    names = device_names(root)
    if not names:
        raise NoDevices(f"No RDMA devices on this host ({root} is empty or absent).\n{LAB_HINT}")
    return [describe(n, root) for n in names]


def choose(name: str | None = None, required: bool = True, root: Path = SYSFS_ROOT) -> Device | None:
    """The device every command uses: the named one, else the only one here. Several and none named is
    an error listing them; none at all is NoDevices, or None where the command can do without
    (``required=False``: transfers over http, shared or NFS)."""
    if name:
        return require(name, root)
    names = device_names(root)
    if not names:
        if not required:
            return None
        discover(root)  # raises NoDevices with the lab's hint
    if len(names) > 1:
        raise RdmabenchError(f"several RDMA devices here ({', '.join(names)}): choose one with --device")
    return describe(names[0], root)


def require(name: str, root: Path = SYSFS_ROOT) -> Device:
    """The named device, or DeviceNotFound listing the ones there are."""
    return describe(name, root)
