"""The cross-check's verdict: median of paired ratios, zero figures retried, then refused."""

import pytest

from rdmabench.errors import RdmabenchError
from rdmabench.perf import crosscheck
from rdmabench.results.model import Result
from rdmabench.results.row import make


def _pair(test, size, rep, ref, ours):
    figures = ("bw_avg_MiBps", "bw_avg_MiBps") if test.endswith("_bw") else ("t_typical_us", "lat_p50_us")
    return [make({"tool": tool, "test": test, "size": size}, metric, value, repetition=rep)
            for tool, metric, value in zip(("perftest", "rdmabench"), figures, (ref, ours))]


def _figure(metric, value):
    return make({"tool": "perftest", "test": "read_bw", "size": 65536}, metric, value)


def test_verdict_is_the_median_of_paired_ratios():
    rows = (_pair("write_bw", 65536, 0, 40.0, 39.0) + _pair("write_bw", 65536, 1, 30.0, 29.0)
            + _pair("write_bw", 65536, 2, 45.0, 20.0)  # one disturbed pair
            + _pair("write_lat", 2, 0, 25.0, 26.0) + _pair("write_lat", 2, 1, 20.0, 30.0) + _pair("write_lat", 2, 2, 24.0, 25.0))
    out = {(r["test"], r["size"]): r for r in crosscheck.ratios(Result(kind="crosscheck", context={}, options={}, rows=rows))}
    bw = out[("write_bw", 65536)]
    assert bw["repetitions"] == 3
    assert bw["ratio"] == pytest.approx(29 / 30)  # the median of 0.975, 0.967 and 0.444
    assert bw["meets_target"] is True
    assert bw["ratio_of_means"] == pytest.approx((39 + 29 + 20) / (40 + 30 + 45))
    lat = out[("write_lat", 2)]
    assert lat["ratio"] == pytest.approx(25 / 24)
    assert lat["meets_target"] is True
    assert [t for t, _ in out] == ["write_bw", "write_lat"]  # perftest's order


def test_a_miss_is_reported_as_a_miss():
    rows = _pair("read_bw", 1 << 20, 0, 40.0, 36.0) + _pair("write_lat", 2, 0, 20.0, 23.0)
    out = crosscheck.ratios(Result(kind="crosscheck", context={}, options={}, rows=rows))
    assert [r["meets_target"] for r in out] == [False, False]
    assert "MISSES" in crosscheck.render(out)


def test_a_zero_figure_is_retried_once_then_refused():
    figures = iter([_figure("bw_avg_MiBps", 0.0), _figure("bw_avg_MiBps", 31.5)])
    assert crosscheck._measure("perftest ib_read_bw", lambda: next(figures))["value"] == 31.5
    with pytest.raises(RdmabenchError, match="bw_avg_MiBps was 0.0 twice in a row"):
        crosscheck._measure("perftest ib_read_bw", lambda: _figure("bw_avg_MiBps", 0.0))


def test_no_pairs_is_an_error():
    with pytest.raises(RdmabenchError, match="no pairs"):
        crosscheck.ratios(Result(kind="crosscheck", context={}, options={}, rows=[]))


def test_perftest_printing_inf_is_a_misfire_retried_once():
    """Across the two guests ib_write_lat once printed inf for every figure (its CPU MHz read as 0): the
    crosscheck died on "no latency line" instead of running it again (seen in CI at 5897f42..)."""
    from rdmabench.perf import perftest

    bad = " 2       50          inf            inf          inf      \t       inf         \t-nan   \t\tinf     \t\tinf    \n"
    row = perftest.parse("write_lat", bad)
    assert row["t_typical_us"] == float("inf")
    good = perftest.parse("write_lat", bad.replace("inf", "9.5").replace("-nan", "0.1"))
    figures = iter([_figure("t_typical_us", row["t_typical_us"]), _figure("t_typical_us", good["t_typical_us"])])
    assert crosscheck._measure("perftest ib_write_lat", lambda: next(figures))["value"] == good["t_typical_us"]
    with pytest.raises(RdmabenchError, match="twice in a row"):
        crosscheck._measure("perftest ib_write_lat", lambda: _figure("t_typical_us", row["t_typical_us"]))


