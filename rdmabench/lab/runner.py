"""Boots the lab's guests, streams their output and makes sure none outlives us.

One guest: the command runs there and its exit status comes back unchanged.
Two guests: "storage" boots first (it owns the link's socket), then "worker";
the worker's command decides the outcome; storage gets a grace period to
finish after it, then is stopped (a server is expected to run forever).
Three guests (three_hosts.py): storage, worker1 and worker2 with sshd and
Open MPI; storage's command (mpirun's home) decides the outcome.
"""

from __future__ import annotations

import collections
import shutil
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import auth
from ..errors import LabError
from . import vm
from .guest import READY_MARKER


@dataclass
class LabOptions:
    cpus: int = 2
    memory: str = "2G"
    boot_timeout: float | None = None  # None: 240 s under TCG (420 s for three guests), 60 s with KVM
    timeout: float | None = None  # for the whole command; None: no limit
    grace: float = 15.0  # storage's time to finish after the worker has
    results: Path = Path("results")
    kvm: bool | None = None  # None: decide from the CPU flags
    kernel: Path | None = None  # None: the newest installed Debian kernel
    quiet_prefix: bool = False
    console: bool = False  # show the guests' kernel errors, oopses and panics
    env: dict[str, str] = field(default_factory=dict)


class Guest:
    """One vng process in its own process group, its output pumped to ours."""

    def __init__(self, name: str, argv: list[str], prefix: str, env: dict[str, str], console: bool = False):
        self.name = name
        self.prefix = prefix
        self.console = console
        self.tail: collections.deque[str] = collections.deque(maxlen=30)
        self.ready = threading.Event()
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: we can kill qemu with it
            env=env,
        )
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace")
            self.tail.append(line.rstrip("\n"))
            if line.startswith(READY_MARKER):
                self.ready.set()
            sys.stdout.write(self.prefix + line)
            sys.stdout.flush()

    def poll(self) -> int | None:
        return self.proc.poll()

    def wait_ready(self, deadline: float) -> None:
        while not self.ready.wait(0.2):
            if self.proc.poll() is not None:
                self._pump.join(2)
                if self.ready.is_set():
                    return
                raise LabError(
                    f"the {self.name} guest stopped before it was ready (exit status {self.proc.returncode}); "
                    f"its last output:\n  " + "\n  ".join(self.tail)
                )
            if time.monotonic() > deadline:
                raise LabError(
                    f"the {self.name} guest did not come up in time (no '{READY_MARKER}' line); "
                    "it was stopped. Its last output:\n  " + ("\n  ".join(self.tail) or "(nothing)")
                )

    def wait(self, timeout: float | None) -> int | None:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._pump.join(5)
        if code == vm.VNG_GUEST_DIED:
            print(self.died_message(), file=sys.stderr)
        return code

    def died_message(self) -> str:
        """vng's 255: no exit status came back, so the guest's kernel panicked or its QEMU died (a command
        exiting 255 itself looks the same; its output says so)."""
        how = ("its kernel's messages are above" if self.console
               else "run it again with --console to see the kernel's errors, oopses and panics")
        return (f"rdmabench lab: the {self.name} guest ended without its command's exit status (255): "
                f"its kernel panicked or QEMU died, unless the command itself exited 255; {how}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            for sig, pause in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(pause)
                    break
                except subprocess.TimeoutExpired:
                    continue
        else:
            # vng is gone; make sure nothing of its group (qemu) is left behind
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


class Lab:
    def __init__(self, options: LabOptions):
        vm.check_host(installed_kernel=options.kernel is None)
        self.o = options
        self.kernel = vm.find_kernel() if options.kernel is None else vm.check_kernel(options.kernel)
        self.kvm = vm.kvm_usable() if options.kvm is None else options.kvm
        self.boot_timeout = options.boot_timeout or (60.0 if self.kvm else 240.0)
        self.results = options.results.resolve()
        self.results.mkdir(parents=True, exist_ok=True)
        self.guests: list[Guest] = []
        venv_bin = str(Path(sys.executable).parent)
        self.env = dict(os.environ, PATH=venv_bin + os.pathsep + os.environ.get("PATH", ""))
        self.guest_env = {"CI": os.environ["CI"]} if "CI" in os.environ else {}
        self.guest_env["RDMABENCH_LAB_ACCEL"] = "kvm" if self.kvm else "tcg"  # results say where they ran
        # every listener in the guests asks for the shared secret: the host's, else one made for this run
        self.guest_env[auth.ENV_SECRET] = os.environ.get(auth.ENV_SECRET) or auth.new_secret()
        self.guest_env.update(options.env)
        self.spec_dir = vm.spec_dir()

    def _spec(self, role: str, command: str, ip: str, peer_ip=None, mac=None) -> vm.GuestSpec:
        return vm.GuestSpec(
            role=role, command=command, cwd=os.getcwd(), ip=ip, peer_ip=peer_ip, mac=mac,
            results=str(self.results), env=self.guest_env,
        )

    def _boot(self, name: str, spec: vm.GuestSpec, qemu_opts: str | None, prefix: str) -> Guest:
        spec_file = spec.write(self.spec_dir / f"{name}.json")
        argv = vm.vng_command(
            spec, spec_file, kernel=self.kernel, python=sys.executable, cpus=self.o.cpus, memory=self.o.memory,
            kvm=self.kvm, name=name, qemu_opts=qemu_opts, console=self.o.console,
        )
        guest = Guest(name, argv, prefix, self.env, console=self.o.console)
        self.guests.append(guest)
        return guest

    def _deadline(self, start: float) -> float | None:
        return None if self.o.timeout is None else start + self.o.timeout

    def _wait(self, guest: Guest, deadline: float | None) -> int:
        code = guest.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if code is None:
            raise LabError(f"the command in the {guest.name} guest ran past --timeout {self.o.timeout:g} s; it was stopped")
        return code

    def run_one(self, command: str) -> int:
        start = time.monotonic()
        guest = self._boot("rdmabench-lab", self._spec("single", command, vm.SINGLE_IP), None, "")
        guest.wait_ready(start + self.boot_timeout)
        return self._wait(guest, self._deadline(start))

    def run_two(self, storage_cmd: str, worker_cmd: str) -> int:
        start = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="rdmabench-link-") as tmp:
            sock = os.path.join(tmp, "link.sock")
            storage = self._boot(
                "storage", self._spec("storage", storage_cmd, vm.STORAGE_IP, vm.WORKER_IP, vm.STORAGE_MAC),
                vm.link_opts(sock, server=True, mac=vm.STORAGE_MAC), "[storage] ",
            )
            boot_deadline = start + self.boot_timeout
            wait_listening(sock, storage, boot_deadline)
            worker = self._boot(
                "worker", self._spec("worker", worker_cmd, vm.WORKER_IP, vm.STORAGE_IP, vm.WORKER_MAC),
                vm.link_opts(sock, server=False, mac=vm.WORKER_MAC), "[worker]  ",
            )
            storage.wait_ready(boot_deadline)
            worker.wait_ready(boot_deadline)
            worker_code = self._wait(worker, self._deadline(start))
            storage_code = storage.wait(self.o.grace)
            if storage_code is None:
                if self.o.grace > 0:
                    print(f"rdmabench lab: storage still running {self.o.grace:g} s after the worker finished; "
                          "stopping it", file=sys.stderr)
                return worker_code
            return worker_code or storage_code

    def close(self) -> None:
        for guest in reversed(self.guests):
            guest.stop()
        shutil.rmtree(self.spec_dir, ignore_errors=True)


