"""Fetch lines of Lotus, lotus-worker and Curio logs (rdmabench.jobs.fetchlog, readlogs) and `rdmabench jobs`
on them. The fixtures and where each line's shape comes from: data/fetchlogs.md."""

import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from data import crafted
from rdmabench.cli import cli
from rdmabench.jobs import fetchlog, readlogs

DATA = Path(__file__).parent / "data"
WORKER, CURIO, OLD = DATA / "worker-3.log", DATA / "curio.log", DATA / "lotus-v1.17.1-worker.log"
JOBS = DATA / "jobs-2021-07-30.log"
MiB = 1 << 20
S32, CACHE = 34_359_738_368, 446_676_598_752  # a 32 GiB sealed file; its cache after PC1 (lotus.md)


def test_console_line():
    e = fetchlog.parse_golog('2024-05-04T06:08:14.103Z\tINFO\tstores\tpaths/fetch.go:42\tFetch done\t'
                             '{"url": "http://10.0.0.21:3456/remote/sealed/s-t01000-2", "out": "/x", "took": 64, '
                             '"bytes": 34359738368, "MiB/s": 512, "err": null}')
    assert (e.level, e.logger, e.caller, e.msg, e.host) == ("INFO", "stores", "paths/fetch.go:42", "Fetch done", None)
    assert e.ts.isoformat() == "2024-05-04T06:08:14.103000+00:00"
    r = fetchlog.done_row(e)
    assert (r["source"], r["type"], r["sector"], r["bytes"], r["seconds"], r["MiBps"], r["status"]) == \
        ("10.0.0.21", "sealed", "s-t01000-2", S32, 64.0, 512.0, fetchlog.OK)


def test_json_line_and_a_colored_journal_line():
    e = fetchlog.parse_golog('{"level":"info","ts":"2024-05-04T05:11:04.600+0200","logger":"stores",'
                             '"caller":"paths/fetch.go:47","msg":"Fetch done","url":"http://h:1/remote/cache/s-t01-7",'
                             '"out":"/o","took":0.6,"bytes":76707072,"MiB/s":121.9,"err":null}')
    assert (e.level, e.logger, e.msg) == ("INFO", "stores", "Fetch done")
    assert e.ts.isoformat() == "2024-05-04T03:11:04.600000+00:00"  # +0200 read as such, kept in UTC
    assert e.fields["took"] == 0.6 and e.fields["MiB/s"] == 121.9
    e = fetchlog.parse_golog("2024-05-04T03:00:00+0000 worker-5 lotus-worker[812]: 2024-05-04T03:00:00.101Z\t"
                             "\x1b[34mINFO\x1b[0m\tstores\tpaths/fetch.go:18\tFetch http://h/remote/sealed/s-t01-2 -> /o")
    assert (e.host, e.level, e.msg) == ("worker-5", "INFO", "Fetch http://h/remote/sealed/s-t01-2 -> /o")
    assert fetchlog.parse_golog("2024-05-04T03:07:09.120 INFO filecoin_proofs::api::seal > start") is None
    assert fetchlog.parse_golog("goroutine 1 [running]:") is None


def test_worker_log_every_fetch():
    s = fetchlog.scan(WORKER.read_text().splitlines(), str(WORKER))
    assert s.problems == [] and s.kind == "Lotus log"
    f = fetchlog.frame([{**r, "destination": "w"} for r in s.rows])
    assert list(zip(f["sector"], f["type"], f["status"])) == [
        ("s-t01000-2", "unsealed", "ok"), ("s-t01000-2", "sealed", "ok"), ("s-t01000-2", "cache", "ok"),
        ("s-t01000-3", "sealed", "ok"), ("s-t01000-3", "cache", "failed"), ("s-t01000-4", "sealed", "no end logged")]
    assert list(f["source"]) == ["10.0.0.10"] + ["10.0.0.21"] * 5
    assert list(f["bytes"][:5]) == [S32, S32, CACHE, S32, 120_000_000_000]
    assert list(f["seconds"][:5]) == [128.0, 64.0, 1000.0, 80.0, 312.5]
    assert list(f["MiBps"][:5]) == pytest.approx([256.0, 512.0, CACHE / MiB / 1000, 409.6, 120e9 / MiB / 312.5])
    assert "connection reset by peer" in f["error"][4]
    assert math.isnan(f["bytes"][5]) and math.isnan(f["seconds"][5]) and f["line"][5] == 21
    assert str(f["time"][2]) == "2024-05-04 06:23:50.204000+00:00"  # the line's time: when the transfer ended


