"""The physical limit of a path, so that every bandwidth figure can say what share of it was reached.

One job: from sysfs, the most payload a port can carry, as the smallest of

- the port's rate (/sys/class/infiniband/D/ports/P/rate, "100 Gb/sec (4X EDR)"; the kernel's
  Documentation/ABI/testing/sysfs-class-infiniband);
- RoCE v2 goodput at the active MTU: rate x payload / (payload + per-packet overhead) (below);
- the NIC's PCIe link (/sys/class/infiniband/D/device/current_link_speed "8.0 GT/s PCIe" and
  current_link_width "16"; Documentation/ABI/testing/sysfs-bus-pci), after line encoding and an
  estimate of the TLP overhead (below);
- for soft-RoCE (rxe): the underlying netdev's /sys/class/net/N/speed (Mb/s) where it is > 0. rxe's own
  "rate" is made up by the kernel when the netdev does not report a speed (ib_get_eth_speed falls back
  to 1X SDR), so it is never used; a netdev with speed -1 (virtio, dummy) gives no limit at all: none.

Per-packet overhead on Ethernet, counted once per MTU-sized packet of a large message (82 B):
  preamble + SFD 8, Ethernet header 14, FCS 4, inter-frame gap 12     (IEEE 802.3: 38 B on the wire)
  IPv4 20, UDP 8                                                       (RFC 791, RFC 768)
  BTH 12, ICRC 4                                                       (InfiniBand Architecture Specification
                                                                        vol. 1, ch. 9; RoCE v2: its Annex A17)
Not counted: the RETH (16 B) on the first packet of each RDMA WRITE/READ request, the AETH (4 B) of
READ responses, ACK packets on the reverse path, and a VLAN tag (4 B) where one is used. For the
large messages a line-rate figure is judged at (64 KiB = 16 packets at MTU 4096) these are under
0.03 % each. At MTU 4096: 4096 / 4178 = 98.04 % (98.04 Gb/s of 100 Gb/s), at 1024: 92.59 %.

PCIe: GT/s per lane x lanes x encoding (8b/10b for 2.5 and 5.0 GT/s, Gen1/2; 128b/130b for 8, 16 and
32 GT/s, Gen3-5), times TLP efficiency. The TLP figure is an ESTIMATE: sysfs does not expose the
negotiated Max Payload Size (only `lspci -vv`'s DevCtl shows it), so 256 B is assumed (what servers
commonly negotiate for ConnectX cards), with 24 B per TLP (a 16 B 4DW header with 64-bit addresses,
2 B sequence number, 4 B LCRC, 2 B framing). 256 / 280 = 91.4 %. Read requests, completions
for descriptors, doorbells and flow-control DLLPs cost a few percent more that is not counted: the real
ceiling is somewhat lower, never higher. Gen3 x16: 115.2 Gb/s; Gen3 x8: 57.6 Gb/s (63.0 before TLPs).
"""

from __future__ import annotations

import re
from pathlib import Path

from .devices import read_sysfs

IB_ROOT = Path("/sys/class/infiniband")
NET_ROOT = Path("/sys/class/net")

ETHERNET_OVERHEAD = {"preamble_sfd": 8, "ethernet_header": 14, "fcs": 4, "inter_frame_gap": 12}
ROCE_V2_OVERHEAD = {"ipv4": 20, "udp": 8, "bth": 12, "icrc": 4}
PACKET_OVERHEAD = sum(ETHERNET_OVERHEAD.values()) + sum(ROCE_V2_OVERHEAD.values())  # 82 B
# include/rdma/ib_addr.h iboe_get_mtu(): what the kernel keeps free for RoCE headers inside the netdev's MTU
# (GRH 40, UDP 8, BTH 12, XRC 4, atomic ext 28, ICRC 4) when it picks a port's active MTU
ROCE_HEADROOM = 96
IB_MTUS = (256, 512, 1024, 2048, 4096)
TLP_PAYLOAD = 256  # assumed Max Payload Size (bytes)
TLP_OVERHEAD = 24  # header 16 + sequence 2 + LCRC 4 + framing 2 (bytes, estimated)
PCIE_ENCODING = {2.5: 8 / 10, 5.0: 8 / 10, 8.0: 128 / 130, 16.0: 128 / 130, 32.0: 128 / 130}


