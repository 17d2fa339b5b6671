import pytest

from rdmabench.perf import metrics, table
from rdmabench.perf.options import RunOptions, parse_sweep


def test_bandwidth_known_answer():
    bw = metrics.bandwidth(nbytes=1 << 30, ops=16384, t_start_ns=0, t_end_ns=1e9)
    assert bw["bw_avg_MiBps"] == pytest.approx(1024.0)
    assert bw["bw_avg_Gbps"] == pytest.approx(8.589934592)
    assert bw["msg_rate_Mpps"] == pytest.approx(0.016384)
    with pytest.raises(ValueError):
        metrics.bandwidth(1, 1, 5, 5)


def test_best_window_finds_the_fast_stretch_and_says_how():
    # 10 completions of 10 ops each, 1 ms apart, except ops 40..60 which took 0.25 ms per completion
    times, ops, t = [], [], 0.0
    for i in range(1, 11):
        t += 0.25e6 if i in (5, 6) else 1e6
        times.append(t)
        ops.append(10 * i)
    w = metrics.best_window(times, ops, size=1 << 20, t_start_ns=0, min_fraction=0.2)
    assert w["window_ops"] == 20
    assert w["bw_best_window_MiBps"] == pytest.approx(20 / 0.5e-3)  # 20 MiB in 0.5 ms
    assert "20%" in w["window_rule"]
    whole = metrics.best_window(times, ops, 1 << 20, 0, min_fraction=1.0)
    assert whole["bw_best_window_MiBps"] == pytest.approx(100 / (t / 1e9))  # whole run = the average
    assert metrics.best_window([], [], 1, 0) is None


def test_best_window_merges_completions_reaped_together():
    # two QPs, their completions reaped in the same polls (seen on rxe): 0.5 s for the first 200, then 0.25 s
    w = metrics.best_window([0.5e9, 0.5e9, 0.75e9, 0.75e9], [100, 200, 300, 400], size=1 << 20, t_start_ns=0)
    assert w["window_ops"] == 200 and w["bw_best_window_MiBps"] == pytest.approx(800.0)
    avg = metrics.bandwidth(400 << 20, 400, 0, 0.75e9)["bw_avg_MiBps"]
    assert w["bw_best_window_MiBps"] >= avg


def test_latency_exact_percentiles_float_stdev_and_no_silent_trim():
    samples = [1000.0 * v for v in range(1, 101)]  # 1..100 us
    lat = metrics.latency(samples, "half round trip")
    assert (lat["lat_min_us"], lat["lat_max_us"]) == (1.0, 100.0)
    assert lat["lat_p50_us"] == 50.0 and lat["lat_p99_us"] == 99.0 and lat["lat_p99_9_us"] == 100.0
    assert lat["lat_mean_us"] == pytest.approx(50.5)
    assert lat["lat_stdev_us"] == pytest.approx(29.011491975882016)
    assert lat["trimmed"] == "none" and lat["samples"] == 100
    sub = metrics.latency([1000.0, 1000.4, 1000.8], "x")
    assert 0 < sub["lat_stdev_us"] < 1  # perftest would print 0 here
    trimmed = metrics.latency(samples, "x", trim_largest=2)
    assert trimmed["lat_max_us"] == 98.0 and "2 largest" in trimmed["trimmed"]


def test_sweep_and_options():
    assert parse_sweep("2:16") == [2, 4, 8, 16]
    assert parse_sweep("2:8M")[-1] == 8 << 20 and len(parse_sweep("2:8M")) == 23
    assert parse_sweep("4K,64K") == [4096, 65536]
    assert parse_sweep("3:3") == [3]  # a size asked for is kept, power of two or not
    for bad in ("8:2", "0:4"):
        with pytest.raises(ValueError):
            parse_sweep(bad)
    o = RunOptions(tests=["write_bw", "write_lat"])
    assert o.plan() == [("write_bw", 65536), ("write_lat", 2)]
    assert o.iterations("write_bw") == 5000 and o.iterations("read_bw") == 1000
    for bad in (dict(sizes=[0]), dict(iters=5, duration=1.0), dict(mtu=1500), dict(engine="rust"), dict(qps=0)):
        with pytest.raises(ValueError):
            RunOptions(tests=["write_bw"], **bad)
    with pytest.raises(ValueError, match="unknown test"):
        RunOptions(tests=["ud_send_bw"])  # atomic_bw is a test now (perftest's ib_atomic_bw)


def test_table_uses_perftest_column_order():
    from rdmabench.results.row import make

    bw_row = make({"test": "write_bw", "size": 65536}, "bw_avg_MiBps", 100.0,
                  detail={"engine": "native", "connect": "oob", "iterations": 5000, "bw_avg_MiBps": 100.0,
                          "msg_rate_Mpps": 0.0016, "bw_best_window_MiBps": 120.0})
    lat = metrics.latency([1000.0, 2000.0, 3000.0], "half round trip")
    lat_row = make({"test": "write_lat", "size": 2}, "lat_p50_us", lat["lat_p50_us"],
                   detail={"engine": "native", "connect": "cm", "iterations": 1000, **lat})
    text = table.render([bw_row, lat_row])
    head_bw = next(line for line in text.splitlines() if "#bytes" in line and "BW" in line)
    assert head_bw.index("#iterations") < head_bw.index("BW best window") < head_bw.index("BW average") < head_bw.index("MsgRate")
    head_lat = next(line for line in text.splitlines() if "t_min" in line)
    order = ["t_min", "t_max", "t_typical", "t_avg", "t_stdev", "99% percentile", "99.9% percentile"]
    assert [head_lat.index(k) for k in order] == sorted(head_lat.index(k) for k in order)
    assert "65536" in text and "100.00" in text and "2.00" in text


def test_inline_defaults_follow_perftest():
    o = RunOptions(tests=["write_lat", "write_bw"])
    assert o.inline_for("write_lat", 2) == 220 and o.inline_for("write_lat", 4096) == 0
    assert o.inline_for("write_bw", 2) == 0
    assert RunOptions(tests=["send_lat"], inline_size=0).inline_for("send_lat", 2) == 0


def test_buffers_follow_perftest_unless_asked_or_validating():
    o = RunOptions(tests=["write_bw"])
    assert o.slots_for("write_bw", 65536) == 1 and o.slots_for("read_bw", 1 << 20) == 1  # one shared buffer
    assert o.slots_for("write_bw", 2048) == 0 and o.slots_for("send_bw", 65536) == 0  # one per queue slot
    assert RunOptions(tests=["write_bw"], validate=True).slots_for("write_bw", 65536) == 0  # each payload checked
    assert RunOptions(tests=["write_bw"], slots=8).slots_for("write_bw", 65536) == 8
    assert RunOptions(tests=["write_lat"], slots=1).slots_for("write_lat", 2) == 2  # ping-pongs need two
    lat = RunOptions(tests=["send_lat"], sizes=[8 << 20])  # two buffers per end, as perftest: not depth x 8 MiB
    assert lat.registered_bytes("send_lat", 8 << 20) == 16 << 20
    with pytest.raises(ValueError, match="slots"):
        RunOptions(tests=["write_bw"], slots=0)
