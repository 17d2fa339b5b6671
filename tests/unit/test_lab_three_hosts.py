"""The three-guest lab's pieces, tested without booting anything: the hub's QEMU options, sshd's and ssh's
config, /etc/hosts, the Open MPI environment and the CLI's choices."""

import shlex

from click.testing import CliRunner

from rdmabench.cli import cli
from rdmabench.lab import runner, ssh, vm


def test_hub_options_put_storage_and_one_stream_server_per_worker_on_one_hub():
    opts = vm.hub_opts(["/t/worker1.sock", "/t/worker2.sock"], mac="52:54:00:77:03:01")
    words = shlex.split(opts)
    netdevs = [words[i + 1] for i, w in enumerate(words) if w == "-netdev"]
    assert netdevs == [
        "hubport,id=h0,hubid=0",
        "stream,id=s1,server=on,addr.type=unix,addr.path=/t/worker1.sock",
        "hubport,id=hp1,hubid=0,netdev=s1",
        "stream,id=s2,server=on,addr.type=unix,addr.path=/t/worker2.sock",
        "hubport,id=hp2,hubid=0,netdev=s2",
    ]
    assert words[words.index("-device") + 1] == "virtio-net-pci,netdev=h0,mac=52:54:00:77:03:01"
    assert words.count("-device") == 1  # only storage's own NIC; the workers' NICs are in their own QEMU
    assert "multicast" not in opts and "mcast" not in opts  # it lost a third of the frames under RDMA load


def test_worker_end_is_a_stream_client_of_its_socket():
    opts = vm.link_opts("/t/worker2.sock", server=False, mac=ssh.HOSTS[2][2])
    assert "server=off" in opts and "addr.path=/t/worker2.sock" in opts and "52:54:00:77:03:03" in opts


def test_topology_names_addresses_and_macs_are_distinct_and_in_the_subnet():
    names = [h[0] for h in ssh.HOSTS]
    assert names == ["storage", "worker1", "worker2"]
    assert [h[1] for h in ssh.HOSTS] == ["10.77.3.1", "10.77.3.2", "10.77.3.3"]
    assert len({h[2] for h in ssh.HOSTS}) == 3
    assert ssh.SUBNET == "10.77.3.0/24"


def test_sshd_config_lets_locked_root_in_by_key_only_and_carries_the_guest_env():
    text = ssh.sshd_config("10.77.3.2", "/tmp/k", {"RDMABENCH_IP": "10.77.3.2", "OMPI_MCA_plm_rsh_agent": "ssh -F /x",
                                                   "Q": 'a"b\\c'})
    lines = text.splitlines()
    assert "UsePAM yes" in lines  # virtme-ng's root is locked (root:!): only PAM's account check lets it in
    assert "PermitRootLogin prohibit-password" in lines
    assert "PasswordAuthentication no" in lines and "StrictModes no" in lines
    assert "ListenAddress 10.77.3.2" in lines and "Port 22" in lines
    assert "HostKey /tmp/k/host_key" in lines and "AuthorizedKeysFile /tmp/k/authorized_keys" in lines
    setenv = [l for l in lines if l.startswith("SetEnv ")]
    assert len(setenv) == 1
    assert shlex.split(setenv[0])[1:] == ['OMPI_MCA_plm_rsh_agent=ssh -F /x', 'Q=a"b\\c', "RDMABENCH_IP=10.77.3.2"]


def test_sshd_config_refuses_a_newline_in_a_value():
    import pytest

    with pytest.raises(ValueError):
        ssh.sshd_config("10.77.3.1", env={"X": "a\nPermitEmptyPasswords yes"})


def test_client_config_uses_the_lab_key_and_skips_host_key_checks():
    lines = [l.strip() for l in ssh.client_config("/tmp/k").splitlines()]
    assert lines[0] == "Host *"
    for want in ("IdentityFile /tmp/k/client_key", "UserKnownHostsFile /dev/null", "StrictHostKeyChecking no",
                 "LogLevel ERROR", "User root", "BatchMode yes"):
        assert want in lines


def test_hosts_file_names_the_three_guests():
    lines = ssh.hosts_file().splitlines()
    assert "127.0.0.1\tlocalhost" in lines
    assert lines[-3:] == ["10.77.3.1\tstorage", "10.77.3.2\tworker1", "10.77.3.3\tworker2"]


def test_mpi_env_keeps_open_mpi_on_the_lab_link_over_ssh_as_root():
    env = ssh.mpi_env()
    assert env["OMPI_ALLOW_RUN_AS_ROOT"] == env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] == "1"
    assert env["OMPI_MCA_plm_rsh_agent"] == f"ssh -F {ssh.CLIENT_CONFIG}"
    assert env["OMPI_MCA_btl"] == "self,tcp" and env["OMPI_MCA_pml"] == "ob1"
    assert env["OMPI_MCA_btl_tcp_if_include"] == env["OMPI_MCA_oob_tcp_if_include"] == "10.77.3.0/24"
    assert env["RDMABENCH_MPI_HOSTS"] == "storage,worker1,worker2"
    assert env["RDMABENCH_SSH_CONFIG"] == ssh.CLIENT_CONFIG


def test_make_keys_makes_private_key_pairs(tmp_path):
    ssh.make_keys(tmp_path / "ssh")
    for name in (ssh.HOST_KEY, ssh.CLIENT_KEY):
        key = tmp_path / "ssh" / name
        assert key.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
        assert key.stat().st_mode & 0o077 == 0
        assert (tmp_path / "ssh" / f"{name}.pub").read_text().startswith("ssh-ed25519 ")
    assert (tmp_path / "ssh").stat().st_mode & 0o077 == 0


def test_guest_spec_carries_the_three_host_fields(tmp_path):
    s = vm.GuestSpec(role="worker", command="true", cwd="/r", ip="10.77.3.2", mac=ssh.HOSTS[1][2], hostname="worker1",
                     ssh_keys="/k", wait_for=["10.77.3.3"], wait_timeout=12.0)
    assert vm.GuestSpec.read(s.write(tmp_path / "g.json")) == s


def _captured_run(monkeypatch):
    seen = {}

    def fake_run(options, command=None, storage=None, worker=None, hosts=1):
        seen.update(options=options, command=command, storage=storage, worker=worker, hosts=hosts)
        return 0

    monkeypatch.setattr(runner, "run", fake_run)
    return seen


def test_cli_three_hosts_runs_the_command_in_storage_with_one_vcpu(monkeypatch):
    seen = _captured_run(monkeypatch)
    out = CliRunner().invoke(cli, ["lab", "--hosts", "3", "--", "mpirun -np 3 hostname"])
    assert out.exit_code == 0, out.output
    assert seen["hosts"] == 3 and seen["command"] == "mpirun -np 3 hostname" and seen["options"].cpus == 1
    out = CliRunner().invoke(cli, ["lab", "--hosts", "3", "--cpus", "2", "--storage", "x", "--worker", "y"])
    assert out.exit_code == 0 and seen["storage"] == "x" and seen["worker"] == "y" and seen["options"].cpus == 2
    out = CliRunner().invoke(cli, ["lab", "--hosts", "2", "--", "true"])
    assert seen["options"].cpus == 2  # the other labs keep their default


def test_cli_three_hosts_needs_one_storage_command(monkeypatch):
    _captured_run(monkeypatch)
    out = CliRunner().invoke(cli, ["lab", "--hosts", "3"])
    assert out.exit_code == 2 and "runs in the storage guest" in out.output
    out = CliRunner().invoke(cli, ["lab", "--hosts", "3", "--storage", "a", "--", "b"])
    assert out.exit_code == 2 and "give one" in out.output