def parse_rate(text: str | None) -> float | None:
    """Gb/s from a port's rate file: "100 Gb/sec (4X EDR)" -> 100.0, "2.5 Gb/sec (1X SDR)" -> 2.5."""
    m = re.match(r"\s*([0-9.]+)\s*Gb/sec", text or "")
    return float(m.group(1)) if m else None


def roce_goodput(wire_gbps: float, mtu: int) -> float:
    """RoCE v2 payload Gb/s on a link of ``wire_gbps`` with ``mtu``-byte packets (82 B overhead each)."""
    return wire_gbps * mtu / (mtu + PACKET_OVERHEAD)


def active_mtu_from_netdev(netdev_mtu: int | None) -> int | None:
    """The RoCE MTU a netdev MTU allows: the largest IB MTU <= netdev MTU - 96 (the kernel's iboe_get_mtu, which
    mlx5 uses; rxe keeps 80 free: the same for 1500 -> 1024 and 9000 -> 4096); used where verbs could not be
    asked for the port's active MTU."""
    if not netdev_mtu:
        return None
    fits = [m for m in IB_MTUS if m <= netdev_mtu - ROCE_HEADROOM]
    return fits[-1] if fits else None


def pcie(device_dir: Path) -> dict | None:
    """The PCIe link of an RDMA device's bus device, or None where sysfs shows none (rxe, a VF without it)."""
    speed_text = read_sysfs(device_dir / "current_link_speed")
    width_text = read_sysfs(device_dir / "current_link_width")
    m = re.match(r"\s*([0-9.]+)\s*GT/s", speed_text or "")
    if not m or not (width_text or "").isdigit() or int(width_text) == 0:
        return None
    gts, width = float(m.group(1)), int(width_text)
    encoding = PCIE_ENCODING.get(gts)
    if encoding is None:
        return {"speed_gts": gts, "width": width, "gbps": None,
                "note": f"{gts} GT/s: encoding unknown to rdmabench (Gen6 flit mode?), no figure"}
    encoded = gts * width * encoding
    return {"speed_gts": gts, "width": width, "encoding": "8b/10b" if encoding == 0.8 else "128b/130b",
            "encoded_gbps": round(encoded, 3),
            "gbps": round(encoded * TLP_PAYLOAD / (TLP_PAYLOAD + TLP_OVERHEAD), 3),
            "max_speed": read_sysfs(device_dir / "max_link_speed"), "max_width": read_sysfs(device_dir / "max_link_width"),
            "tlp_estimate": f"assumed {TLP_PAYLOAD} B max payload, {TLP_OVERHEAD} B per TLP "
                            "(sysfs does not show the negotiated max payload size)"}


def netdev_speed(netdev: str | None, net_root: Path = NET_ROOT) -> float | None:
    """Gb/s from /sys/class/net/N/speed (Mb/s); None where it reads -1, 0 or nothing (virtio, dummy, down)."""
    text = read_sysfs(net_root / netdev / "speed") if netdev else None
    try:
        mbps = int(text) if text is not None else -1
    except ValueError:
        return None
    return mbps / 1000 if mbps > 0 else None


