"""`rdmabench doctor`: parse, check, print. The checks are rdmabench.doctor's; with --peer the far end's come
from its `rdmabench serve` ("doctor" service) and a verified round trip from rdmabench.verbs.peer."""

from __future__ import annotations

import json
import sys

import click

from . import doctor
from .errors import RdmabenchError


def _peer_checks(host: str, port: int) -> tuple[str | None, list[doctor.Check]]:
    from .wire import Channel

    try:
        with Channel.connect(host, port, "doctor", timeout=10, wait=5) as chan:
            msg = chan.recv(60, "doctor")
    except RdmabenchError as err:
        return None, [doctor.Check("peer", "FAIL", f"{host}:{port}: {err}",
                                   f"start `rdmabench serve --bind {host}` there (the same rdmabench version) and "
                                   "give both hosts the same secret (`rdmabench secret init`, then copy it)")]
    return msg.get("device"), [doctor.Check(**c) for c in msg.get("checks") or []]


def _roundtrip(host: str, port: int, device: str | None) -> doctor.Check:
    from .verbs import peer

    try:
        r = peer.check(host, port, size=65536, mode="oob", device=device, timeout_s=30.0, wait_s=5.0)
    except RdmabenchError as err:
        return doctor.Check("round trip", "FAIL", f"to {host}:{port}: {err}",
                            "run `rdmabench roundtrip` at each end first; then check the GIDs, the MTU and "
                            "the route between the two addresses")
    found = (f"64 KiB to {host} over {r.get('device') or device}: RDMA WRITE {r['write_us']:.0f} us, "
             f"READ {r['read_us']:.0f} us")
    if r["ok"]:
        return doctor.Check("round trip", "PASS", found + ", every byte verified at both ends")
    return doctor.Check("round trip", "FAIL", found + ": the payload did NOT verify",
                        "a corrupting path: check firmware, cables and the switch's counters")


@click.command("doctor")
@click.option("--device", "-d", envvar="RDMABENCH_DEVICE", metavar="NAME",
              help="RDMA device to check [$RDMABENCH_DEVICE, else the only one].")
@click.option("--peer", metavar="HOST[:PORT]",
              help="Also check the host where `rdmabench serve` runs (its own checks, through the service) "
                   "and move 64 KiB there and back, verified.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output: every check with status, found and fix.")
def doctor_cmd(device, peer, as_json):
    """Is this host ready to measure RDMA? One line per check: PASS, WARN or FAIL, with the fix.

    \b
    Checks, each read from the system, nothing changed:
      driver        mlx5_core (hardware) or rdma_rxe (soft-RoCE: WARN, not a hardware figure)
      machine       bare metal, or a VM / emulation (WARN)
      port          state ACTIVE (else FAIL), physical state, rate
      link layer    Ethernet (RoCE) or InfiniBand
      MTU           netdev MTU >= active MTU + 96 (else FAIL); active MTU below 4096 (WARN)
      GID           a RoCE v2 GID with an IPv4 address (else FAIL)
      PFC, ECN      `dcb pfc show dev N`, /sys/class/net/N/ecn (WARN: off, or cannot tell)
      pause frames  `ethtool -S N` pause/PFC counters
      PCIe          link speed x width against the port's goodput (WARN below it)
      firmware      fw_ver
      NUMA          the NIC's node, and how to run there
      CPU governor  performance expected (WARN otherwise, or cannot tell)
      clock source  tsc expected (WARN otherwise)

    Exit status 0 when nothing FAILs (WARNs say what makes figures less than hardware figures),
    1 otherwise. With --peer the far end's checks are printed with "peer:" and a failure there fails too.

    \b
      rdmabench doctor
      rdmabench doctor -d mlx5_0 --peer 10.0.0.1
      rdmabench lab -- rdmabench doctor
    """
    from .cli_types import parse_peer

    name, results = doctor.run(device)
    out = {"device": name, "checks": results}
    lines = [f"rdmabench doctor: {name or 'no RDMA device'}"] + [c.line() for c in results]
    if peer:
        host, port = parse_peer(peer)
        peer_name, peer_results = _peer_checks(host, port)
        out["peer"] = {"host": f"{host}:{port}", "device": peer_name, "checks": peer_results}
        lines += [f"peer {host}:{port}: {peer_name or '?'}"] + [c.line("peer: ") for c in peer_results]
        every = results + peer_results
        if name and not doctor.failed(every):
            trip = _roundtrip(host, port, name)
        else:
            trip = doctor.Check("round trip", "SKIP", "not tried: a check above FAILs")
        out["round_trip"] = trip
        results = every + [trip]
        lines.append(trip.line())
    if as_json:
        def plain(v):
            return doctor.as_dicts(v) if isinstance(v, list) else doctor.as_dicts([v])[0] if isinstance(v, doctor.Check) else v
        body = {k: ({kk: plain(vv) for kk, vv in v.items()} if isinstance(v, dict) else plain(v)) for k, v in out.items()}
        click.echo(json.dumps({**body, "ok": not doctor.failed(results)}, indent=2))
    else:
        counts = {s: sum(c.status == s for c in results) for s in ("PASS", "WARN", "FAIL", "SKIP")}
        lines.append(", ".join(f"{n} {s}" for s, n in counts.items() if n)
                     + (": FAILED" if counts["FAIL"] else ": nothing fails"))
        click.echo("\n".join(lines))
    sys.exit(1 if doctor.failed(results) else 0)
