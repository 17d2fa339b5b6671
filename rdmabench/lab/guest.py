"""Runs inside a lab guest: bring up soft-RoCE, publish what was made, run the command.

Invoked by the host as `python -m rdmabench.lab.guest <GuestSpec file>`.
It prints READY_MARKER once the rxe device has its IPv4-mapped GID; the host
uses that line to tell a guest that came up from one that did not.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from .. import devices
from . import ssh
from .vm import PREFIX_LEN, GuestSpec

READY_MARKER = "rdmabench-lab: ready"
ENV_FILE = Path("/tmp/rdmabench-lab.env")
RXE_NAME = "rxe0"
GID_WAIT_S = 20.0


def sh(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"rdmabench-lab: setup failed: {' '.join(argv)}: {done.stderr.strip() or done.returncode}")


def netdev_by_mac(mac: str) -> str:
    for dev in sorted(Path("/sys/class/net").iterdir()):
        if (dev / "address").read_text().strip().lower() == mac.lower():
            return dev.name
    raise SystemExit(f"rdmabench-lab: setup failed: no network interface with MAC {mac}")


def bring_up(spec: GuestSpec) -> dict[str, str]:
    sh("modprobe", "rdma_rxe")
    if spec.mac:
        netdev = netdev_by_mac(spec.mac)
    else:
        netdev = "d0"
        sh("ip", "link", "add", netdev, "type", "dummy")
    sh("ip", "link", "set", netdev, "mtu", str(spec.mtu))
    sh("ip", "addr", "add", f"{spec.ip}/{PREFIX_LEN}", "dev", netdev)
    sh("ip", "link", "set", netdev, "up")
    sh("rdma", "link", "add", RXE_NAME, "type", "rxe", "netdev", netdev)

    deadline = time.monotonic() + GID_WAIT_S
    while True:
        dev = devices.describe(RXE_NAME)
        port = dev.ports[0]
        mapped = [g for g in port.gids if g.ipv4 == spec.ip]
        if mapped and port.state == "ACTIVE":
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"rdmabench-lab: setup failed: {RXE_NAME} got no GID for {spec.ip} in {GID_WAIT_S:.0f} s")
        time.sleep(0.2)
    env = {
        "RDMABENCH_ROLE": spec.role,
        "RDMABENCH_DEVICE": RXE_NAME,
        "RDMABENCH_NETDEV": netdev,
        "RDMABENCH_IP": spec.ip,
        "RDMABENCH_GID_INDEX": str(port.recommended_gid_index),
        "RDMABENCH_MTU": str(port.active_mtu or ""),
    }
    if spec.peer_ip:
        env["RDMABENCH_PEER_IP"] = spec.peer_ip
    if spec.results:
        env["RDMABENCH_RESULTS"] = spec.results
    if spec.hostname:
        env["RDMABENCH_HOSTNAME"] = spec.hostname
    return env


def main(argv: list[str]) -> int:
    spec = GuestSpec.read(argv[0])
    lab_env = bring_up(spec)
    ENV_FILE.write_text("".join(f"{k}={v}\n" for k, v in lab_env.items()))

    ours = dict(spec.env)
    ours.update(lab_env)
    ours["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    ours["PYTHONDONTWRITEBYTECODE"] = "1"  # the host's tree is read-only in here
    ours["MPLCONFIGDIR"] = "/tmp/matplotlib"  # the host's ~/.config is read-only in here
    if spec.ssh_keys:  # the three-guest lab: sshd, whose sessions (mpirun's ranks) get this guest's variables
        ours.update(ssh.mpi_env())
        ssh.setup_guest(spec.hostname or spec.role, spec.ip, spec.ssh_keys, ours)
    print(READY_MARKER + " " + " ".join(f"{k.removeprefix('RDMABENCH_').lower()}={v}" for k, v in lab_env.items()), flush=True)
    if spec.wait_for:
        ssh.wait_for_sshd(spec.wait_for, spec.wait_timeout)

    env = dict(os.environ)
    env.update(ours)
    env.setdefault("HOME", "/tmp")
    return subprocess.run(["/bin/sh", "-c", spec.command], cwd=spec.cwd, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
