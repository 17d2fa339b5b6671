from pathlib import Path

import pytest

from rdmabench.jobs.durations import format_seconds, parse_go_duration
from rdmabench.jobs.logparse import parse_line, read, summary

DATA = Path(__file__).parent / "data"
LOG = DATA / "jobs-2021-07-30.log"
SAMPLE = "ip-172-31-36-231\t77a69335\t2\tC2\t2021-07-30 03:29:28\t2021-07-30 03:31:29\t2m1.638826486s"


@pytest.mark.parametrize("text, seconds", [
    ("688.697µs", 688.697e-6),
    ("688.697μs", 688.697e-6),  # Greek mu, which Go also accepts
    ("688.697us", 688.697e-6),
    ("12.745323ms", 12.745323e-3),
    ("2m1.638826486s", 121.638826486),
    ("1h2m3s", 3723.0),
    ("72h3m0.5s", 72 * 3600 + 180.5),
    ("15ns", 15e-9),
    ("1.5h", 5400.0),
    (".5s", 0.5),
    ("0s", 0.0),
    ("0", 0.0),
    ("1h0m0.000000001s", 3600.000000001),
])
def test_go_durations(text, seconds):
    assert parse_go_duration(text) == pytest.approx(seconds, rel=1e-15, abs=1e-18)


@pytest.mark.parametrize("text", ["", "-1s", "+1s", "5", "1x", "1.2.3s", "ms", "1h 2m", "1sm", "3 s", "."])
def test_go_durations_refused(text):
    with pytest.raises(ValueError):
        parse_go_duration(text)


def test_format_seconds():
    assert format_seconds(0) == "0s"
    assert format_seconds(688.697e-6) == "689µs"
    assert format_seconds(0.012745) == "12.7ms"
    assert format_seconds(7.25) == "7.25s"
    assert format_seconds(121.6388) == "2m01.6s"
    assert format_seconds(725) == "12m05s"
    assert format_seconds(3 * 3600 + 125) == "3h02m"


def test_the_lotus_md_sample_line():
    job = parse_line(SAMPLE)
    assert (job["host"], job["worker"], job["sector"], job["task"]) == ("ip-172-31-36-231", "77a69335", 2, "C2")
    assert job["duration_s"] == pytest.approx(121.638826486)
    assert (job["end"] - job["start"]).total_seconds() == 121


def test_summary_per_task_type_in_pipeline_order():
    log = read([LOG])
    assert log.problems == []
    assert len(log.jobs) == 13
    s = summary(log.jobs).set_index("task")
    assert list(s.index) == ["AP", "PC1", "PC2", "C1", "C2", "FIN", "GET"]
    assert s.loc["PC2", "count"] == 2
    assert s.loc["PC2", "mean_s"] == pytest.approx(1200)
    assert s.loc["PC2", "p50_s"] == pytest.approx(1200)
    assert s.loc["PC2", "p95_s"] == pytest.approx(900 + 0.95 * 600)  # linear between the two
    assert s.loc["PC2", "max_s"] == 1500
    assert s.loc["PC2", "total_s"] == 2400
    assert s.loc["C2", "mean_s"] == pytest.approx(120.0)


def test_summary_by_worker_and_host():
    log = read([LOG])
    w = summary(log.jobs, by="worker")
    assert set(w["worker"]) == {"77a69335", "9b1c2d3e"}
    assert list(w[w.worker == "9b1c2d3e"]["task"]) == ["PC2", "C1", "FIN"]
    h = summary(log.jobs, by="host")
    assert h[(h.host == "ip-172-31-36-231") & (h.task == "AP")]["count"].item() == 2


def test_malformed_lines_are_reported_and_the_rest_parsed(tmp_path):
    bad = tmp_path / "jobs-bad.log"
    lines = LOG.read_text().splitlines()
    lines.insert(2, "ip-1\t77a69335\t2\tPC1\t2021-07-30 00:05:00\t2021-07-30 03:05:00\t-3h")      # negative
    lines.insert(4, "ip-1\t77a69335\t2\tPC1\t2021-07-30 00:05:00")                                # short
    lines.insert(6, "ip-1\t77a69335\tx\tPC1\t2021-07-30 00:05:00\t2021-07-30 03:05:00\t3h")       # sector
    lines.insert(8, "ip-1\t77a69335\t2\tPC1\tyesterday\t2021-07-30 03:05:00\t3h")                 # time
    lines.insert(10, "ip-1\t77a69335\t2\tPC1\t2021-07-30 00:05:00\t2021-07-30 03:05:00\t3 hours")  # duration
    bad.write_text("\n".join(lines) + "\n\n")
    log = read([bad, LOG])
    assert [(p.file, p.line) for p in log.problems] == [(str(bad), n) for n in (3, 5, 7, 9, 11)]
    assert "negative" in log.problems[0].reason or "signed" in log.problems[0].reason
    assert "expected 7" in log.problems[1].reason
    assert str(log.problems[4]).startswith(f"{bad}:11: ") and str(log.problems[4]).endswith("line skipped")
    assert len(log.jobs) == 26  # every good line of both files
    assert set(log.jobs["file"]) == {str(bad), str(LOG)}


