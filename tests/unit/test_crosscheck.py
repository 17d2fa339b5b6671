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

    def reference(test, size, iters, dev, gid, duration=None, cq_mod=100, atomic="fetch_add"):
        calls.append(("perftest", test, iters, duration, cq_mod) + ((size, atomic) if "atomic" in test else ()))
        return {"bw_avg_MiBps": 40.0, "t_typical_us": 20.0, "ops_per_s": 50000.0, "command": "ib_..."}

    def ours(opts, dev, **kw):
        test = opts.tests[0]
        calls.append(("rdmabench", test, opts.iters, opts.duration, opts.warmup, opts.cq_mod)
                     + ((opts.sizes[0], opts.atomic) if "atomic" in test else ()))
        metric = "lat_p50_us" if test.endswith("_lat") else "bw_avg_MiBps"
        measured = {"test": test, "op": opts.atomic, "size": 8} if "atomic" in test else \
            {"test": test, "size": opts.sizes[0]}
        r = make(measured, metric, 39.0 if metric == "lat_p50_us" else 0.37, bytes=1, seconds=1.0, cpu={},
                 detail={"ops_per_s": 48000.0} if test == "atomic_bw" else {})
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


def test_the_remote_perftest_service_builds_atomic_commands_from_numbers_and_a_fixed_op(monkeypatch):
    """`rdmabench serve` starts ib_atomic_bw / ib_atomic_lat for a client: its test name picks a tool, its
    op one of two -A values; nothing it sends is copied onto the command line."""
    from types import SimpleNamespace

    from rdmabench.perf import perftest, server
    from rdmabench.wirecheck import BadMessage, fields

    monkeypatch.setattr(perftest.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(perftest, "outstanding_reads", lambda device: 128)
    started = []

    def start(args):
        started.append(perftest.shown(args))
        raise perftest.RdmabenchError("not here")  # the service answers with an error and carries on

    monkeypatch.setattr(perftest, "start_server", start)
    sent = []
    chan = SimpleNamespace(send=lambda kind, **kw: sent.append((kind, kw)))
    service = server.VerbsService(SimpleNamespace(name="rxe0"), 1, "127.0.0.1")
    for msg in ({"v": 1, "type": "perftest", "test": "atomic_bw", "size": 8, "iters": 0, "duration": 5,
                 "cq_mod": 100, "atomic": "cmp_swap"},
                {"v": 1, "type": "perftest", "test": "atomic_lat", "size": 8, "iters": 1000}):  # an older client: no op
        service._perftest(chan, fields(msg, server.PERFTEST, "perftest"))
    assert started == ["ib_atomic_bw -d rxe0 -x 1 -s 8 -D 9 -f 2 -p 18525 -F -t 128 -Q 100 -o 128 -A CMP_AND_SWAP",
                       "ib_atomic_lat -d rxe0 -x 1 -s 8 -n 1000 -p 18525 -F -A FETCH_AND_ADD"]
    assert [kind for kind, _ in sent] == ["error", "error"]
    with pytest.raises(BadMessage, match="not one of fetch_add, cmp_swap"):
        fields({"v": 1, "type": "perftest", "test": "atomic_bw", "size": 8, "iters": 5, "atomic": "x; reboot"},
               server.PERFTEST, "perftest")
    service._perftest(chan, fields({"v": 1, "type": "perftest", "test": "atomic_bw", "size": 64, "iters": 5},
                                   server.PERFTEST, "perftest"))
    assert len(started) == 2 and "8 bytes an operation, not 64" in sent[-1][1]["message"]


def test_atomic_pairs_run_8_bytes_of_the_chosen_op_and_compare_operations_per_second(monkeypatch):
    calls = _recording(monkeypatch)
    d, w = crosscheck.BW_DURATION_S, crosscheck.BW_WARMUP
    result = crosscheck.run("rxe0", None, [65536, 1 << 20], lat_size=2, repeat=1, only=["atomic_lat", "atomic_bw"],
                            atomic="cmp_swap")
    # PLAN's order; 8 bytes whatever the sizes; atomic_bw lasts a duration like the other bandwidth pairs
    assert calls == [("perftest", "atomic_bw", 0, d, 100, 8, "cmp_swap"),
                     ("rdmabench", "atomic_bw", None, float(d), w, 100, 8, "cmp_swap"),
                     ("perftest", "atomic_lat", 1000, None, 100, 8, "cmp_swap"),
                     ("rdmabench", "atomic_lat", 1000, None, 0, 100, 8, "cmp_swap")]
    assert [(r["measured"], r["metric"], r["value"]) for r in result.rows] == [
        ({"tool": "perftest", "test": "atomic_bw", "op": "cmp_swap", "size": 8}, "ops_per_s", 50000.0),
        ({"tool": "rdmabench", "test": "atomic_bw", "op": "cmp_swap", "size": 8}, "ops_per_s", 48000.0),
        ({"tool": "perftest", "test": "atomic_lat", "op": "cmp_swap", "size": 8}, "t_typical_us", 20.0),
        ({"tool": "rdmabench", "test": "atomic_lat", "op": "cmp_swap", "size": 8}, "lat_p50_us", 39.0)]
    assert result.options["tests"] == ["atomic_bw", "atomic_lat"] and result.options["atomic"] == "cmp_swap"
    out = crosscheck.ratios(result)
    assert [(r["test"], r["op"], r["size"]) for r in out] == [("atomic_bw", "cmp_swap", 8),
                                                              ("atomic_lat", "cmp_swap", 8)]
    assert out[0]["ratio"] == pytest.approx(0.96) and out[0]["meets_target"] is True
    assert out[0]["measure"] == "operations per second (ours / perftest)" and out[0]["share_of_line_rate"] is None
    assert out[1]["ratio"] == pytest.approx(1.95) and out[1]["meets_target"] is False
    with pytest.raises(RdmabenchError, match="atomic operation 'swap'"):
        crosscheck.run("rxe0", None, [65536], only=["atomic_bw"], atomic="swap")


def test_the_verbs_pairs_run_by_default_and_a_choice_runs_only_those(monkeypatch):
    calls = _recording(monkeypatch)
    result = crosscheck.run("rxe0", None, [65536], repeat=1, bw_iters=100)
    assert [c[1] for c in calls if c[0] == "perftest"] == ["write_bw", "read_bw", "write_lat"]
    assert result.options["tests"] == list(crosscheck.DEFAULT_TESTS)
    calls.clear()
    result = crosscheck.run("rxe0", None, [65536], repeat=1, bw_iters=100, only=["atomic_lat", "atomic_bw"])
    assert [c[1] for c in calls if c[0] == "perftest"] == ["atomic_bw", "atomic_lat"]
    assert result.options["atomic"] == "fetch_add"
    calls.clear()
    result = crosscheck.run("rxe0", None, [65536], repeat=1, bw_iters=100, only=["write_lat", "read_bw"])
    assert [c[1] for c in calls if c[0] == "perftest"] == ["read_bw", "write_lat"]  # PLAN's order
    assert "atomic" not in result.options
    from rdmabench.cli_verbs import crosscheck_cmd

    tests_option = next(p for p in crosscheck_cmd.params if p.name == "only")
    assert tests_option.default == [",".join(crosscheck.DEFAULT_TESTS)]  # the CLI's default is the module's


def test_the_table_shows_the_atomic_pairs_and_says_what_they_compare():
    rows = (_pair("write_lat", 2, 0, 10.0, 10.5)
            + [make({"tool": "perftest", "test": "atomic_bw", "op": "fetch_add", "size": 8}, "ops_per_s", 59076.0),
               make({"tool": "rdmabench", "test": "atomic_bw", "op": "fetch_add", "size": 8}, "ops_per_s", 57000.0),
               make({"tool": "perftest", "test": "atomic_lat", "op": "fetch_add", "size": 8}, "t_typical_us", 17.2),
               make({"tool": "rdmabench", "test": "atomic_lat", "op": "fetch_add", "size": 8}, "lat_p50_us", 17.41)])
    out = crosscheck.ratios(Result(kind="crosscheck", context={}, options={}, rows=rows))
    assert [r["test"] for r in out] == ["write_lat", "atomic_bw", "atomic_lat"]
    text = crosscheck.render(out)
    lines = text.splitlines()
    bw = next(line for line in lines if line.startswith("atomic_bw"))
    assert bw.split()[:6] == ["atomic_bw", "8", "59076.00", "57000.00", "0.965", "0.965"] and "meets" in bw
    lat = next(line for line in lines if line.startswith("atomic_lat"))
    assert lat.split()[:5] == ["atomic_lat", "8", "17.20", "17.41", "1.012"] and "meets" in lat
    assert "atomic_bw: operations per second; atomic_lat: p50 (perftest's t_typical) in us, whole round trip" in text
    assert "8-byte fetch_add (perftest -A FETCH_AND_ADD)" in text and "half round trip" in text
    # without atomic rows the table reads as before
    assert "atomic" not in crosscheck.render(out[:1])
    only_atomic = crosscheck.render(out[1:])
    assert "half round trip" not in only_atomic and "BW average in MiB/s" not in only_atomic


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
    from rdmabench import cli_verbs

    monkeypatch.setattr(cli_verbs.devices, "choose", lambda name: type("D", (), {"name": "rxe0"})())
    for args in ([], ["--repeat", "2"], ["--repeat", "2", "--lat-repeat", "4"], ["--lat-repeat", "1"]):
        CliRunner().invoke(cli_mod.cli, ["crosscheck", "-t", "write_lat", *args])
    assert seen == [(3, crosscheck.LAT_PAIRS), (2, 2), (2, 4), (3, 1)]