def _recording(monkeypatch):
    """crosscheck.run with both tools replaced: what each was asked to run."""
    from rdmabench.perf import client

    calls = []
    monkeypatch.setattr(crosscheck.context, "collect", lambda *a: {"device": {"gid_index": 1}})

    def reference(test, size, iters, dev, gid, duration=None, cq_mod=100):
        calls.append(("perftest", test, iters, duration, cq_mod))
        return {"bw_avg_MiBps": 40.0, "t_typical_us": 20.0, "command": "ib_..."}

    def ours(opts, dev, **kw):
        calls.append(("rdmabench", opts.tests[0], opts.iters, opts.duration, opts.warmup, opts.cq_mod))
        metric = "lat_p50_us" if opts.tests[0].endswith("_lat") else "bw_avg_MiBps"
        r = make({"test": opts.tests[0], "size": opts.sizes[0]}, metric, 39.0, bytes=1, seconds=1.0,
                 cpu={}, detail={})
        return Result(kind="verbs", context={}, options={}, rows=[r])

    monkeypatch.setattr(crosscheck, "_perftest_local", reference)
    monkeypatch.setattr(crosscheck, "run_local", ours)
    monkeypatch.setattr(client, "run_local", ours)
    return calls


def test_bandwidth_runs_last_a_duration_by_default(monkeypatch):
    """perftest's 5000 x 1 MiB took minutes on soft-RoCE (and stalled the cross-check): by default every
    bandwidth run measures BW_DURATION_S seconds, perftest's and ours; latency keeps its iterations."""
    calls = _recording(monkeypatch)
    result = crosscheck.run("rxe0", None, [65536, 1 << 20], repeat=1, only=["write_bw", "write_lat"])
    d, w = crosscheck.BW_DURATION_S, crosscheck.BW_WARMUP
    # a signaled completion every MiB at most: perftest's duration figure is counted in steps of cq_mod messages
    assert calls == [("perftest", "write_bw", 0, d, 16), ("rdmabench", "write_bw", None, float(d), w, 16),
                     ("perftest", "write_bw", 0, d, 1), ("rdmabench", "write_bw", None, float(d), w, 1),
                     ("perftest", "write_lat", 1000, None, 100), ("rdmabench", "write_lat", 1000, None, 0, 100)]
    assert result.options["bw_duration_s"] == d and result.options["bw_iters"] is None
    assert [r["detail"].get("duration_s") for r in result.rows if r["measured"]["tool"] == "perftest"] == [d, d, None]


def test_bandwidth_iterations_replace_the_duration(monkeypatch):
    calls = _recording(monkeypatch)
    crosscheck.run("rxe0", None, [65536], repeat=1, only=["read_bw"], bw_iters=200)
    assert calls == [("perftest", "read_bw", 200, None, 100), ("rdmabench", "read_bw", 200, None, 0, 100)]
    with pytest.raises(RdmabenchError, match="not both"):
        crosscheck.run("rxe0", None, [65536], repeat=1, only=["read_bw"], bw_iters=200, bw_duration=3)


def test_duration_runs_signal_at_least_every_mib():
    assert [crosscheck.bw_cq_mod(size, 5) for size in (2, 4096, 65536, 1 << 20, 8 << 20)] == [100, 100, 16, 1, 1]
    assert crosscheck.bw_cq_mod(1 << 20, None) == 100  # iterations: perftest's default, as before


def test_latency_gets_its_own_number_of_pairs(monkeypatch):
    """A latency run is a ~20 ms snapshot of a machine whose latency switches modes (one guest: both tools
    alike): its verdict takes lat_repeat pairs, bandwidth keeps repeat (docs/write-lat-one-guest.md)."""
    calls = _recording(monkeypatch)
    result = crosscheck.run("rxe0", None, [65536], repeat=2, only=["write_bw", "write_lat"], lat_repeat=5)
    tools = [(c[0], c[1]) for c in calls]
    assert tools.count(("perftest", "write_bw")) == tools.count(("rdmabench", "write_bw")) == 2
    assert tools.count(("perftest", "write_lat")) == tools.count(("rdmabench", "write_lat")) == 5
    assert [r["repetitions"] for r in crosscheck.ratios(result)] == [2, 5]
    assert result.options["lat_repeat"] == 5
    calls.clear()
    crosscheck.run("rxe0", None, [65536], repeat=2, only=["write_lat"])  # not given: as many as repeat
    assert len(calls) == 4


def test_the_command_runs_more_latency_pairs_unless_repeat_is_given(monkeypatch):
    from click.testing import CliRunner

    from rdmabench import cli as cli_mod

    seen = []

    def run(*a, **kw):
        seen.append((kw["repeat"], kw["lat_repeat"]))
        raise RdmabenchError("stop here")

    monkeypatch.setattr(crosscheck, "run", run)
    monkeypatch.setattr(cli_mod.devices, "choose", lambda name: type("D", (), {"name": "rxe0"})())
    for args in ([], ["--repeat", "2"], ["--repeat", "2", "--lat-repeat", "4"], ["--lat-repeat", "1"]):
        CliRunner().invoke(cli_mod.cli, ["crosscheck", "-t", "write_lat", *args])
    assert seen == [(3, crosscheck.LAT_PAIRS), (2, 2), (2, 4), (3, 1)]
