"""The container pieces that can be checked on a host without RDMA: the lab's --kernel, the compose file's
privileges, and demo-containers' refusal on a kernel without rdma_rxe. The containers themselves run in the
lab (tests/lab/containers)."""

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from rdmabench.cli import cli
from rdmabench.errors import LabError
from rdmabench.lab import vm

ROOT = Path(__file__).resolve().parents[2]


def fake_kernel(tree: Path, version: str, with_rxe: bool = True) -> Path:
    """A Debian kernel package unpacked the newer way: <tree>/usr/lib/modules/<version>/vmlinuz."""
    moddir = tree / "usr" / "lib" / "modules" / version
    moddir.mkdir(parents=True)
    if with_rxe:
        (moddir / "kernel/drivers/infiniband/sw/rxe").mkdir(parents=True)
    image = moddir / "vmlinuz"
    image.write_bytes(b"not really a kernel")
    return image


def test_a_named_kernel_with_rxe_beside_it_is_taken(tmp_path):
    image = fake_kernel(tmp_path, "7.3.4+deb13-amd64")
    assert vm.check_kernel(image) == image.resolve()


def test_a_named_kernel_without_rxe_or_missing_is_refused_with_the_reason(tmp_path):
    with pytest.raises(LabError, match="no rdma_rxe module for version '9.9.9-amd64'"):
        vm.check_kernel(fake_kernel(tmp_path, "9.9.9-amd64", with_rxe=False))
    with pytest.raises(LabError, match="no kernel image at .*scripts/fetch-lab-kernel.sh"):
        vm.check_kernel(tmp_path / "nope")


def test_lab_kernel_option_reaches_the_check(tmp_path):
    out = CliRunner().invoke(cli, ["lab", "--kernel", str(tmp_path / "absent"), "--", "true"])
    assert out.exit_code != 0
    assert "no kernel image at" in out.output or "no kernel image at" in str(out.exception)


def test_compose_gives_each_service_only_what_rdma_needs():
    compose = yaml.safe_load((ROOT / "containers" / "compose.yaml").read_text())
    assert set(compose["services"]) == {"storage", "worker"}
    for name, svc in compose["services"].items():
        assert not svc.get("privileged"), name
        assert set(svc["cap_add"]) == {"NET_ADMIN", "IPC_LOCK"}, name
        assert "/dev/infiniband:/dev/infiniband" in svc["volumes"], name
        assert set(svc["device_cgroup_rules"]) == {"c 231:* rmw", "c 10:* rmw"}, name
        assert svc["networks"] == ["rdma"], name
        assert f"rxe_{name}" in svc["environment"]["RDMABENCH_DEVICE"], name  # its own device, by name


def test_demo_containers_on_a_kernel_without_rdma_rxe_says_what_to_do():
    if Path("/sys/module/rdma_rxe").exists() or os.geteuid() != 0:
        pytest.fail("this test needs a root host whose kernel cannot load rdma_rxe (our CI machines)")
    done = subprocess.run(["containers/demo.sh"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "cannot load rdma_rxe" in done.stderr and "linux-modules-extra" in done.stderr


def test_the_shell_scripts_parse():
    for script in ("containers/demo.sh", "containers/build-image.sh", "scripts/fetch-lab-kernel.sh"):
        subprocess.run(["bash", "-n", script], cwd=ROOT, check=True)
    for script in ("containers/entrypoint.sh", "containers/worker-job.sh", "docs/containers-netns.sh"):
        subprocess.run(["sh", "-n", script], cwd=ROOT, check=True)


def test_every_result_says_which_container_engine_it_ran_under(tmp_path):
    from rdmabench.results import context

    assert context.container(tmp_path) is None
    (tmp_path / ".dockerenv").touch()
    assert context.container(tmp_path) == "docker"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".containerenv").touch()
    assert context.container(tmp_path) == "podman"
    assert "container" in context.host()