def wait_listening(sock: str, server: Guest, deadline: float) -> None:
    """Until the QEMU of ``server`` listens on ``sock``: QEMU 7.2's stream client does not reconnect, so the
    server end must listen before a client guest boots. LabError (with the guest's last output) otherwise."""
    while not unix_listening(sock):
        if server.poll() is not None or time.monotonic() > deadline:
            server.wait_ready(time.monotonic())  # raises with the reason
            raise LabError(f"the {server.name} guest's QEMU never listened on {sock}")
        time.sleep(0.1)


def unix_listening(path: str) -> bool:
    """Is a unix socket at `path` accepting connections? (/proc/net/unix: flag __SO_ACCEPTCON.)

    The file appears at bind(), before listen(): a client that connects in between is refused,
    and QEMU 7.2's stream client never retries, leaving the guests with a dead link. Probing
    with a connection is no answer either: the server would take the probe for its peer."""
    try:
        lines = open("/proc/net/unix").read().splitlines()[1:]
    except OSError:
        return os.path.exists(path)
    for line in lines:
        fields = line.split()
        if len(fields) >= 8 and fields[7] == path and int(fields[3], 16) & 0x10000:
            return True
    return False


IDLE = "exec sleep 1000000"  # a guest with nothing to do keeps its end of the link up


def _raise_on_term(signum, frame):
    raise KeyboardInterrupt


def run(options: LabOptions, command: str | None = None, storage: str | None = None,
        worker: str | None = None, hosts: int = 1) -> int:
    """Boot the lab, run the command(s), return the exit status; never leaves a guest behind."""
    lab = Lab(options)
    old_term = signal.signal(signal.SIGTERM, _raise_on_term)
    old_hup = signal.signal(signal.SIGHUP, _raise_on_term)
    try:
        if hosts == 1:
            return lab.run_one(command or "")
        if hosts == 3:
            from .three_hosts import BOOT_TIMEOUT_TCG, run_three

            if options.boot_timeout is None and not lab.kvm:
                lab.boot_timeout = BOOT_TIMEOUT_TCG
            return run_three(lab, storage or command or "", worker)
        if storage is None and command is None:
            options.grace = 0.0  # an idle storage guest: stop it as soon as the worker is done
        return lab.run_two(storage or command or IDLE, worker or command or IDLE)
    finally:
        lab.close()
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGHUP, old_hup)
