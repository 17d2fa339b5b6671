"""The three-guest lab: "storage", "worker1" and "worker2" on one link, each running sshd,
so that Open MPI's `mpirun` in the storage guest starts ranks in all three over ssh.

The link is a hub inside storage's QEMU: storage's NIC and one unix-socket stream server
per worker hang off it; each worker's QEMU connects as a stream client. QEMU 7.2's client
never reconnects, so a worker boots only once its socket listens. The storage guest waits
for both workers' sshd before its command starts; that command decides the exit status,
and the workers are stopped when it ends.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time

from ..errors import LabError
from . import ssh, vm
from .runner import IDLE, wait_listening

STORAGE, WORKERS = ssh.HOSTS[0], ssh.HOSTS[1:]
BOOT_TIMEOUT_TCG = 420.0  # three guests share two cores: 69-161 s seen, more when the machine is busy


def check_host() -> None:
    """ssh and Open MPI on the host (the guests run the host's binaries)."""
    need = {"/usr/sbin/sshd": "openssh-server", "ssh": "openssh-client", "ssh-keygen": "openssh-client",
            "mpirun": "openmpi-bin"}
    missing = [f"{tool} (Debian {pkg})" for tool, pkg in need.items() if not shutil.which(tool)]
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        missing.append("mpi4py (Debian python3-mpi4py)")
    if missing:
        raise LabError("the three-guest lab needs ssh and Open MPI; missing: " + "; ".join(missing) +
                       ".\nTo fix it, run `make install`.")


def run_three(lab, storage_cmd: str, worker_cmd: str | None = None) -> int:
    """Boot storage, then each worker once its socket listens; run storage_cmd in storage (worker_cmd, or
    nothing, in each worker) and return storage's exit status, or a worker's if its command failed first."""
    check_host()
    start = time.monotonic()
    boot_deadline = start + lab.boot_timeout
    keys = lab.spec_dir / "ssh"  # private to this run (0700), removed with the spec files
    ssh.make_keys(keys)

    def spec(role, name, ip, mac, command, **kw):
        return vm.GuestSpec(role=role, command=command, cwd=os.getcwd(), ip=ip, mac=mac, results=str(lab.results),
                            env=lab.guest_env, hostname=name, ssh_keys=str(keys), **kw)

    with tempfile.TemporaryDirectory(prefix="rdmabench-hub-") as tmp:
        socks = [os.path.join(tmp, f"{name}.sock") for name, *_ in WORKERS]
        name, ip, mac = STORAGE
        storage = lab._boot(
            name, spec("storage", name, ip, mac, storage_cmd, wait_for=[w[1] for w in WORKERS],
                       wait_timeout=lab.boot_timeout),
            vm.hub_opts(socks, mac=mac), "[storage] ",
        )
        workers = []
        for (name, ip, mac), sock in zip(WORKERS, socks):
            wait_listening(sock, storage, boot_deadline)
            workers.append(lab._boot(
                name, spec("worker", name, ip, mac, worker_cmd or IDLE, peer_ip=STORAGE[1]),
                vm.link_opts(sock, server=False, mac=mac), f"[{name}] ",
            ))
        for guest in [storage, *workers]:
            guest.wait_ready(boot_deadline)
        print(f"rdmabench lab: three guests ready in {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)
        code = lab._wait(storage, lab._deadline(start))
        if code == 0 and worker_cmd:
            for guest in workers:
                failed = guest.poll()
                if failed:
                    print(f"rdmabench lab: the {guest.name} guest's command failed (exit status {failed})",
                          file=sys.stderr)
                    return failed
        return code
