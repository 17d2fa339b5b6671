"""The cluster file (configs/cluster.toml): roles, the two scenarios, and errors naming file, key and problem;
the role check against where the ranks run; the fan-in and matrix figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from rdmabench.cluster import config, figures, matrix
from rdmabench.cluster.run import check_roles
from rdmabench.cluster.team import ClusterError
from rdmabench.config import ConfigError

GOOD = """
[hosts]
storage = "s"
workers = ["a", "b"]
[fan_in]
workers = [1, 2]
handoffs = ["pc1-pc2", "finalize"]
transports = ["rdma-write", "http"]
[[fan_in.shapes]]
sector_size = "32GiB"
scale = "1/65536"
[all_pairs]
tests = ["write_bw", "write_lat"]
size = "64KiB"
iters = 100
"""


def test_the_shipped_file_loads():
    c = config.load(Path(__file__).parents[2] / "configs" / "cluster.toml")
    assert c.hosts == ("storage", "worker1", "worker2")
    assert c.fan_in_counts == (1, 2) and set(c.fan_in.transports) == {"rdma-write", "http"}
    assert c.all_pairs.tests == ("write_bw", "write_lat")


def test_a_good_file():
    c = config.loads(GOOD, "c.toml")
    assert c.storage == "s" and c.workers == ("a", "b") and c.step_timeout == 900
    assert len(matrix.plan(c)) == 2 * 6  # two tests, every ordered pair of three hosts
    assert matrix.options(c, "write_lat").sizes is None and matrix.options(c, "write_bw").sizes == [65536]


@pytest.mark.parametrize("change, message", [
    (("[hosts]\nstorage = \"s\"", "[hosts]"), "c.toml: hosts.storage: missing"),
    (("workers = [\"a\", \"b\"]\n[fan_in]", "workers = [\"a\", \"s\"]\n[fan_in]"), "hosts.workers[1]: 's' is named twice"),
    (("workers = [1, 2]", "workers = [1, 3]"), "fan_in.workers[1]: 3; use 1 to 2"),
    (("handoffs = [\"pc1-pc2\", \"finalize\"]", "handoffs = [\"c1-c2\"]"), "fan_in.handoffs[0]: 'c1-c2'"),
    (("transports = [\"rdma-write\", \"http\"]", "transports = [\"carrier-pigeon\"]"),
     "c.toml: fan_in: transports[0]: unknown transport 'carrier-pigeon'"),
    (("tests = [\"write_bw\", \"write_lat\"]", "tests = [\"atomic_bw\"]"), "all_pairs.tests[0]: unknown test 'atomic_bw'"),
    (("iters = 100", "iters = 0"), "all_pairs.iters: 0"),
    (("[all_pairs]", "[all_pairs]\ncolour = 1"), "all_pairs.colour: unknown key"),
])
def test_bad_files_name_the_key_and_the_problem(change, message):
    old, new = change
    assert old in GOOD
    with pytest.raises(ConfigError, match=None) as err:
        config.loads(GOOD.replace(old, new, 1), "c.toml")
    assert message in str(err.value)


def test_a_file_with_neither_scenario_is_refused():
    with pytest.raises(ConfigError, match="neither"):
        config.loads("[hosts]\nstorage = 's'\nworkers = ['a']\n", "c.toml")


def test_roles_every_host_one_rank():
    c = config.loads(GOOD, "c.toml")
    check_roles(c, ["a", "s", "b"])  # any order
    with pytest.raises(ClusterError) as err:
        check_roles(c, ["s", "a", "a"])
    text = str(err.value)
    assert "b has no rank" in text and "a runs 2 ranks" in text and "mpirun -H s,a,b" in text
    with pytest.raises(ClusterError, match="rank 2 runs on x, which the file does not name"):
        check_roles(c, ["s", "a", "x", "b"])


def _row(host, value, seconds, nbytes):
    return {"value": value, "seconds": seconds, "bytes": nbytes}


def test_fairness_figures():
    f = figures.fairness({"a": _row("a", 100.0, 1.0, 100 << 20), "b": _row("b", 50.0, 2.0, 100 << 20)})
    assert f["slowest_host"] == "b" and f["slowest_s"] == 2.0
    assert f["aggregate_MiBps"] == pytest.approx(100.0)  # 200 MiB when the last one is done
    assert f["jain"] == pytest.approx(150 ** 2 / (2 * (100 ** 2 + 50 ** 2)))
    assert f["min_over_max"] == 0.5
    assert figures.jain([3.0, 3.0, 3.0]) == pytest.approx(1.0)
    assert figures.jain([1.0, 0.0]) == pytest.approx(0.5)


def test_the_matrix_names_the_worst_link():
    rows = [{"measured": {"scenario": "all-pairs", "from": a, "to": b, "test": "write_bw", "size": 65536},
             "metric": "bw_avg_MiBps", "unit": "MiB/s", "higher_is_better": True, "value": v}
            for a, b, v in [("s", "a", 50), ("a", "s", 52), ("s", "b", 20), ("b", "s", 49), ("a", "b", 51),
                            ("b", "a", 50)]]
    [(title, header, body, note)] = figures.matrix_tables(rows)
    assert header == ["client \\ server", "a", "b", "s"]
    assert body[2] == ["s", "50.00", "20.00", "-"]
    assert "s -> b, 20.00" in note