def of(dev, port: int = 1, ib_root: Path = IB_ROOT, net_root: Path = NET_ROOT) -> dict:
    """{port_gbps, roce_goodput_gbps, pcie_gbps, netdev_gbps, limit_gbps, limited_by, ...} for ``dev``
    (a devices.Device) port ``port``. Every figure is Gb/s of payload except port_gbps and netdev_gbps
    (signalling rates); limit_gbps is None where nothing is known (rxe on a netdev with no speed)."""
    p = next((x for x in dev.ports if x.number == port), None)
    rxe = dev.driver in ("rdma_rxe", "rxe")
    link_layer = p.link_layer if p else None
    mtu, mtu_from = (p.active_mtu, "active MTU (verbs)") if p and p.active_mtu else (None, None)
    if mtu is None and p and link_layer == "Ethernet":
        mtu = active_mtu_from_netdev(p.netdev_mtu)
        mtu_from = f"inferred from netdev MTU {p.netdev_mtu}" if mtu else None
    netdev = p.netdev if p else None
    net_gbps = netdev_speed(netdev, net_root)
    port_gbps = None if rxe else parse_rate(p.rate if p else None)
    link = None if rxe else pcie(ib_root / dev.name / "device")
    wire = net_gbps if rxe else port_gbps
    goodput = round(roce_goodput(wire, mtu), 3) if wire and mtu and link_layer == "Ethernet" else None
    candidates = {"roce_goodput": goodput, "pcie": link["gbps"] if link else None}
    if goodput is None:  # InfiniBand, or no MTU known: the signalling rate is the best bound there is
        candidates["netdev" if rxe else "port"] = wire
    known = {k: v for k, v in candidates.items() if v}
    limited_by = min(known, key=known.get) if known else None
    return {"port_gbps": port_gbps, "roce_goodput_gbps": goodput, "pcie_gbps": candidates["pcie"],
            "netdev_gbps": net_gbps, "limit_gbps": known.get(limited_by), "limited_by": limited_by,
            "mtu": mtu, "mtu_from": mtu_from, "link_layer": link_layer, "netdev": netdev, "pcie": link,
            "soft_roce": rxe,
            "note": ("soft-RoCE: the netdev's speed is the only limit" + ("" if net_gbps else
                     f"; {netdev or 'its netdev'} reports no speed, so none is known")) if rxe else None}


def path(here: dict | None, there: dict | None) -> dict | None:
    """The limit of a path between two ends: the smaller known limit, and which end set it (limit None where
    neither end knows one; None where neither end was described at all: an older rdmabench at the far end)."""
    if not (here or there):
        return None
    ends = {k: v for k, v in (("client", here), ("server", there)) if v and v.get("limit_gbps")}
    if not ends:
        return {"limit_gbps": None, "limited_by": None, "client": here, "server": there}
    end = min(ends, key=lambda k: ends[k]["limit_gbps"])
    return {"limit_gbps": ends[end]["limit_gbps"], "limited_by": f"{end} {ends[end]['limited_by']}",
            "client": here, "server": there}


def share(bw_gbps: float | None, line: dict | None, bidir: bool = False) -> float | None:
    """Measured payload Gb/s over the limit (both directions' limits when ``bidir``: the links are full duplex)."""
    limit = (line or {}).get("limit_gbps")
    if not limit or bw_gbps is None:
        return None
    return bw_gbps / (limit * (2 if bidir else 1))


def describe(line: dict | None) -> str:
    """One line for people: "limit 98.04 Gb/s, set by roce_goodput (port 100 Gb/s; ...)"; a path (path())
    is described by the end that sets its limit."""
    if line and ("client" in line or "server" in line):
        if line.get("limit_gbps"):
            end = line["limited_by"].split(" ", 1)[0]
            return f"{end} end: {describe(line[end])}"
        notes = {k: (line.get(k) or {}).get("note") for k in ("client", "server")}
        if notes["client"] and notes["client"] == notes["server"]:
            return f"no line rate known at either end ({notes['client']})"
        return "no line rate known" + "".join(f"; {k}: {n}" for k, n in notes.items() if n)
    if not line or not line.get("limit_gbps"):
        return "no line rate known" + (f" ({line['note']})" if line and line.get("note") else "")
    parts = []
    if line.get("port_gbps"):
        parts.append(f"port {line['port_gbps']:g} Gb/s")
    if line.get("netdev_gbps"):
        parts.append(f"netdev {line['netdev_gbps']:g} Gb/s")
    if line.get("roce_goodput_gbps"):
        parts.append(f"RoCE v2 goodput at MTU {line['mtu']} {line['roce_goodput_gbps']:.2f} Gb/s")
    if line.get("pcie"):
        pc = line["pcie"]
        parts.append(f"PCIe {pc['speed_gts']:g} GT/s x{pc['width']} ~{pc['gbps']:.1f} Gb/s" if pc.get("gbps")
                     else f"PCIe {pc['speed_gts']:g} GT/s x{pc['width']}")
    return f"limit {line['limit_gbps']:.2f} Gb/s, set by {line['limited_by']} ({'; '.join(parts)})"

