"""Duration mode's figures from an engine's raw record: windows, histogram percentiles, the options and
the live line. (The engine itself is tested in the lab: tests/lab/one_host/test_duration_mode.py.)"""

import math

import pytest

from rdmabench.perf import metrics, table
from rdmabench.perf.options import RunOptions
from rdmabench.perf.server import SETUP, jsonable, run_kwargs
from rdmabench.wirecheck import fields


def test_bandwidth_windows_min_median_max_over_the_full_windows_only():
    # 64 KiB messages; windows end at 1.0, 2.0, 3.1 s and a last one cut short at 3.3 s
    raw = {"t_ns": [1_000_000_000, 2_000_000_000, 3_100_000_000, 3_300_000_000],
           "ops": [160, 480, 800, 810], "last": [0, 0, 0, 1]}
    out = metrics.windows(raw, 65536)
    rates = [w["MiBps"] for w in out["windows"]]
    assert rates[:3] == pytest.approx([10.0, 20.0, 320 / 16 / 1.1])
    assert out["windows_full"] == 3 and out["windows"][3]["full"] is False
    assert out["bw_window_min_MiBps"] == pytest.approx(10.0)
    assert out["bw_window_median_MiBps"] == pytest.approx(320 / 16 / 1.1)
    assert out["bw_window_max_MiBps"] == pytest.approx(20.0)
    assert sum(w["ops"] for w in out["windows"]) == 810


def test_a_run_shorter_than_one_window_has_no_window_figures():
    out = metrics.windows({"t_ns": [400_000_000], "ops": [10], "last": [1]}, 4096)
    assert out["windows_full"] == 0 and "bw_window_min_MiBps" not in out
    assert table._windows(out) == "-"


def test_latency_windows_summarise_each_windows_p50_and_p99():
    raw = {"t_ns": [10**9, 2 * 10**9, 2_500_000_000], "ops": [100, 250, 300], "last": [0, 0, 1],
           "samples": [100, 150, 50], "lat_min_ns": [900.0, 950.0, 1000.0], "lat_p50_ns": [1000.0, 3000.0, 2000.0],
           "lat_p99_ns": [5000.0, 9000.0, 7000.0], "lat_max_ns": [8000.0, 20000.0, 9000.0]}
    out = metrics.windows(raw, 2)
    assert out["window_lat_p50_us"] == {"min": 1.0, "median": 2.0, "max": 3.0}
    assert out["window_lat_p99_us"]["max"] == 9.0
    assert [w["samples"] for w in out["windows"]] == [100, 150, 50]


def test_histogram_percentiles_by_nearest_rank():
    # 90 samples near 1 us, 9 near 2 us, 1 at 50 us: p50 1 us, p99 2 us, max 50 us
    out = metrics.latency_from_histogram([1000.5, 2000.5, 50000.5], [90, 9, 1], "half round trip")
    assert out["samples"] == 100
    assert out["lat_p50_us"] == pytest.approx(1.0005) and out["lat_p99_us"] == pytest.approx(2.0005)
    assert out["lat_p99_9_us"] == pytest.approx(50.0005) and out["lat_max_us"] == pytest.approx(50.0005)
    assert out["lat_mean_us"] == pytest.approx((90 * 1000.5 + 9 * 2000.5 + 50000.5) / 100 / 1000)
    assert "histogram" in out["percentiles_from"]
    with pytest.raises(ValueError):
        metrics.latency_from_histogram([], [], "x")


def test_until_stopped_is_one_test_at_one_size_and_native_only():
    opts = RunOptions(tests=["write_bw"], sizes=[65536], until_stopped=True)
    assert opts.iterations("write_bw") == 0
    with pytest.raises(ValueError, match="one test and one size"):
        RunOptions(tests=["write_bw", "read_bw"], until_stopped=True)
    with pytest.raises(ValueError, match="one test and one size"):
        RunOptions(tests=["write_bw"], sizes=[4096, 65536], until_stopped=True)
    with pytest.raises(ValueError, match="drop --iters"):
        RunOptions(tests=["write_bw"], iters=10, until_stopped=True)
    with pytest.raises(ValueError, match="--engine native"):
        RunOptions(tests=["write_bw"], engine="python", interval=1.0)
    with pytest.raises(ValueError, match="--interval"):
        RunOptions(tests=["write_bw"], interval=0.001)


def test_the_wire_carries_the_interval_and_a_run_until_stopped_is_an_infinite_duration():
    setup = {"v": 1, "type": "setup", "test": "write_bw", "size": 65536, "qps": 1, "depth": 128, "cq_mod": 100,
             "mtu": None, "iters": 0, "duration": None, "warmup": 0, "bidir": False, "validate": False,
             "engine": "native", "connect": "oob", "inline_size": 0, "slots": 1, "max_samples": 1000,
             "timeout_ms": 10000, "cm_port": 18516, "cm_bind": "10.0.0.1", "interval": 0.5, "until_stopped": True}
    msg = fields(setup, SETUP, "setup")
    kw = run_kwargs(msg, "server")
    assert kw["duration_s"] == math.inf and kw["interval_s"] == 0.5 and kw["on_window"] is None
    assert "interval_s" not in run_kwargs({**msg, "engine": "python", "until_stopped": False}, "server")
    with pytest.raises(Exception):
        fields({**setup, "interval": 0.0}, SETUP, "setup")
    assert jsonable({"duration_s": math.inf, "windows": {"ops": (1, 2)}}) == {"duration_s": None,
                                                                              "windows": {"ops": [1, 2]}}


def test_the_live_line_says_the_windows_figures():
    bw = table.window_line("write_bw", 1 << 20, {"t_s": 4.0, "seconds": 2.0, "ops": 100, "latency": False},
                           {"limit_gbps": 8.388608})
    assert "t=     4.0 s" in bw and "50.00 MiB/s" in bw and "5.0% of line" in bw
    lat = table.window_line("write_lat", 2, {"t_s": 1.0, "seconds": 1.0, "ops": 5, "samples": 5, "latency": True,
                                             "lat_p50_ns": 9500.0, "lat_p99_ns": 20000.0, "lat_max_ns": 31000.0})
    assert "p50     9.50 us" in lat and "p99    20.00 us" in lat
    idle = table.window_line("write_lat", 2, {"t_s": 1.0, "seconds": 1.2, "ops": 0, "samples": 0, "latency": True})
    assert "no operation completed" in idle