# ---- the what-if ----

from click.testing import CliRunner  # noqa: E402

from data import crafted  # noqa: E402
from rdmabench.cli import cli  # noqa: E402
from rdmabench.jobs import whatif  # noqa: E402
from rdmabench.results import frames  # noqa: E402

MiB = 1 << 20
# mean task durations in the sample log: AP 6 min, PC1 3 h, PC2 20 min, C1 6.7 ms, C2 2 min, FIN 1 min
TASKS_S = 360 + 10800 + 1200 + (688.697e-6 + 12.745323e-3) / 2 + 120 + 60


def test_bytes_per_hand_off_from_lotus_md():
    b32 = whatif.handoff_bytes(32 << 30)
    assert b32["pc1-pc2"] == 481_036_337_120  # lotus.md's figure: sealed + cache after PC1
    assert b32["finalize"] == 34_359_738_368 + 76_695_872 + whatif.T_AUX
    assert b32["c1-c2"] == 2 * 51_600_000  # two hops of base64 in JSON-RPC
    b64 = whatif.handoff_bytes(64 << 30)
    assert b64["pc1-pc2"] == 68_719_476_736 + 893_353_197_536
    assert b64["c1-c2"] == 2 * 52_200_000
    assert whatif.handoff_bytes(8 << 20)["pc1-pc2"] == 8_388_608 + 33_554_400
    assert whatif.handoff_bytes(2048)["finalize"] == 2048 + 96 + whatif.T_AUX
    assert whatif.sector_bytes("32GiB") == whatif.sector_bytes("32G") == 32 << 30
    with pytest.raises(whatif.WhatIfError, match="use one of 2KiB, 8MiB, 512MiB, 32GiB, 64GiB"):
        whatif.sector_bytes("16GiB")


def what_if(tmp_path, **kw):
    path = crafted.transfer_result(**kw).save(tmp_path / "t.json")
    return whatif.compute(read([LOG]).jobs, frames.load([path]), 32 << 30)


def test_what_if_arithmetic(tmp_path):
    w = what_if(tmp_path)
    f = w.fetches.set_index(["handoff", "transport"])
    b = whatif.handoff_bytes(32 << 30)
    assert f.loc[("pc1-pc2", "http"), "seconds"] == pytest.approx(b["pc1-pc2"] / (100 * MiB))  # 4587.5 s
    assert f.loc[("pc1-pc2", "http"), "today"]
    assert f.loc[("pc1-pc2", "rdma-write"), "seconds"] == pytest.approx(b["pc1-pc2"] / (400 * MiB))
    assert f.loc[("pc1-pc2", "rdma-write"), "vs_today"] == pytest.approx(4.0)
    assert f.loc[("pc1-pc2", "nfs-rdma"), "vs_today"] == pytest.approx(2.5)
    assert f.loc[("c1-c2", "http"), "today"]  # the C1 output goes over JSON-RPC today (the http transport's blob path)
    assert f.loc[("c1-c2", "rdma-write"), "vs_today"] == pytest.approx(5.0)
    assert list(w.tasks["task"]) == ["AP", "PC1", "PC2", "C1", "C2", "FIN"]
    p = w.pipeline.set_index("scenario")
    c1 = 2 * 38_700_000  # two hops of the raw C1 output: the rows' throughput counts payload bytes
    assert f.loc[("c1-c2", "http"), "bytes"] == b["c1-c2"]  # base64 on the wire today
    assert f.loc[("c1-c2", "rdma-write"), "bytes"] == c1  # raw bytes over RDMA
    today_fetch = b["pc1-pc2"] / (100 * MiB) + b["finalize"] / (100 * MiB) + c1 / (10 * MiB)
    assert p.loc["today", "tasks_s"] == pytest.approx(TASKS_S)
    assert p.loc["today", "total_s"] == pytest.approx(TASKS_S + today_fetch)
    rdma_fetch = b["pc1-pc2"] / (400 * MiB) + b["finalize"] / (400 * MiB) + c1 / (50 * MiB)
    assert p.loc["rdma-write", "total_s"] == pytest.approx(TASKS_S + rdma_fetch)
    assert p.loc["rdma-write", "saved_s"] == pytest.approx(today_fetch - rdma_fetch)
    # nfs-rdma was not measured for the C1 output: today's JSON-RPC stays there
    nfs_fetch = b["pc1-pc2"] / (250 * MiB) + b["finalize"] / (250 * MiB) + c1 / (10 * MiB)
    assert p.loc["nfs-rdma", "fetch_s"] == pytest.approx(nfs_fetch)
    assert "c1-c2: http" in p.loc["nfs-rdma", "transports"]
    assert any("nfs-rdma was not measured at c1-c2" in n for n in w.notes)


