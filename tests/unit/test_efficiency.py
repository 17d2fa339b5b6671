"""Efficiency in every rdma row: the raw bandwidth at the transfer's own chunk size, QPs and depth, the ratio,
the printed table's two columns, the result file and the report. The raw figures here are synthetic (this
host has no RDMA); the lab tests (tests/lab/*/test_transfer_efficiency.py) measure real ones."""

import json
from fractions import Fraction

import pytest
from click.testing import CliRunner

from data import crafted
from rdmabench.cli import cli
from rdmabench.config import Shape
from rdmabench.results import frames, model, report, row
from rdmabench.transfer import efficiency, runner
from rdmabench.transfer.efficiency import Setup

MiB = 1 << 20
OPTIONS = {"chunk": 4 * MiB, "inflight": 8, "streams": 2}


def test_each_rdma_transport_is_held_against_its_own_test_at_its_own_settings():
    assert efficiency.setup_for("rdma-write", OPTIONS) == Setup("write_bw", 4 * MiB, 2, 8)
    assert efficiency.setup_for("rdma-read", OPTIONS) == Setup("read_bw", 4 * MiB, 2, 8)
    assert efficiency.setup_for("http", OPTIONS) is None and efficiency.setup_for("nfs-rdma", OPTIONS) is None
    # what the transport reports it used wins over what it was given; no "streams" reported: one QP
    assert efficiency.setup_for("rdma-write", OPTIONS, {"chunk": MiB, "inflight": 4}) == Setup("write_bw", MiB, 1, 4)
    assert efficiency.setup_for("rdma-write", OPTIONS, {"chunk": MiB, "inflight": 4, "streams": 3}) == \
        Setup("write_bw", MiB, 3, 4)
    assert efficiency.setup_for("rdma-read", {}) == Setup("read_bw", MiB, 1, 16)  # the [transfer] defaults


def test_one_measurement_per_distinct_setting_not_per_transfer():
    plan = ["http", "rdma-write", "rdma-read", "rdma-write", "shared", "rdma-read"] * 3
    assert efficiency.planned(plan, OPTIONS) == [Setup("write_bw", 4 * MiB, 2, 8), Setup("read_bw", 4 * MiB, 2, 8)]
    assert efficiency.planned(["http", "shared", "nfs-tcp"], OPTIONS) == []


def records(extra):
    return [{"transport": "rdma-write", "item": "sealed/s-t01000-1", "bytes": 10 * MiB, "verified": True,
             "digest": "d", "wire_bytes": 10 * MiB, "extra": extra, "phases": {}, "seconds": 0.5}]


def raw_with(value=200.0, setup=Setup("write_bw", MiB, 1, 16)):
    r = row.make({"test": setup.test, "size": setup.size}, "bw_avg_MiBps", value, detail={"qps": setup.qps})
    return efficiency.Raw(rows={setup: r}, between="loopback on rxe0")


def test_the_row_fields_and_the_ratio():
    extra = {"chunk": MiB, "inflight": 16}
    got = efficiency.fields("rdma-write", 20.0, records(extra), {"chunk": MiB, "inflight": 16}, raw_with(200.0))
    assert got == {"raw_test": "write_bw", "raw_setup": {"size": MiB, "qps": 1, "depth": 16}, "raw_bw_MiBps": 200.0,
                   "efficiency": 20.0 / 200.0, "raw_seconds": efficiency.RAW_SECONDS,
                   "raw_between": "loopback on rxe0"}
    assert efficiency.fields("http", 20.0, records({}), {}, raw_with()) == {}


def test_a_raw_figure_at_other_settings_is_not_used():
    """A transfer that ran at another chunk size than the one measured gets no ratio, and says why."""
    got = efficiency.fields("rdma-write", 20.0, records({"chunk": 2 * MiB, "inflight": 16}), {}, raw_with())
    assert got["raw_bw_MiBps"] is None and got["efficiency"] is None
    assert "write_bw at 2 MiB x 1 QP(s) x depth 16" in got["raw_note"] and "it measured write_bw at 1 MiB" in got["raw_note"]


def test_a_failed_raw_measurement_leaves_the_fields_null_with_the_reason():
    s = Setup("write_bw", MiB, 1, 16)
    raw = efficiency.Raw(failed={s: "raw write_bw at 1 MiB x 1 QP(s) x depth 16 not measured: no answer"})
    got = efficiency.fields("rdma-write", 20.0, records({"chunk": MiB, "inflight": 16}), {}, raw)
    assert (got["raw_bw_MiBps"], got["efficiency"]) == (None, None) and got["raw_note"].endswith("no answer")
    got = efficiency.fields("rdma-write", 20.0, records({"chunk": MiB, "inflight": 16}), {}, None)
    assert got["raw_bw_MiBps"] is None and got["raw_note"] == "no raw measurement was made in this run"


