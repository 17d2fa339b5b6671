"""Two containers on one host, storage and worker, each with its own network namespace and soft-RoCE device
(containers/, docs/containers.md): the README's `make demo-containers`, the namespaces and devices it makes,
and the entrypoint's errors.

Runs in a lab guest booting a kernel whose rxe crosses network namespaces, with the image built on the host
(`make test-lab-containers` does both). podman keeps its state on a tmpfs and reads the image from the host's
store, read-only (the guest's root is the host's)."""

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
IMAGE = os.environ.get("RDMABENCH_IMAGE", "localhost/rdmabench:latest")
# what CI can afford under emulation: every hand-off and transport of configs/containers.toml, files shrunk;
# no report: under this kernel in the lab, matplotlib reading its fonts over the guest's 9p root takes 8-9 min
# (73 s under 6.1; docs/containers.md). `rdmabench report` is tested on the host and in the other labs.
QUICK = {"DEMO_TRANSFER_OPTS": "--repetitions 1 --scale 1/65536",
         "DEMO_VERBS": "-t write_bw,read_lat --sizes 64K --iters 200", "DEMO_REPORT": "0"}
STORAGE_CONF = """[storage]
driver = "overlay"
graphroot = "/tmp/containers/storage"
runroot = "/run/containers/storage"
[storage.options]
additionalimagestores = ["/var/lib/containers/storage"]
"""


def sh(*argv, check=True, timeout=600, env=None, **kw):
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env=dict(os.environ, **(env or {})), **kw)
    if check and done.returncode != 0:
        pytest.fail(f"{' '.join(argv)} exited {done.returncode}\n--- stdout\n{done.stdout[-4000:]}\n"
                    f"--- stderr\n{done.stderr[-4000:]}")
    return done


@pytest.fixture(scope="module", autouse=True)
def podman(lab_env):  # lab_env fails outside the lab
    store = Path("/tmp/containers")
    store.mkdir(exist_ok=True)
    if not os.path.ismount(store):  # overlay storage cannot sit on the guest's overlay /tmp
        sh("mount", "-t", "tmpfs", "tmpfs", str(store))
    conf = Path("/tmp/rdmabench-containers-storage.conf")
    conf.write_text(STORAGE_CONF)
    os.environ["CONTAINERS_STORAGE_CONF"] = str(conf)
    if sh("podman", "image", "exists", IMAGE, check=False).returncode != 0:
        pytest.fail(f"no image {IMAGE} in the host's store: on the host run containers/build-image.sh --base "
                    "mmdebstrap (make test-lab-containers does)")
    sh("modprobe", "-a", "rdma_rxe", "ib_uverbs", "rdma_ucm")


def run_image(*podman_args, command=("true",)):
    """One container of the image with the given podman options, its entrypoint first."""
    return sh("podman", "run", "--rm", "-e", "RDMABENCH_DEVICE=rxe_probe", *podman_args, IMAGE, *command,
              check=False, timeout=300)


def test_exclusive_namespace_mode_is_refused_with_the_fix():
    # first: exclusive mode can only be set while no other network namespace exists
    sh("rdma", "system", "set", "netns", "exclusive")
    try:
        done = run_image("--cap-add", "NET_ADMIN")
    finally:
        sh("rdma", "system", "set", "netns", "shared")
    assert done.returncode == 1
    assert "exclusive namespace mode" in done.stderr and "rdma system set netns shared" in done.stderr


def test_a_container_without_net_admin_is_told_so():
    done = run_image()
    assert done.returncode == 1
    assert "CAP_NET_ADMIN" in done.stderr and "cap_add" in done.stderr


def test_a_container_that_cannot_open_the_verbs_node_is_told_how():
    done = run_image("--cap-add", "NET_ADMIN", "-v", "/dev/infiniband:/dev/infiniband")
    assert done.returncode == 1
    assert "cannot open /dev/infiniband/uverbs" in done.stderr and "device_cgroup_rules" in done.stderr


def test_make_demo_containers_moves_verified_sectors_and_runs_verbs_tests(lab_env):
    results = Path(lab_env["results"]) / f"containers-{time.strftime('%Y%m%d-%H%M%S')}"
    done = sh("make", "demo-containers", env=dict(QUICK, RDMABENCH_RESULTS_DIR=str(results)), timeout=1200)
    print(done.stdout[-3000:])

    transfers = json.loads((results / "containers-transfers.json").read_text())
    # each end's own device on its own eth0, with its own address: two interfaces named eth0 (and the guest has
    # none) are two network namespaces; both ends' context is in the file, as every two-host result has it
    worker, storage = transfers["context"], transfers["peer_context"]
    assert (worker["device"]["name"], storage["device"]["name"]) == ("rxe_worker", "rxe_storage")
    assert worker["device"]["netdev"] == storage["device"]["netdev"] == "eth0"
    assert not Path("/sys/class/net/eth0").exists()
    addresses = {worker["device"]["gid"], storage["device"]["gid"], f"::ffff:{lab_env['ip']}"}
    assert len(addresses) == 3 and all(a.startswith("::ffff:") for a in addresses), addresses
    assert (worker["host"]["hostname"], storage["host"]["hostname"]) == ("worker", "storage")
    assert worker["host"]["container"] == storage["host"]["container"] == "podman"
    seen = re.search(r"worker: rxe_worker at \S+ \(netns (net:\[\d+\])\)", done.stdout + done.stderr)
    assert seen and seen.group(1) != os.readlink("/proc/self/ns/net")  # as the worker's job printed it
    assert "rxe" in transfers["context"]["environment"]
    rows = [r for r in transfers["rows"] if "handoff" in r["measured"]]  # the others: the link's raw figures
    moved = {(r["measured"]["handoff"], r["measured"]["transport"]) for r in rows}
    assert moved == {(h, t) for h in ("pc1-pc2", "finalize") for t in ("http", "rdma-write", "rdma-read")} | {
        ("c1-c2", "http"), ("c1-c2", "rdma-write")}
    for row in rows:
        assert row["detail"]["verified"] is True, row["measured"]
        assert row["detail"]["items"] and all(i["verified"] for i in row["detail"]["items"]), row["measured"]

    verbs = json.loads((results / "containers-verbs.json").read_text())
    tests = {r["measured"]["test"]: r["value"] for r in verbs["rows"]}
    assert set(tests) == {"write_bw", "read_lat"} and all(v > 0 for v in tests.values()), tests
    assert verbs["peer_context"]["device"]["name"] == "rxe_storage"
    assert not (results / "containers-report").exists()  # DEMO_REPORT=0 reached the worker's job
