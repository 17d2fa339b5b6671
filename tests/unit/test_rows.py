"""One row shape: every kind of result builds its rows with results.row.make, and compare, plots and the
report read those keys without asking which kind a row came from."""

import inspect
import json
import re
from pathlib import Path

import pytest

from data import crafted
from rdmabench import baseline
from rdmabench.perf import client, crosscheck
from rdmabench.results import compare, frames, model, plots, report, row
from rdmabench.results.model import Result, ResultFileError

DATA = Path(__file__).parent / "data"
KEYS = set(row.KEYS)


def cpu(seconds=1.0):
    return crafted.cpu(seconds, 0.5, 0.4) | {"measurable": True, "process": {"cpu_s": 0.4, "cores": 0.4}}


SETUP = {"qps": 1, "engine": "native", "connect": "oob", "bidir": False, "iters": 10, "duration": 0,
         "validate": False}


def verbs_rows():
    bw = {"bytes": 10 * 65536, "ops": 10, "t_start_ns": 0, "t_end_ns": 1e6, "completions_ns": [5e5, 1e6],
          "completions_ops": [5, 10]}
    lat = {"samples_ns": [1000.0, 2000.0, 3000.0], "sample": "half round trip"}
    return [client.make_row("write_bw", 65536, 0, SETUP, bw, cpu(), {}, cpu()),
            client.make_row("write_lat", 2, 0, SETUP, lat, cpu(), {}, cpu())]


def baseline_result():
    return baseline.to_result({"size": 1 << 20, "repetitions": 2, "bufsize": 1 << 20, "ratio": 0.95, "target": 0.9,
                               "meets_target": True, "versions": {"nginx": "nginx/1.22", "curl": "curl 7.88"},
                               "nginx_curl": {"seconds": [0.010, 0.011]}, "rdmabench_http": {"seconds": [0.011, 0.012]}})


def crosscheck_result(monkeypatch):
    monkeypatch.setattr(crosscheck.context, "collect", lambda *a: {"device": {"gid_index": 1}})
    monkeypatch.setattr(crosscheck, "_perftest_local",
                        lambda test, size, iters, dev, gid, duration=None, cq_mod=100: {
                            "size": size, "iterations": iters, "bw_avg_MiBps": 40.0, "t_typical_us": 20.0,
                            "command": "ib_..."})
    ours = {r["measured"]["test"]: r for r in verbs_rows()}
    monkeypatch.setattr(crosscheck, "run_local",
                        lambda opts, dev, **kw: Result("verbs", {}, {}, rows=[ours[opts.tests[0].replace("read", "write")]]))
    return crosscheck.run("rxe0", None, [65536], repeat=2, only=["write_bw", "write_lat"])


def test_every_kind_builds_the_same_row_shape(monkeypatch):
    kinds = {"verbs": verbs_rows(), "baseline": baseline_result().rows, "crosscheck": crosscheck_result(monkeypatch).rows,
             "transfer": crafted.transfer_result().rows}
    for kind, rows in kinds.items():
        assert rows, kind
        for r in rows:
            assert set(r) == KEYS, (kind, set(r) ^ KEYS)
            assert isinstance(r["measured"], dict) and isinstance(r["detail"], dict)
            assert (r["unit"], r["higher_is_better"]) == row.METRICS[r["metric"]]
            assert isinstance(r["value"], float) and r["value"] > 0
    bw, lat = kinds["verbs"]
    assert bw["measured"] == {"test": "write_bw", "size": 65536} and bw["bytes"] == 10 * 65536
    assert bw["cpu"]["per_gb"]["client_process"] == pytest.approx(0.4 / (10 * 65536 / 1e9))  # derived in make()
    assert lat["metric"] == "lat_p50_us" and lat["value"] == 2.0 and lat["bytes"] is None
    assert [r["measured"]["tool"] for r in kinds["crosscheck"]] == ["perftest", "rdmabench"] * 4
    assert kinds["baseline"][0]["measured"] == {"tool": "nginx+curl", "size": 1 << 20}
    ratios = crosscheck.ratios(crosscheck_result(monkeypatch))
    assert [(r["test"], r["ratio"]) for r in ratios] == [("write_bw", pytest.approx(625 / 40)), ("write_lat", 0.1)]


def test_a_baseline_writes_a_result_file_that_reads_back(tmp_path):
    path = baseline_result().publish(tmp_path / "b.json")
    r = model.load(path)
    assert r.kind == "baseline" and r.options["summary"]["meets_target"] is True
    assert [x["measured"]["tool"] for x in r.rows] == ["nginx+curl"] * 2 + ["rdmabench http"] * 2
    c = compare.compare(frames.load([path, path]))
    assert list(c.table["item"]) == ["nginx+curl 1 MiB", "rdmabench http 1 MiB"]


def test_schema_1_files_are_read_and_their_rows_converted():
    for name in ("verbs-a", "verbs-b", "verbs-sweep", "transfer-rxe"):
        path = DATA / f"{name}.json"
        assert json.loads(path.read_text())["schema_version"] == 1
        r = model.load(path)
        assert r.rows and all(set(x) == KEYS for x in r.rows), name
    rows = model.load(DATA / "transfer-rxe.json").rows
    assert rows[0]["measured"] == {"handoff": "pc1-pc2", "transport": "http", "sector": "8MiB"}
    assert rows[0]["value"] == 98.0 and rows[0]["cpu"]["per_gb"]["client_system"] == 2.0  # as recorded
    # a comparison of an old file with a new one of the same figures finds nothing changed
    c = compare.compare(frames.from_results([("old", model.load(DATA / "verbs-a.json")), ("new", crafted.verbs_a())]))
    assert set(c.table["ratio"]) == {1.0}


def test_a_schema_2_file_with_a_row_of_another_shape_is_refused(tmp_path):
    data = crafted.verbs_a().to_dict()
    data["rows"][0] = {"test": "write_bw", "size": 2, "bw_avg_MiBps": 1.0}
    (tmp_path / "r.json").write_text(json.dumps(data))
    with pytest.raises(ResultFileError, match="a row without the keys measured, repetition"):
        model.load(tmp_path / "r.json")


def test_readers_never_ask_the_kind_and_copy_no_names():
    """compare, plots, report and the loader decide by what a row measured, not by the kind of its file;
    test and transport names come from engines/tests.py and transports/base.py."""
    for mod in (compare, plots, report, frames):
        src = inspect.getsource(mod)
        kinds = "(verbs|transfer|crosscheck|baseline)"
        assert not re.search(rf'kind\w*\s*[!=]=|[!=]= *"{kinds}"|"{kinds}" *[!=]=|\bt\.{kinds}\b', src), mod.__name__
        assert not re.search(r'"(write|read|send)_(bw|lat)"|"jsonrpc"|"rdma-write"', src), mod.__name__


def test_the_report_follows_the_rows_whatever_the_file_calls_itself(tmp_path):
    relabelled = crafted.verbs_a()
    relabelled.kind = "baseline"  # its rows still measured write_bw at several sizes
    r = report.build(frames.from_results([("x", relabelled), ("t", crafted.transfer_result())]))
    plotted = {s.id: [p.name for p in s.plots] for s in r.sections}
    assert plotted["bandwidth"] == ["bw-write_bw", "bw-read_bw"] and plotted["latency"] == ["lat-write_lat"]
    assert plotted["transfer"] == ["transfer-pc1-pc2", "transfer-finalize", "transfer-c1-c2"]  # one chart per hand-off
    assert plotted["cpu"] == ["cpu-per-gb"]