def test_measuring_where_there_is_no_device_fails_softly():
    """This host has no RDMA: every measurement fails, with a reason per setting, and nothing raises."""
    setups = [Setup("write_bw", MiB, 1, 16), Setup("read_bw", MiB, 1, 16), Setup("write_bw", 4 * MiB, 2, 8)]
    for device in (None, "rxe0"):
        raw = efficiency.measure(setups, device, None, None, seconds=0.5)
        assert raw.rows == {} and set(raw.failed) == set(setups)
        assert all(msg.startswith(f"raw {s.test} at ") and "not measured: " in msg for s, msg in raw.failed.items())
    assert "no RDMA device" in efficiency.measure(setups[:1], None, None, None).failed[setups[0]]


def test_a_peer_run_says_which_serve_it_measured_against():
    raw = efficiency.measure([Setup("write_bw", MiB, 1, 16)], "rxe0", None, ("10.77.2.1", 18515), wait=0)
    assert raw.between == "worker -> storage's rdmabench serve at 10.77.2.1:18515"
    assert raw.rows == {} and "not measured" in raw.failed[Setup("write_bw", MiB, 1, 16)]  # no rxe0 on this host


def transfer_row(transport, rep, raw, extra=None):
    """A row as the runner builds it (runner._row), from a record as timed_move returns it."""
    recs = records(extra if extra is not None else ({"chunk": MiB, "inflight": 16} if transport != "http" else {}))
    recs[0]["transport"] = transport
    cpu = {"client": crafted.meter(0.5, 0.2, 0.1), "server": crafted.meter(0.5, 0.1, 0.05)}
    host = type("Host", (), {"name": "worker"})()
    return runner._row("pc1-pc2", Shape(32 << 30, Fraction(1, 65536)), transport, rep, [{"files": 13}], host, host,
                       host, recs, cpu, True, {"chunk": MiB, "inflight": 16, "streams": 1}, raw=raw)


def test_the_runner_puts_the_ratio_in_the_row():
    r = transfer_row("rdma-write", 0, raw_with(200.0))
    assert r["value"] == pytest.approx(20.0)  # 10 MiB in 0.5 s
    assert r["detail"]["raw_bw_MiBps"] == 200.0 and r["detail"]["efficiency"] == r["value"] / 200.0
    assert r["detail"]["raw_setup"] == {"size": MiB, "qps": 1, "depth": 16}
    assert "raw_test" not in transfer_row("http", 0, raw_with())["detail"]


def test_the_table_has_raw_and_of_raw_for_rdma_rows_only():
    raw = raw_with(200.0)
    rows = [transfer_row(t, rep, raw) for rep in range(2) for t in ("http", "rdma-write")] + raw.all_rows()
    rows[-1]["detail"].update(qps=1, depth=16, duration_s=2.0, between="loopback on rxe0")
    lines = runner.render(rows).splitlines()
    head = lines[0]
    assert head.endswith("raw MiB/s  of raw")
    http, rdma = (next(ln for ln in lines if f" {t} " in ln) for t in ("http", "rdma-write"))
    assert rdma.endswith("200.0     10%") and len(rdma) == len(head)
    assert http.endswith("yes")  # blank, not n/a: http has no raw figure to have
    assert "  raw write_bw at 1 MiB x 1 QP(s) x depth 16: 200.0 MiB/s over 2.0 s (loopback on rxe0)" in lines
    assert sum(1 for ln in lines if ln.startswith("pc1-pc2")) == 2  # the raw row is listed under, not as a transfer


def test_the_table_says_n_a_and_why_when_the_raw_measurement_failed():
    raw = efficiency.Raw(failed={Setup("write_bw", MiB, 1, 16): "raw write_bw at 1 MiB not measured: no device"})
    lines = runner.render([transfer_row("rdma-write", 0, raw)]).splitlines()
    assert lines[1].endswith("n/a     n/a") and "  raw write_bw at 1 MiB not measured: no device" in lines


def test_the_result_file_keeps_the_raw_rows_and_reads_back(tmp_path):
    path = crafted.transfer_with_raw().save(tmp_path / "t.json")
    data = json.loads(path.read_text())
    assert data["schema_version"] == 2 and all(set(r) == set(row.KEYS) for r in data["rows"])
    raws = {r["measured"]["test"]: r for r in data["rows"] if "test" in r["measured"]}
    assert set(raws) == {"write_bw", "read_bw"}
    for test, r in raws.items():
        assert r["metric"] == "bw_avg_MiBps" and r["unit"] == "MiB/s" and r["measured"]["size"] == MiB
        assert r["detail"]["qps"] == 1 and r["detail"]["depth"] == 16 and r["detail"]["duration_s"] == 2.0
        assert "completions" not in r["detail"]
    for r in data["rows"]:
        d = r["detail"]
        transport = r["measured"].get("transport")
        if transport in ("rdma-write", "rdma-read"):
            raw = raws[efficiency.RAW_TEST[transport]]
            assert d["raw_bw_MiBps"] == raw["value"] and d["efficiency"] == pytest.approx(r["value"] / raw["value"])
        elif transport:
            assert "efficiency" not in d
    t = frames.load([path])
    assert set(t.rows["detail.efficiency"].dropna().round(3)) == {0.784, 0.8, 0.816, 0.49, 0.5, 0.51}
    assert model.load(path).rows == data["rows"]


