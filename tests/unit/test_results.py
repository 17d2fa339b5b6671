import gzip
import json

import pytest

from rdmabench.cpu import CpuMeter
from rdmabench.results import context
from rdmabench.results.model import Result, ResultFileError, load
from rdmabench.results.row import make


def sample():
    return Result(kind="verbs", context=context.collect(), options={"test": "write_bw", "size": 65536},
                  rows=[make({"test": "write_bw", "size": 65536}, "bw_avg_MiBps", 1234.5)])


@pytest.mark.parametrize("name", ["r.json", "r.json.gz"])
def test_save_and_load_round_trip(tmp_path, name):
    r = sample()
    path = r.save(tmp_path / name)
    assert load(path).to_dict() == r.to_dict()
    raw = path.read_bytes()
    data = json.loads(gzip.decompress(raw) if name.endswith(".gz") else raw)
    assert data["schema"] == "rdmabench-result" and data["schema_version"] == 2
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left beside it


def test_a_nan_value_is_written_as_null_and_named_not_refused(tmp_path):
    r = sample()
    r.rows[0]["value"] = float("nan")  # not JSON: kept as null, and the file says where, the other rows intact
    path = r.save(tmp_path / "r.json")
    back = load(path)
    assert back.rows[0]["value"] is None and back.options["not_a_number"] == ["rows[0].value was nan"]
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_load_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ResultFileError, match="bad.json: not valid JSON"):
        load(bad)
    bad.write_text(json.dumps({"schema": "rdmabench-result", "schema_version": 99}))
    with pytest.raises(ResultFileError, match="schema_version 99; this rdmabench reads versions 1, 2"):
        load(bad)
    with pytest.raises(ResultFileError, match="cannot read"):
        load(tmp_path / "absent.json")


def test_context_says_where_it_ran():
    ctx = context.collect()
    assert ctx["host"]["kernel"] and ctx["host"]["cpu_count"] >= 1
    assert ctx["environment"] == context.environment(None, ctx["host"]["virtualization"])
    assert ctx["hardware"] is (ctx["host"]["virtualization"] == "none")
    assert context.environment("rdma_rxe", "tcg").startswith("soft-RoCE (rxe) under emulation")
    assert context.environment("mlx5_core", "none") == "hardware"
    # a TCP fetch from a live Lotus node on bare metal is a hardware figure; in a VM or over rxe it is not
    assert context.is_hardware(context.environment(None, "none"))
    assert not any(context.is_hardware(context.environment(d, v)) for d, v in
                   (("rdma_rxe", "none"), ("rdma_rxe", "tcg"), (None, "kvm"), ("mlx5_core", "kvm")))


def test_context_names_the_clock_the_loops_read():
    timer = context.host()["timer"]
    assert timer["native"] in ("tsc (invariant)", "tsc (rate checked; cpuinfo does not call it invariant)",
                               "clock_gettime")
    assert timer["tsc_hz"] > 1e7 and timer["clock_gettime_ns"] > 0
    assert timer["clocksource"]  # the kernel's, from sysfs


def test_cpu_meter_counts_this_process():
    import time

    meter = CpuMeter()
    x, end = 0, time.perf_counter() + 0.6  # past MIN_TICKS at HZ 100
    while time.perf_counter() < end:
        x += 1
    cpu = meter.stop(bytes_moved=10**9)
    assert cpu["measurable"] is True and 0 < cpu["process"]["cores"] <= cpu["cores"]
    assert cpu["system"]["busy_cores"] <= cpu["cores"]
    assert cpu["process"]["user_s"] + cpu["process"]["system_s"] > 0
    assert cpu["system"]["busy_s"] >= 0 and cpu["elapsed_s"] > 0
    assert cpu["process"]["cpu_s_per_gb"] == pytest.approx(cpu["process"]["cpu_s"])  # 1 GB moved
    assert cpu["process"]["cpu_s"] == pytest.approx(cpu["process"]["user_s"] + cpu["process"]["system_s"], abs=0.05)


def test_results_follow_rdmabench_results(tmp_path, monkeypatch):
    """The lab's results folder ($RDMABENCH_RESULTS) is where a result goes when no -o is given."""
    monkeypatch.setenv("RDMABENCH_RESULTS", str(tmp_path / "lab-results"))
    monkeypatch.chdir(tmp_path)
    path = sample().publish()
    assert path.parent == tmp_path / "lab-results" and load(path).kind == "verbs"
    assert not (tmp_path / "results").exists()


def test_a_result_that_cannot_be_written_is_saved_elsewhere_and_said(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where a folder should be")  # root ignores permissions; this fails for root too
    said = []
    path = sample().publish(blocker / "r.json", warn=said.append)
    assert path.exists() and load(path).kind == "verbs" and path.parent != blocker
    assert len(said) == 1 and str(blocker / "r.json") in said[0] and str(path) in said[0]
    path.unlink()


def test_result_files_follow_the_umask(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        path = sample().save(tmp_path / "r.json")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_too_short_interval_gives_no_system_rate_never_an_impossible_one():
    """send_bw at 2 B reported 2.80 busy cores on a 2-core guest, and 0.00 for a spinning process."""
    import time

    from rdmabench.cpu import per_gb
    from rdmabench.perf import table

    meter = CpuMeter()
    end = time.perf_counter() + 0.03  # spin 30 ms: three ticks at HZ 100
    while time.perf_counter() < end:
        pass
    cpu = meter.stop(bytes_moved=10**6)
    assert cpu["measurable"] is False and "ticks" in cpu["note"]
    assert cpu["system"]["busy_cores"] is None and "cpu_s_per_gb" not in cpu["system"]
    assert 0 < cpu["process"]["cores"] <= cpu["cores"]  # the process clock does not tick: it spun (its share of a busy host)
    got = per_gb(cpu, cpu, 10**6)
    assert set(got) == {"client_process", "server_process"}  # no system-wide figure it could not measure
    row = make({"test": "send_bw", "size": 2}, "bw_avg_MiBps", 1.0, cpu={"client": cpu, "server": cpu},
               detail={"ops": 5, "bw_avg_MiBps": 1.0, "msg_rate_Mpps": 0.1})
    assert "n/a/" in table.render([row])


def test_a_nan_figure_is_saved_as_null_and_named_not_a_lost_file(tmp_path):
    # perftest prints -nan when its clock misreads; one such figure once cost a whole cross-check's file
    from rdmabench.results import row as row_mod
    from rdmabench.results.model import Result, load

    r = row_mod.make({"test": "write_bw", "size": 65536}, "bw_avg_MiBps", 10.0,
                     detail={"bw_peak_MiBps": float("nan"), "each": [1.0, float("inf")]})
    path = Result(kind="verbs", context={}, options={"a": 1}, rows=[r]).save(tmp_path / "r.json")
    back = load(path)
    assert back.rows[0]["detail"]["bw_peak_MiBps"] is None and back.rows[0]["detail"]["each"] == [1.0, None]
    assert back.rows[0]["value"] == 10.0
    assert back.options["not_a_number"] == ["rows[0].detail.bw_peak_MiBps was nan", "rows[0].detail.each[1] was inf"]
