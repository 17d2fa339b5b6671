"""What the lab's efficiency tests check in a `rdmabench run --config` result with rdma-write and rdma-read
(one host and two): every rdma row carries a raw figure measured in the same run, at its own chunk size,
QPs and depth, and its ratio is its throughput over that figure."""

import pytest

RAW_TEST = {"rdma-write": "write_bw", "rdma-read": "read_bw"}


def check_efficiency(result: dict, stdout: str, chunk: int, inflight: int, between: str) -> dict:
    """Returns {transport: [its rows]} after checking every rdma row and the raw rows behind them."""
    transfers = [r for r in result["rows"] if "handoff" in r["measured"]]
    raws = {r["measured"]["test"]: r for r in result["rows"] if "test" in r["measured"]}
    assert set(raws) == {"write_bw", "read_bw"}, result["rows"]  # once per distinct setting, not per repetition
    assert len(result["rows"]) == len(transfers) + 2
    for test, r in raws.items():
        d = r["detail"]
        assert r["metric"] == "bw_avg_MiBps" and r["value"] > 0 and r["bytes"] > 0, r
        assert r["measured"]["size"] == chunk and d["qps"] == 1 and d["depth"] == inflight, d
        assert d["duration_s"] > 0 and d["between"].startswith(between), d
    by_transport: dict = {}
    for r in transfers:
        transport, d = r["measured"]["transport"], r["detail"]
        by_transport.setdefault(transport, []).append(r)
        assert d["verified"] is True and r["value"] > 0
        if transport not in RAW_TEST:
            assert "efficiency" not in d and "raw_bw_MiBps" not in d
            continue
        raw = raws[RAW_TEST[transport]]
        assert d["raw_test"] == RAW_TEST[transport], d
        assert d["raw_setup"] == {"size": chunk, "qps": 1, "depth": inflight}, d
        assert all(item["extra"]["chunk"] == chunk and item["extra"]["inflight"] == inflight for item in d["items"])
        assert d["raw_bw_MiBps"] == raw["value"] > 0 and "raw_note" not in d, d
        assert d["efficiency"] == pytest.approx(r["value"] / raw["value"], rel=1e-12), d
    assert set(RAW_TEST) <= set(by_transport)
    head = stdout.splitlines()[0]
    assert head.rstrip().endswith("raw MiB/s  of raw"), stdout
    for line in stdout.splitlines():
        if any(f" {t} " in line for t in RAW_TEST):
            assert line.endswith("%") and len(line) == len(head), line  # both cells filled
    return by_transport
