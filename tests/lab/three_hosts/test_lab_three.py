"""The three-guest lab works as mpirun needs it: run in the storage guest of
`rdmabench lab --hosts 3` (`make test-lab-three`).

ssh from storage reaches worker1 and worker2 by name; `mpirun -H $RDMABENCH_MPI_HOSTS` starts one
rank per guest, and every rank sees its own guest's lab variables and the lab's secret; RDMA
(perftest's ib_write_bw over rdma_cm) works between every pair of guests. Anything missing fails."""

import hashlib
import json
import os
import subprocess
import time

import pytest


def lab_value(name: str) -> str:
    """A variable the three-guest lab sets; its absence fails the test (this is not the lab), never skips it."""
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"${name} is not set: these tests run in the storage guest of `rdmabench lab --hosts 3` "
                    "(make test-lab-three)")
    return value

NAMES = {"storage": "10.77.3.1", "worker1": "10.77.3.2", "worker2": "10.77.3.3"}
SSH_TIMEOUT = 120
MPI_TIMEOUT = 300


def sh(argv, timeout, **kw):
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    print(f"{time.monotonic() - started:6.1f} s  {' '.join(argv)[:120]}")
    return done


def remote(host, command, timeout=SSH_TIMEOUT):
    """`command` in guest `host` over the lab's ssh (locally when host is storage, where the tests run)."""
    if host == "storage":
        return sh(["/bin/sh", "-c", command], timeout)
    return sh(["ssh", "-F", lab_value("RDMABENCH_SSH_CONFIG"), host, command], timeout)


@pytest.fixture(scope="module", autouse=True)
def in_storage():
    if lab_value("RDMABENCH_HOSTNAME") != "storage" or lab_value("RDMABENCH_IP") != NAMES["storage"]:
        pytest.fail("run in the storage guest of `rdmabench lab --hosts 3` (make test-lab-three)")


@pytest.mark.parametrize("host", ["worker1", "worker2"])
def test_ssh_reaches_each_worker_by_name_with_its_own_lab_values(host):
    done = remote(host, 'hostname; echo "$RDMABENCH_HOSTNAME $RDMABENCH_IP $RDMABENCH_DEVICE"; '
                        'echo "${RDMABENCH_SECRET:-none}" | sha256sum')
    assert done.returncode == 0, done.stderr
    name, values, digest = done.stdout.splitlines()
    assert name == host
    assert values == f"{host} {NAMES[host]} {lab_value('RDMABENCH_DEVICE')}"
    assert digest.split()[0] == hashlib.sha256((lab_value("RDMABENCH_SECRET") + "\n").encode()).hexdigest()


def test_plain_ssh_by_name_works_too():
    """/etc/ssh/ssh_config is the lab's in every guest: `ssh worker2 CMD` needs no -F."""
    done = sh(["ssh", "worker2", "ssh worker1 hostname"], SSH_TIMEOUT)
    assert done.returncode == 0 and done.stdout.strip() == "worker1", done.stderr


RANK = """
import hashlib, json, os, socket
from mpi4py import MPI
env_file = dict(l.split("=", 1) for l in open("/tmp/rdmabench-lab.env").read().splitlines())
me = {"rank": MPI.COMM_WORLD.Get_rank(), "host": socket.gethostname(),
      "ip": os.environ.get("RDMABENCH_IP"), "file_ip": env_file.get("RDMABENCH_IP"),
      "device": os.environ.get("RDMABENCH_DEVICE"),
      "secret": hashlib.sha256(os.environ.get("RDMABENCH_SECRET", "").encode()).hexdigest()}
everyone = MPI.COMM_WORLD.allgather(me)
if me["rank"] == 0:
    print(json.dumps(everyone))
"""


@pytest.fixture(scope="module")
def ranks():
    """One mpirun, exactly as a test or `rdmabench cluster` would write it, its ranks' views allgathered."""
    hosts = lab_value("RDMABENCH_MPI_HOSTS")
    assert hosts == "storage,worker1,worker2"
    done = sh(["mpirun", "-H", hosts, "-np", "3", "python", "-c", RANK], MPI_TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_mpirun_allgathers_the_three_hostnames(ranks):
    assert sorted(r["host"] for r in ranks) == sorted(NAMES)
    assert [r["rank"] for r in ranks] == [0, 1, 2]


def test_each_rank_sees_its_own_guests_lab_values(ranks):
    for r in ranks:
        assert r["ip"] == r["file_ip"] == NAMES[r["host"]], r
        assert r["device"] == lab_value("RDMABENCH_DEVICE"), r


def test_remote_ranks_see_the_labs_secret(ranks):
    want = hashlib.sha256(lab_value("RDMABENCH_SECRET").encode()).hexdigest()
    assert [r["secret"] for r in ranks] == [want] * 3


# perftest between the two workers: their frames cross the hub in storage's QEMU from one stream port to the
# other, the lab's longest path. Every other pair is crossed by rdmabench cluster's all-pairs matrix
# (test_cluster.py), in both directions.
PAIRS = [("worker2", "worker1")]


@pytest.mark.parametrize("server,client", PAIRS, ids=[f"{c}-to-{s}" for s, c in PAIRS])
def test_rdma_between_each_pair_of_guests(server, client):
    """perftest's ib_write_bw over rdma_cm, server in one guest, client in another, over the lab's link."""
    dev = lab_value("RDMABENCH_DEVICE")
    port = 18515 + list(NAMES).index(server) * 10 + list(NAMES).index(client)
    bw = f"ib_write_bw -d {dev} -R -F -s 65536 -n 200 -p {port}"
    srv = subprocess.Popen(["ssh", "-F", lab_value("RDMABENCH_SSH_CONFIG"), server, f"timeout 150 {bw}"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(20):  # the server needs a moment to listen, more under emulation
            time.sleep(3)
            done = remote(client, f"timeout 120 {bw} {NAMES[server]}", timeout=150)
            if done.returncode == 0 or srv.poll() is not None:
                break
        assert done.returncode == 0, done.stdout + done.stderr
        rows = [l.split() for l in done.stdout.splitlines() if l.strip().startswith("65536")]
        assert rows and float(rows[0][3]) > 0, done.stdout  # #bytes #iterations BW peak BW average
        print(f"{client} -> {server}: ib_write_bw 64 KiB average {rows[0][3]} MB/s")
        out, _ = srv.communicate(timeout=60)
        assert srv.returncode == 0, out
    finally:
        if srv.poll() is None:
            srv.kill()