def test_the_report_shows_each_rdma_transfer_beside_its_raw_figure(tmp_path):
    paths = [crafted.transfer_with_raw().save(tmp_path / "raw.json"),
             crafted.transfer_with_raw(raw_failed=True).save(tmp_path / "failed.json"),
             crafted.transfer_result().save(tmp_path / "old.json")]  # written before rows had a raw figure
    built = report.build(frames.load(paths))
    sec = next(s for s in built.sections if s.id == "efficiency")
    (tb,) = sec.tables
    lines = {(r[0], r[3]): r for r in tb.body}
    assert set(lines) == {("raw", "rdma-write"), ("raw", "rdma-read"), ("failed", "rdma-write"), ("failed", "rdma-read")}
    assert lines[("raw", "rdma-write")][4:10] == ["3", "400.0", "write_bw", "1 MiB x 1 x 16", "500.0", "80%"]
    assert lines[("raw", "rdma-read")][4:10] == ["3", "300.0", "read_bw", "1 MiB x 1 x 16", "600.0", "50%"]
    assert lines[("failed", "rdma-write")][8:10] == ["-", "-"] and "no answer from" in lines[("failed", "rdma-write")][10]
    page = report.write(built, tmp_path / "out")
    html, md = page.read_text(), (page.parent / "report.md").read_text()
    assert "<td>80%</td>" in html and "RDMA transfers against the link&#x27;s raw bandwidth" in html
    assert "| raw | pc1-pc2 | 8MiB | rdma-write | 3 | 400.0 | write_bw | 1 MiB x 1 x 16 | 500.0 | 80% |  |" in md
    # the raw rows are verbs-shaped: the bandwidth plot shows them
    assert any(p.name == "bw-write_bw" for s in built.sections for p in s.plots)


def test_older_transfer_files_report_and_say_there_is_no_raw_figure(tmp_path):
    path = crafted.transfer_result().save(tmp_path / "old.json")
    out = CliRunner().invoke(cli, ["report", str(path), "-o", str(tmp_path / "r")])
    assert out.exit_code == 0, out.output
    assert "No rdma transfer rows with a raw figure in these files" in (tmp_path / "r" / "report.md").read_text()


def test_compare_pairs_new_files_with_old_ones(tmp_path):
    new = crafted.transfer_with_raw().save(tmp_path / "new.json")
    old = crafted.transfer_result().save(tmp_path / "old.json")
    out = CliRunner().invoke(cli, ["compare", str(old), str(new)])
    assert out.exit_code == 0, out.output
    assert "pc1-pc2 rdma-write 8MiB" in out.output and "write_bw 1 MiB" in out.output  # raw rows: unpaired, named


def _stalling_run_local(monkeypatch, stalls):
    """perf.client.run_local that stalls `stalls` times (rxe under emulation does, now and then), then measures."""
    from types import SimpleNamespace

    from rdmabench.errors import RdmabenchError
    from rdmabench.perf import client

    calls = []

    def run_local(o, device, timeout_ms, progress):
        calls.append(o.tests)
        if len(calls) <= stalls:
            raise RdmabenchError("write_bw client: no progress for 10000 ms on QP 0 (sent 48, completed 40, "
                                 "received 0)\nhint: ...")
        return SimpleNamespace(rows=[{"measured": {"test": t, "size": o.sizes[0]}, "value": 100.0,
                                      "detail": {"bw_avg_MiBps": 100.0}} for t in o.tests])

    monkeypatch.setattr(client, "run_local", run_local)
    return calls


def test_a_raw_session_that_stalls_once_is_measured_again_and_says_so(monkeypatch):
    calls = _stalling_run_local(monkeypatch, stalls=1)
    setups = [Setup("write_bw", MiB, 1, 8), Setup("read_bw", MiB, 1, 8)]
    said = []
    raw = efficiency.measure(setups, "rxe0", None, None, progress=said.append)
    assert len(calls) == 2 and set(raw.rows) == set(setups) and not raw.failed
    for s in setups:  # the stall is kept with the figure, never hidden
        assert "no progress for 10000 ms" in raw.rows[s]["detail"]["first_attempt"]
        assert "first attempt stalled" in raw.stalled_once[s] and "measured on the second" in raw.stalled_once[s]
    assert any("measuring once more" in m for m in said)


def test_a_raw_session_that_stalls_twice_is_not_measured(monkeypatch):
    calls = _stalling_run_local(monkeypatch, stalls=2)
    s = Setup("write_bw", MiB, 1, 8)
    raw = efficiency.measure([s], "rxe0", None, None)
    assert len(calls) == 2 and raw.rows == {} and not raw.stalled_once  # one more try, not a loop
    assert raw.failed[s].startswith("raw write_bw at ") and "not measured: write_bw client: no progress" in raw.failed[s]
