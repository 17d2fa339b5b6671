"""Assembling the virtme-ng command lines that boot the lab's guests.

Pure functions of their inputs (plus a look at the host for the kernel image,
KVM support and missing tools), so the command lines can be unit-tested on a
host that cannot boot anything.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LabError

# The Debian packages `make install` brings for the lab (see ../shared/docs/lab.md).
INSTALL_HINT = "run `make install` (it installs the Debian packages qemu-system-x86, linux-image-amd64, busybox-static and rdma-core, and virtme-ng into .venv)"

# The two-host topology: a point-to-point link between two guests.
STORAGE_MAC = "52:54:00:77:02:01"
WORKER_MAC = "52:54:00:77:02:02"
SINGLE_IP = "10.77.0.1"
STORAGE_IP = "10.77.2.1"
WORKER_IP = "10.77.2.2"
PREFIX_LEN = 24
LAB_MTU = 9000

# printk levels below this reach the console with --console: 0-3, emergency to error (an oops is 1, a panic 0).
# Not warnings (4): rxe's "<netdev> speed is unknown, defaulting to 1000" would fill a CI log (3000 lines a lab).
CONSOLE_LOGLEVEL = 4

# what vng returns when the guest ended without its command's exit status: a kernel panic, or QEMU died
VNG_GUEST_DIED = 255


@dataclass
class GuestSpec:
    """What one guest is and what it runs; handed to rdmabench.lab.guest inside."""

    role: str  # single, storage or worker
    command: str  # a shell command line
    cwd: str
    ip: str
    peer_ip: str | None = None
    mac: str | None = None  # None: a dummy netdev in a lone guest
    mtu: int = LAB_MTU
    results: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    # the three-guest lab: the guest's name, the host folder with the run's ssh keys (sshd starts when
    # given), the addresses whose sshd must answer before the command starts, and for how long
    hostname: str | None = None
    ssh_keys: str | None = None
    wait_for: list[str] = field(default_factory=list)
    wait_timeout: float = 300.0

    def write(self, path: Path) -> Path:
        """Into a file only its owner reads (it carries the lab's shared secret), for the guest to load.

        A file, not the kernel command line: that line holds 2048 bytes (a long command never
        booted) and `ps` on the host shows it."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.__dict__, f)
        return Path(path)

    @classmethod
    def read(cls, path: str | Path) -> "GuestSpec":
        return cls(**json.loads(Path(path).read_text()))


def _version_key(path: Path) -> list:
    return [int(p) if p.isdigit() else p for p in re.split(r"[.-]", path.name)]


def find_kernel(boot: Path = Path("/boot")) -> Path:
    """The newest Debian amd64 kernel image; never a hard-coded version."""
    images = sorted(boot.glob("vmlinuz-*-amd64"), key=_version_key)
    if not images:
        raise LabError(f"no kernel image /boot/vmlinuz-*-amd64 for the lab guest: {INSTALL_HINT}")
    return images[-1]


def check_kernel(image: Path) -> Path:
    """A kernel image the user named: it must exist, and its rdma_rxe module must lie where virtme-ng looks
    for it: lib/modules/<version> of the tree the image sits in (a Debian package unpacked), or the host's."""
    image = Path(image).resolve()
    if not image.is_file():
        raise LabError(f"no kernel image at {image} (scripts/fetch-lab-kernel.sh fetches one and prints its path)")
    # /boot/vmlinuz-<version>, or <tree>/usr/lib/modules/<version>/vmlinuz as Debian's newer packages lay it out
    version = image.parent.name if image.name == "vmlinuz" else image.name.removeprefix("vmlinuz-")
    places = [t / "lib" / "modules" / version for t in image.parents] + [Path("/lib/modules") / version]
    if not any((p / "kernel/drivers/infiniband/sw/rxe").is_dir() for p in places):
        raise LabError(f"kernel {image}: no rdma_rxe module for version {version!r} beside it or in /lib/modules "
                       "(the lab needs soft-RoCE)")
    return image


def kvm_usable(cpuinfo: Path = Path("/proc/cpuinfo"), dev: Path = Path("/dev/kvm")) -> bool:
    """KVM only where the CPU advertises vmx or svm (and /dev/kvm exists); TCG otherwise."""
    try:
        flags = cpuinfo.read_text()
    except OSError:
        return False
    return bool(re.search(r"^flags\s*:.*\b(vmx|svm)\b", flags, re.M)) and dev.exists()


def missing_tools(installed_kernel: bool = True) -> list[str]:
    """What the lab needs on the host and does not find, each with its package; `installed_kernel`: the
    guests boot the newest /boot image (not one named with --kernel)."""
    missing = []
    venv_bin = Path(sys.executable).parent
    search_path = os.pathsep.join([str(venv_bin), os.environ.get("PATH", "")])
    if not shutil.which("vng", path=search_path):
        missing.append("vng (PyPI virtme-ng, into .venv)")
    if not shutil.which("qemu-system-x86_64", path=search_path):
        missing.append("qemu-system-x86_64 (Debian qemu-system-x86)")
    if not (Path("/bin/busybox").exists() or Path("/usr/bin/busybox").exists()):
        missing.append("busybox (Debian busybox-static, for the guest's initramfs)")
    if installed_kernel and not list(Path("/boot").glob("vmlinuz-*-amd64")):
        missing.append("a kernel image /boot/vmlinuz-*-amd64 (Debian linux-image-amd64)")
    return missing


def check_host(installed_kernel: bool = True) -> None:
    missing = missing_tools(installed_kernel)
    if missing:
        raise LabError("the lab cannot boot; missing: " + "; ".join(missing) + f".\nTo fix it, {INSTALL_HINT}.")


def guest_exec(spec_file: Path, python: str) -> str:
    """The shell line vng runs as the guest's command: our guest-side setup (reading the spec file), then
    the user's command."""
    return f"exec {shlex.quote(python)} -m rdmabench.lab.guest {shlex.quote(str(spec_file))}"


def spec_dir() -> Path:
    """A private folder for the guests' spec files, on the host's root filesystem (the guests see it
    read-only; their /tmp, /var/tmp and /run are their own)."""
    base = Path.home() / ".cache" / "rdmabench"
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="lab-", dir=base))