def test_summary_per_host_pair():
    logs = readlogs.read([WORKER])
    assert logs.kinds == {str(WORKER): "Lotus log"} and logs.empty == [] and logs.problems == []
    assert set(logs.fetches["destination"]) == {"worker-3"}  # from the file's name
    s = fetchlog.summary(logs.fetches).set_index("source")
    far = s.loc["10.0.0.21"]
    assert (far["fetches"], far["failed"], far["no_end"]) == (3, 1, 1)
    assert far["bytes"] == 2 * S32 + CACHE and far["seconds"] == 64 + 1000 + 80
    assert far["MiBps"] == pytest.approx((2 * S32 + CACHE) / MiB / 1144)
    rates = [512.0, CACHE / MiB / 1000, 409.6]
    assert far["mean_MiBps"] == pytest.approx(sum(rates) / 3)
    assert far["p50_MiBps"] == pytest.approx(CACHE / MiB / 1000)
    assert (far["min_MiBps"], far["max_MiBps"]) == pytest.approx((409.6, 512.0))
    near = s.loc["10.0.0.10"]
    assert (near["fetches"], near["bytes"], near["MiBps"]) == (1, S32, pytest.approx(256.0))


def test_curio_json_log_and_where_the_destination_comes_from():
    logs = readlogs.read([CURIO])
    assert logs.kinds == {str(CURIO): "Curio log"} and logs.problems == []
    f = logs.fetches
    assert list(f["destination"]) == ["host of curio.log"] * 2  # "curio" is no host name
    assert list(f["type"]) == ["sealed", "cache"] and list(f["bytes"]) == [S32, 76_707_072]
    # took is logged rounded to the ms (0.6), MiB/s from the unrounded time (0.5997 s): the logged figure counts
    assert list(f["MiBps"]) == pytest.approx([1024.0, 76_707_072 / MiB / 0.5997], rel=1e-12)
    assert list(f["seconds"]) == [32.0, 0.6]
    assert [str(t) for t in f["time"]] == ["2024-05-04 03:11:04+00:00", "2024-05-04 03:11:04.600000+00:00"]
    assert set(readlogs.read([CURIO], host="sealer-2").fetches["destination"]) == {"sealer-2"}
    assert fetchlog.file_host("/var/log/worker-3.log.1") == "worker-3"
    assert fetchlog.file_host("lotus-worker.log") == "host of lotus-worker.log"


def test_lotus_before_v1_17_2_logs_starts_only():
    logs = readlogs.read([OLD])
    assert logs.kinds[str(OLD)].startswith("Lotus log (before v1.17.2")
    f = logs.fetches
    assert list(f["status"]) == ["no end logged"] * 2 and f["seconds"].isna().all() and f["bytes"].isna().all()
    assert set(f["destination"]) == {"worker-7"}  # the journal prefix's host
    assert set(readlogs.read([OLD], host="w7").fetches["destination"]) == {"w7"}  # unless --host says otherwise
    s = fetchlog.summary(f).iloc[0]
    assert (s["fetches"], s["no_end"]) == (0, 2) and math.isnan(s["MiBps"]) and math.isnan(s["p50_MiBps"])
    assert any("not in the log" in n and "before v1.17.2" in n for n in fetchlog.notes(f))


def test_malformed_fetch_lines_are_problems_and_other_lines_are_not(tmp_path):
    lines = WORKER.read_text().splitlines()
    bad = [
        '{"level":"info","ts":"2024-05-04T09:00:00.000Z","logger":"stores","msg":"Fetch done","url":"http://h/remo',
        '2024-05-04T09:00:01.000Z\tINFO\tstores\tpaths/fetch.go:42\tFetch done\t{"url": "http://h/remote/sealed/'
        's-t01-5", "out": "/o", "took": 3, "bytes": "lots", "MiB/s": 1, "err": null}',
        '2024-05-04T09:00:02.000Z\tINFO\tstores\tpaths/fetch.go:42\tFetch done\t{"out": "/o", "took": 3}',
        '2024-05-04T09:00:03.000Z\tINFO\tstores\tpaths/fetch.go:18\tFetch everything now',
        '2024-05-04T09:00:04.000Z\tINFO\tstores\tpaths/fetch.go:18\tFetch done\t{"url": "ftp://h/x", "took": 1, '
        '"bytes": 1, "MiB/s": 1}',
    ]
    noise = ["panic: runtime error", "", "2024-05-04T09:00:05.000Z\tINFO\tmain\tx/y.go:1\tFetch the paper",
             '{"level":"info","ts":"yesterday","logger":"harmonytask","msg":"Task done"}',  # broken, no fetch
             '{"level":"warn","ts":"2024-05-04T09:00:06.000Z","logger":"rpc","msg":"cut sho']
    path = tmp_path / "worker-9.log"
    path.write_text("\n".join(lines[:6] + bad + noise + lines[6:]) + "\n")
    logs = readlogs.read([path])
    assert [(p.file, p.line) for p in logs.problems] == [(str(path), n) for n in range(7, 12)]
    reasons = [p.reason for p in logs.problems]
    assert "JSON" in reasons[0] and "'bytes' is 'lots'" in reasons[1] and "url" in reasons[2]
    assert "not 'Fetch URL -> PATH'" in reasons[3] and "not an http(s) URL" in reasons[4]
    assert len(logs.fetches) == 6 and logs.empty == []  # every good line still read


