"""All pairs: a verbs test between every ordered pair of hosts, one pair at a time, as NVIDIA's ClusterKit
does, so that a bad link or port stands out of the matrix (figures.render_matrix names the cell furthest
from the median).

Every host's rank serves the verbs service (its `serve` daemon); for the pair (a, b) the rank on a runs
the same client as `rdmabench run --peer b` and the others wait at the meeting points. One pair at a time:
the figures are each link's own, not a share of a busy switch. Rows: the verbs rows with
``{"scenario": "all-pairs", "from": a, "to": b}`` ahead of their own measured keys.
"""

from __future__ import annotations

from ..perf.client import Client
from ..perf.options import RunOptions

SCENARIO = "all-pairs"


def plan(cluster) -> list[tuple[str, str, str]]:
    hosts = cluster.hosts
    return [(a, b, test) for test in cluster.all_pairs.tests for a in hosts for b in hosts if a != b]


def label(pair: tuple[str, str, str]) -> str:
    a, b, test = pair
    return f"all-pairs {test} {a} -> {b}"


def options(cluster, test: str) -> RunOptions:
    """A bandwidth test at the file's size, a latency test at its own default size (2 bytes, as perftest)."""
    pairs = cluster.all_pairs
    return RunOptions(tests=[test], sizes=[pairs.size] if test.endswith("_bw") else None, iters=pairs.iters)


def run_pair(cluster, pair, dev, peer: tuple[str, int], wait: float) -> list[dict]:
    """On host a: the test against b's serve; its rows, marked with the pair. ``dev``: this host's device as
    its rank described it once (not again for every pair)."""
    a, b, test = pair
    result = Client(options(cluster, test), dev.name, peer[0], peer[1], wait=wait, warn=lambda msg: None,
                    live=lambda msg: None, dev=dev).run()
    rows = []
    for r in result.rows:
        r["measured"] = {"scenario": SCENARIO, "from": a, "to": b, **r["measured"]}
        r["detail"]["peer_context"] = {k: (result.peer_context or {}).get(k) for k in ("host", "device")}
        rows.append(r)
    return rows
