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