def test_what_if_uses_only_the_rows_of_its_sector_size(tmp_path):
    """32 GiB and 64 GiB shapes were averaged together; each what-if now takes its own size's rows."""
    r = crafted.transfer_result()
    rows = []
    for size, factor in ((32 << 30, 1.0), (64 << 30, 3.0)):
        for row in r.rows:
            rows.append({**row, "measured": {**row["measured"], "sector": f"{size >> 30}GiB"},
                         "detail": {**row["detail"], "sector_size": size}, "value": row["value"] * factor})
    r.rows = rows
    path = r.save(tmp_path / "both.json")
    for size, factor in ((32 << 30, 1.0), (64 << 30, 3.0)):
        w = whatif.compute(read([LOG]).jobs, frames.load([path]), size)
        f = w.fetches.set_index(["handoff", "transport"])
        assert f.loc[("pc1-pc2", "http"), "throughput_MiBps"] == pytest.approx(100 * factor)
        assert not any("averaged" in n or "nothing measured" in n for n in w.notes)
    w = what_if(tmp_path)  # rows of 8 MiB only: it says which it used
    assert any("nothing measured at 32 GiB" in n or "averaged" in n for n in w.notes)


def test_what_if_says_when_it_is_illustrative(tmp_path):
    w = what_if(tmp_path)
    assert w.illustrative and w.notes[0].startswith("ILLUSTRATIVE ONLY")
    assert "soft-RoCE (rxe) under emulation" in w.notes[0]
    text = whatif.render(w)
    assert "ILLUSTRATIVE ONLY" in text.splitlines()[1]
    hw = what_if(tmp_path, emulated=False)
    assert not hw.illustrative and "ILLUSTRATIVE" not in whatif.render(hw)


def test_jobs_command_reports_bad_lines_and_goes_on(tmp_path):
    bad = tmp_path / "jobs-bad.log"
    bad.write_text(LOG.read_text() + "ip-1\t77a69335\t2\tPC1\t2021-07-30 00:05:00\t2021-07-30 03:05:00\t-3h\n")
    out = CliRunner().invoke(cli, ["jobs", str(bad), "--by", "host"])
    assert out.exit_code == 0, out.output
    assert f"{bad}:15: " in out.stderr and "line skipped" in out.stderr
    assert "13 jobs from 1 log file, 1 malformed line skipped" in out.stdout
    assert "host ip-172-31-36-231:" in out.stdout and "host ip-172-31-36-232:" in out.stdout


def test_jobs_command_what_if(tmp_path):
    path = crafted.transfer_result().save(tmp_path / "t.json")
    out = CliRunner().invoke(cli, ["jobs", str(LOG), "--what-if", str(path), "--sector-size", "32GiB"])
    assert out.exit_code == 0, out.output
    assert "ILLUSTRATIVE ONLY" in out.stdout and "What-if for one 32 GiB sector" in out.stdout
    assert "pc1-pc2   http (today)  448.0 GiB" in out.stdout
    assert "1h16m" in out.stdout  # 481,036,337,120 B at 100 MiB/s = 4587.5 s
    w = whatif.compute(read([LOG]).jobs, frames.load([path]), 32 << 30)
    today = w.pipeline.set_index("scenario").loc["today"]
    assert today["sectors_per_day"] == pytest.approx(86_400 / today["total_s"])
    assert f"  {today['sectors_per_day']:.2f}  " in out.stdout and whatif.SECTORS_A_DAY in out.stdout
    md = CliRunner().invoke(cli, ["jobs", str(LOG), "--what-if", str(path), "--format", "md"])
    assert "### A sector's time in the pipeline (tasks + fetches)" in md.stdout
    verbs = crafted.verbs_a().save(tmp_path / "v.json")
    out = CliRunner().invoke(cli, ["jobs", str(LOG), "--what-if", str(verbs)])
    assert out.exit_code == 1 and "needs a transfer result" in out.output
    assert "task" not in out.stdout  # refused before anything is printed