def test_command_reads_each_kind_and_exits_0(tmp_path):
    bad = tmp_path / "worker-9.log"
    bad.write_text(WORKER.read_text() + '2024-05-04T09:00:01.000Z\tINFO\tstores\tpaths/fetch.go:42\tFetch done\t{}\n')
    out = CliRunner().invoke(cli, ["jobs", str(JOBS), str(bad), str(CURIO)])
    assert out.exit_code == 0, out.output
    assert f"{bad}:22: " in out.stderr and "line skipped" in out.stderr
    assert "13 jobs from 1 log file" in out.stdout and "PC2" in out.stdout
    assert "8 fetches from 2 daemon logs (Curio log, Lotus log), 1 malformed fetch line skipped" in out.stdout
    row = next(x for x in out.stdout.splitlines() if x.startswith("10.0.0.21"))
    assert row.split()[:7] == ["10.0.0.21", "worker-9", "3", "1", "1", "480.0", "GiB"]
    assert "Every fetch" not in out.stdout


def test_command_markdown_and_every_fetch():
    out = CliRunner().invoke(cli, ["jobs", str(WORKER), "--format", "md", "--fetches"])
    assert out.exit_code == 0, out.output
    assert "### Fetch throughput per host pair" in out.stdout
    assert "| 10.0.0.21 | worker-3 | 3 | 1 | 1 | 480.0 GiB | 1,144.0 | 429.7 | 449.2 | 426.0 | 409.6 | 512.0 |" \
        in out.stdout
    assert "| 2024-05-04 06:23:50 | 10.0.0.21 | worker-3 | s-t01000-2 | cache | 416.0 GiB | 1,000.000 | 426.0 | ok |" \
        in out.stdout
    assert "**Notes**" in out.stdout


@pytest.mark.parametrize("text, says", [
    ("", "empty; looked for a Lotus job tracker log"),
    ("\n  \n", "empty; looked for"),
    ("hello\nworld\n", "no line of a known log; looked for a Lotus job tracker log"),
    ("HostName\tWorker\tSector\tTaskType\tStartTime\tEndTime\tDuration\n", "its header and no job line"),
    ("2024-05-04T03:00:00.101Z\tINFO\tmain\tlotus-worker/main.go:374\tStarting lotus worker\n",
     "a Lotus log (1 go-log lines) without a valid fetch line"),
])
def test_a_file_with_nothing_to_report_exits_1(tmp_path, text, says):
    path = tmp_path / "x.log"
    path.write_text(text)
    out = CliRunner().invoke(cli, ["jobs", str(path)])
    assert out.exit_code == 1
    assert f"rdmabench jobs: {path}: " in out.stderr and says in out.stderr
    both = CliRunner().invoke(cli, ["jobs", str(WORKER), str(path)])  # the rest is still reported
    assert both.exit_code == 1 and "Fetch throughput per host pair" in both.stdout and str(path) in both.stderr


def test_command_refusals(tmp_path):
    out = CliRunner().invoke(cli, ["jobs", str(WORKER), str(CURIO), "--host", "x"])
    assert out.exit_code == 2 and "--host names the host of one daemon log; 2 given" in out.output
    result = crafted.transfer_result().save(tmp_path / "t.json")
    out = CliRunner().invoke(cli, ["jobs", str(WORKER), "--what-if", str(result)])
    assert out.exit_code == 2 and "--what-if needs a job tracker log" in out.output
    assert "Fetch throughput" not in out.stdout  # refused before anything is printed
    h = CliRunner().invoke(cli, ["jobs", "--help"]).stdout
    assert "journalctl -u lotus-worker" in h and "/var/log/curio/curio.log" in h and "Fetch done" in h
