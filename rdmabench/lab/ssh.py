"""ssh and Open MPI inside the three-guest lab: what each guest needs so that `mpirun`
in the storage guest can start ranks in all three over ssh.

The texts (sshd's and ssh's config, /etc/hosts, the Open MPI environment) are pure
functions, unit-tested on the host. `make_keys` runs on the host (one host key and one
client key per lab run, in the run's private folder); `setup_guest` and `wait_for_sshd`
run inside a guest (called by rdmabench.lab.guest).

Traps this works around (see docs/lab-three-hosts.md):
- virtme-ng locks root (`root:!` in the shadow file): sshd refuses a locked account
  unless PAM does the account check (`UsePAM yes`).
- The guest's /etc and /root are the host's, read-only: /etc/hosts, ssh's system config
  and /root/.bashrc (which bash runs on every ssh hop) are covered with bind mounts of
  files made in the guest's own /tmp.
- sshd gives a session a fresh environment: the lab's variables reach a command run
  over ssh (an MPI rank) through sshd's own `SetEnv`, each guest with its own values.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

# The topology: storage owns the hub; the workers hang off it.
SUBNET = "10.77.3.0/24"
HOSTS = (("storage", "10.77.3.1", "52:54:00:77:03:01"),
         ("worker1", "10.77.3.2", "52:54:00:77:03:02"),
         ("worker2", "10.77.3.3", "52:54:00:77:03:03"))
SSH_PORT = 22

# Inside a guest (its /tmp is its own tmpfs).
GUEST_SSH_DIR = "/tmp/rdmabench-ssh"
CLIENT_CONFIG = GUEST_SSH_DIR + "/ssh_config"
SSHD_CONFIG = GUEST_SSH_DIR + "/sshd_config"

# Files the host makes per run (in the run's private folder, which the guests see read-only).
HOST_KEY, CLIENT_KEY = "host_key", "client_key"


def quote_setenv(name: str, value: str) -> str:
    """One `SetEnv` word for sshd_config: double-quoted, so values may hold spaces."""
    if "\n" in value or "\n" in name:
        raise ValueError(f"{name}: a newline cannot travel through sshd_config")
    text = f"{name}={value}".replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def sshd_config(ip: str, ssh_dir: str = GUEST_SSH_DIR, env: dict[str, str] | None = None, port: int = SSH_PORT) -> str:
    """sshd's config for one guest: root by key only, PAM for the account check, the lab's environment."""
    lines = [
        f"Port {port}",
        f"ListenAddress {ip}",
        f"HostKey {ssh_dir}/{HOST_KEY}",
        f"AuthorizedKeysFile {ssh_dir}/authorized_keys",
        f"PidFile {ssh_dir}/sshd.pid",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM yes",  # virtme-ng locks root (root:! in shadow): without PAM sshd refuses the locked account
        "StrictModes no",  # the key files live in /tmp
        "UseDNS no",
        "PrintMotd no",
        "PrintLastLog no",
        "X11Forwarding no",
        "MaxStartups 64",
        "MaxSessions 64",
        "LogLevel ERROR",
    ]
    if env:
        lines.append("SetEnv " + " ".join(quote_setenv(k, v) for k, v in sorted(env.items())))
    return "\n".join(lines) + "\n"


def client_config(ssh_dir: str = GUEST_SSH_DIR, port: int = SSH_PORT) -> str:
    """ssh's config inside a guest: the lab's key, no host key checks (keys are made per run), quiet."""
    return "\n".join([
        "Host *",
        f"  Port {port}",
        "  User root",
        f"  IdentityFile {ssh_dir}/{CLIENT_KEY}",
        "  IdentitiesOnly yes",
        "  UserKnownHostsFile /dev/null",
        "  StrictHostKeyChecking no",
        "  LogLevel ERROR",
        "  BatchMode yes",
        "  ConnectTimeout 30",
        "  ServerAliveInterval 15",
        "  ServerAliveCountMax 8",  # TCG guests can pause for seconds under load
    ]) + "\n"


def hosts_file(hosts=HOSTS) -> str:
    """/etc/hosts for every guest: localhost and the three lab names."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{ip}\t{name}" for name, ip, *_ in hosts]
    return "\n".join(lines) + "\n"