def vng_command(
    spec: GuestSpec,
    spec_file: Path,
    *,
    kernel: Path,
    python: str,
    cpus: int,
    memory: str,
    kvm: bool,
    name: str,
    qemu_opts: str | None = None,
    console: bool = False,
) -> list[str]:
    cmd = ["vng", "--run", str(kernel), "--cpus", str(cpus), "--memory", memory, "--name", name]
    if not kvm:
        cmd.append("--disable-kvm")
    if console:  # the kernel's own errors and worse (an oops, a panic), among the command's output
        cmd += ["--verbose", "--append", f"loglevel={CONSOLE_LOGLEVEL}"]
    if spec.results:
        cmd += ["--rwdir", spec.results]
    if qemu_opts:
        cmd.append(f"--qemu-opts={qemu_opts}")
    cmd += ["--exec", guest_exec(spec_file, python)]
    return cmd


def link_opts(socket_path: str, *, server: bool, mac: str) -> str:
    """QEMU options for one end of the two-guest link: a stream netdev over a unix socket."""
    side = "on" if server else "off"
    return (
        f"-netdev stream,id=rl,server={side},addr.type=unix,addr.path={socket_path} "
        f"-device virtio-net-pci,netdev=rl,mac={mac}"
    )


def hub_opts(sockets: list[str], *, mac: str) -> str:
    """QEMU options for the storage guest of the three-guest lab: a hub in its QEMU, with storage's NIC and
    one unix-socket stream server per worker on it (each worker connects with `link_opts(server=False)`).

    Not QEMU's multicast netdev: it lost about a third of the frames under RDMA load."""
    parts = [f"-netdev hubport,id=h0,hubid=0 -device virtio-net-pci,netdev=h0,mac={mac}"]
    for i, path in enumerate(sockets, 1):
        parts.append(f"-netdev stream,id=s{i},server=on,addr.type=unix,addr.path={path} "
                     f"-netdev hubport,id=hp{i},hubid=0,netdev=s{i}")
    return " ".join(parts)
