"""The lab's command lines and host checks, tested without booting anything."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from rdmabench.cli import cli
from rdmabench.errors import LabError
from rdmabench.lab import vm


def spec(**kw):
    base = dict(role="single", command="rdmabench devices", cwd="/repo", ip=vm.SINGLE_IP, results="/repo/results")
    base.update(kw)
    return vm.GuestSpec(**base)


def test_guest_spec_survives_any_quoting_and_any_length(tmp_path):
    """The spec travels in a private file, not on the kernel command line (2048 bytes, shown by `ps`):
    an 800-character command used to leave the guest hanging until the boot timeout."""
    s = spec(command="echo \"it's\" $HOME && exit 3 ; `x` # " + "x" * 5000, env={"CI": "true", "RDMABENCH_SECRET": "s" * 64})
    path = s.write(tmp_path / "g.json")
    assert vm.GuestSpec.read(path) == s
    assert (path.stat().st_mode & 0o777) == 0o600  # it carries the lab's secret
    line = vm.guest_exec(path, "/repo/.venv/bin/python")
    assert line == f"exec /repo/.venv/bin/python -m rdmabench.lab.guest {path}"
    assert "x" * 100 not in line and "s" * 64 not in line  # neither the command nor the secret is on the line


def test_tcg_command_line():
    argv = vm.vng_command(spec(), Path("/spec.json"), kernel=Path("/boot/vmlinuz-6.1.0-56-amd64"), python="/py", cpus=2,
                          memory="2G", kvm=False, name="rdmabench-lab")
    assert argv[:3] == ["vng", "--run", "/boot/vmlinuz-6.1.0-56-amd64"]
    assert "--disable-kvm" in argv
    assert argv[argv.index("--rwdir") + 1] == "/repo/results"
    assert argv[argv.index("--cpus") + 1] == "2" and argv[argv.index("--memory") + 1] == "2G"
    assert argv[-2] == "--exec"


def test_console_shows_the_kernels_errors_and_worse():
    quiet = vm.vng_command(spec(), Path("/s.json"), kernel=Path("/k"), python="/py", cpus=2, memory="2G", kvm=False,
                           name="lab")
    assert "--verbose" not in quiet and "--append" not in quiet  # vng's default: the console goes nowhere
    loud = vm.vng_command(spec(), Path("/s.json"), kernel=Path("/k"), python="/py", cpus=2, memory="2G", kvm=False,
                          name="lab", console=True)
    assert "--verbose" in loud and loud[loud.index("--append") + 1] == "loglevel=4"  # 0-3: emergency to error
    assert loud[-2] == "--exec"


def test_kvm_command_line_and_link_options():
    opts = vm.link_opts("/tmp/x/link.sock", server=True, mac=vm.STORAGE_MAC)
    argv = vm.vng_command(spec(role="storage", mac=vm.STORAGE_MAC), Path("/spec.json"), kernel=Path("/k"), python="/py", cpus=1,
                          memory="1G", kvm=True, name="storage", qemu_opts=opts)
    assert "--disable-kvm" not in argv
    assert f"--qemu-opts={opts}" in argv
    assert "server=on" in opts and "addr.path=/tmp/x/link.sock" in opts and vm.STORAGE_MAC in opts
    assert "server=off" in vm.link_opts("/s", server=False, mac=vm.WORKER_MAC)


def test_kvm_only_with_vmx_or_svm(tmp_path):
    cpuinfo, dev = tmp_path / "cpuinfo", tmp_path / "kvm"
    dev.touch()
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 hypervisor\n")
    assert not vm.kvm_usable(cpuinfo, dev)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu vmx sse2\n")
    assert vm.kvm_usable(cpuinfo, dev)
    assert not vm.kvm_usable(cpuinfo, tmp_path / "no-kvm-device")


def test_newest_kernel_is_chosen(tmp_path):
    for v in ("6.1.0-9", "6.1.0-56", "6.12.48+deb13"):
        (tmp_path / f"vmlinuz-{v}-amd64").touch()
    assert vm.find_kernel(tmp_path).name == "vmlinuz-6.12.48+deb13-amd64"
    with pytest.raises(LabError, match="make install"):
        vm.find_kernel(tmp_path / "empty")


def test_missing_tools_name_the_package_and_the_make_target(monkeypatch):
    monkeypatch.setattr(vm.shutil, "which", lambda name, path=None: None)
    with pytest.raises(LabError) as err:
        vm.check_host()
    msg = str(err.value)
    assert "vng" in msg and "qemu-system-x86_64" in msg and "make install" in msg
    out = CliRunner().invoke(cli, ["lab", "--", "true"])
    assert out.exit_code == 1 and "missing: vng" in out.output


def test_a_named_kernel_needs_no_installed_one(monkeypatch):
    monkeypatch.setattr(vm.Path, "glob", lambda self, pattern: iter(()))  # no /boot/vmlinuz-* on this host
    assert any("/boot/vmlinuz" in m for m in vm.missing_tools())
    assert not any("/boot/vmlinuz" in m for m in vm.missing_tools(installed_kernel=False))


def test_unix_listening_waits_for_listen_not_for_the_file(tmp_path):
    import socket

    from rdmabench.lab.runner import unix_listening

    path = str(tmp_path / "link.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(path)  # the file exists now, but a connect would be refused
        assert not unix_listening(path)
        s.listen(1)
        assert unix_listening(path)
    finally:
        s.close()