def mpi_env(subnet: str = SUBNET, ssh_config: str = CLIENT_CONFIG, hosts=HOSTS) -> dict[str, str]:
    """Open MPI 4.1 (Debian 12) settings for every guest's command and every ssh session in the lab.

    With these, `mpirun -H storage,worker1,worker2 -np 3 CMD` needs no other option: ranks over ssh with the lab's
    key, TCP on the lab's link only (the rxe device is for the benchmarks, not for MPI), root allowed."""
    return {
        "OMPI_ALLOW_RUN_AS_ROOT": "1",
        "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
        "OMPI_MCA_plm_rsh_agent": f"ssh -F {ssh_config}",
        "OMPI_MCA_plm_rsh_no_tree_spawn": "1",  # mpirun starts every daemon itself: one ssh hop each
        "OMPI_MCA_pml": "ob1",  # not UCX: it would take the rxe device
        "OMPI_MCA_osc": "^ucx",
        "OMPI_MCA_btl": "self,tcp",
        "OMPI_MCA_btl_tcp_if_include": subnet,
        "OMPI_MCA_oob_tcp_if_include": subnet,
        "OMPI_MCA_rmaps_base_oversubscribe": "1",  # one vCPU per guest, yet a test may want 2 ranks in one
        "OMPI_MCA_hwloc_base_binding_policy": "none",
        "RDMABENCH_MPI_HOSTS": ",".join(name for name, *_ in hosts),
        "RDMABENCH_SSH_CONFIG": ssh_config,
    }


def make_keys(folder: Path) -> None:
    """On the host, per run: a host key for every guest's sshd and the client key pair (no passphrase)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name, kind in ((HOST_KEY, "ed25519"), (CLIENT_KEY, "ed25519")):
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", f"rdmabench-lab-{name}", "-f",
                        str(folder / name)], check=True, stdin=subprocess.DEVNULL)


# --- inside a guest ---------------------------------------------------------------------------

def _bind_over(target: str, text: str, name: str) -> None:
    """Cover a file of the read-only host tree with one of ours (made in the guest's /tmp)."""
    if not os.path.exists(target):
        return
    src = Path(GUEST_SSH_DIR) / name
    src.write_text(text)
    done = subprocess.run(["mount", "--bind", str(src), target], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"rdmabench-lab: setup failed: mount --bind {src} {target}: {done.stderr.strip()}")


def setup_guest(hostname: str, ip: str, keys: str, env: dict[str, str]) -> None:
    """Name the guest, give it the lab's /etc/hosts and ssh config, start sshd with `env` for its sessions."""
    socket.sethostname(hostname)
    d = Path(GUEST_SSH_DIR)
    d.mkdir(mode=0o700, exist_ok=True)
    for name in (HOST_KEY, CLIENT_KEY):  # copies: ssh refuses private keys others can read, and these are ours
        shutil.copyfile(Path(keys) / name, d / name)
        (d / name).chmod(0o600)
        shutil.copyfile(Path(keys) / f"{name}.pub", d / f"{name}.pub")
    shutil.copyfile(d / f"{CLIENT_KEY}.pub", d / "authorized_keys")
    Path(CLIENT_CONFIG).write_text(client_config())
    _bind_over("/etc/hosts", hosts_file(), "hosts")
    _bind_over("/etc/ssh/ssh_config", client_config(), "etc_ssh_config")  # plain `ssh worker1` works too
    _bind_over(os.path.expanduser("~root/.bashrc"), "", "empty_bashrc")  # bash runs it on every ssh hop
    fd = os.open(SSHD_CONFIG, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the lab's secret
    with os.fdopen(fd, "w") as f:
        f.write(sshd_config(ip, env=env))
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    done = subprocess.run(["/usr/sbin/sshd", "-f", SSHD_CONFIG], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"rdmabench-lab: setup failed: sshd: {done.stderr.strip() or done.returncode}")


def wait_for_sshd(ips: list[str], timeout: float, port: int = SSH_PORT) -> None:
    """Until every address answers with an ssh banner (the workers boot after storage)."""
    deadline = time.monotonic() + timeout
    for ip in ips:
        while True:
            try:
                with socket.create_connection((ip, port), timeout=5) as s:
                    s.settimeout(10)
                    if s.recv(64).startswith(b"SSH-"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"rdmabench-lab: setup failed: no sshd answered at {ip}:{port} in {timeout:.0f} s")
            time.sleep(1)
