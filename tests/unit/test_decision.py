"""The decision table (results/decision.py) and the report's what-if, from rows built here with known answers."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from data import crafted
from rdmabench.cli import cli
from rdmabench.jobs import whatif
from rdmabench.jobs.durations import format_seconds
from rdmabench.jobs.logparse import read
from rdmabench.results import decision, frames, report
from rdmabench.results.model import Result
from rdmabench.results.row import make

MiB, GiB = 1 << 20, 1 << 30
LOG = Path(__file__).parent / "data" / "jobs-2021-07-30.log"
S32 = 32 * GiB


def row(handoff, transport, sector, mibps, *, rep=0, scale=1, variant=None, protocol="lotus", parallel=1,
        worker=1.0, storage=0.5):
    """A throughput row as the runner writes it: a scaled shape moves 1/scale of a real hop (the C1 output is
    never scaled), http records say their protocol, CPU per GB at both ends."""
    size = whatif.sector_bytes(sector)
    hop = whatif.payload_bytes(size)[handoff] // (whatif.C1_HOPS if handoff == "c1-c2" else 1)
    moved = hop if handoff == "c1-c2" or scale == 1 else hop // scale
    label = sector if scale == 1 else f"{sector}@1/{scale}"
    measured = {"handoff": handoff, "transport": transport, "sector": label, **({"variant": variant} if variant else {})}
    items = [{"transport": transport, "item": "sealed/s-t01000-1", "extra": {"protocol": protocol}}] \
        if transport == "http" else []
    return make(measured, "throughput_MiBps", mibps, repetition=rep, bytes=moved, seconds=moved / (mibps * MiB),
                cpu={"per_gb": {"client_process": worker, "server_process": storage}},
                detail={"sector_size": size, "scale": "1" if scale == 1 else f"1/{scale}", "items": items,
                        "parallel": parallel, "streams": 1})


def save(tmp_path, rows, name="t", hardware=False) -> Path:
    ctx = crafted.context(hostname="worker-1") if hardware else crafted.emulated_context()
    return Result(kind="transfer", context=ctx, options={}, rows=rows).save(tmp_path / f"{name}.json")


def decide(*paths):
    found, notes = decision.decide(frames.load(list(paths)))
    return {(d.handoff, d.sector): d for d in found}, notes


def lines(d):
    return {x.series: x for x in d.lines}


def test_a_projection_is_computed_by_the_model_and_marked(tmp_path):
    path = save(tmp_path, [row("pc1-pc2", "http", "32GiB", 100, scale=16384, worker=2.0, storage=1.0),
                           row("pc1-pc2", "http", "32GiB", 102, rep=1, scale=16384, worker=4.0, storage=3.0),
                           row("pc1-pc2", "rdma-write", "32GiB", 404, scale=16384, worker=0.5, storage=0.25)])
    found, _ = decide(path)
    d = found[("pc1-pc2", S32)]
    assert d.bytes == whatif.payload_bytes(S32)["pc1-pc2"] == 481_036_337_120
    http, rdma = lines(d)["http"], lines(d)["rdma-write"]
    assert http.projected and rdma.projected
    assert http.seconds == pytest.approx(481_036_337_120 / (101 * MiB))  # real bytes / mean measured throughput
    assert rdma.seconds == pytest.approx(481_036_337_120 / (404 * MiB))
    assert http.baseline and rdma.speedup == pytest.approx(4.0) and rdma.speedup_projected
    assert (http.worker_cpu, http.storage_cpu) == (pytest.approx(3.0), pytest.approx(2.0))  # means over reps
    t = decision.table(d)
    cells = dict(zip(t.header, t.body[1]))
    assert t.body[0][0] == "http (baseline)"
    assert cells["time for one sector"] == format_seconds(481_036_337_120 / (404 * MiB)) + " " + decision.MARK
    assert cells["vs Lotus's fetch"] == f"4.00x faster {decision.MARK}"
    assert cells["worker CPU-s/GB"] == f"0.50 {decision.MARK}" and cells["storage CPU-s/GB"] == f"0.25 {decision.MARK}"
    assert cells["basis"] == "projected from 32GiB@1/16384 (1 rep)"
    assert "projected to the real size" in t.caption
    assert t.warn.startswith("Lab figure, not hardware") and "soft-RoCE (rxe) under emulation" in t.warn
    assert "448.0 GiB" in t.title


def test_a_real_size_measurement_wins_over_a_projection_and_the_largest_scale_over_smaller(tmp_path):
    path = save(tmp_path, [row("finalize", "http", "32GiB", 50, scale=16384),
                           row("finalize", "http", "32GiB", 80),                 # a real 32 GiB finalize
                           row("finalize", "rdma-read", "32GiB", 100, scale=16384),
                           row("finalize", "rdma-read", "32GiB", 300, scale=1024)])
    d = decide(path)[0][("finalize", S32)]
    http, rdma = lines(d)["http"], lines(d)["rdma-read"]
    assert not http.projected and http.mibps == 80 and http.shapes == "32GiB"
    assert rdma.projected and rdma.mibps == 300 and rdma.shapes == "32GiB@1/1024"
    assert rdma.speedup == pytest.approx(300 / 80) and rdma.speedup_projected
    body = {r[0]: r for r in decision.table(d).body}
    assert not body["http (baseline)"][2].endswith(decision.MARK)  # measured: not marked
    assert body["rdma-read"][2].endswith(decision.MARK)


def test_the_c1_output_is_never_scaled_so_a_scaled_shape_measured_it_for_real(tmp_path):
    path = save(tmp_path, [row("c1-c2", "http", "32GiB", 10, scale=16384), row("c1-c2", "rdma-write", "32GiB", 50,
                                                                              scale=16384)])
    d = decide(path)[0][("c1-c2", S32)]
    rdma = lines(d)["rdma-write"]
    assert not rdma.projected
    assert rdma.seconds == pytest.approx(2 * 38_700_000 / (50 * MiB))  # both hops
    assert rdma.speedup == pytest.approx(5.0) and not rdma.speedup_projected


def test_a_live_fetch_is_the_baseline_when_a_file_has_one(tmp_path):
    ours = save(tmp_path, [row("pc1-pc2", "http", "32GiB", 100, scale=16384),
                           row("pc1-pc2", "rdma-write", "32GiB", 400, scale=16384)], "ours")
    live = save(tmp_path, [row("pc1-pc2", "http", "32GiB", 50, variant="live-lotus")], "live", hardware=True)
    d = decide(ours, live)[0][("pc1-pc2", S32)]
    by = lines(d)
    assert by["http live-lotus"].baseline and not by["http"].baseline
    assert by["rdma-write"].speedup == pytest.approx(8.0) and by["http"].speedup == pytest.approx(2.0)
    assert "live fetch from your own Lotus/Curio worker" in d.baseline
    t = decision.table(d)
    assert t.header[0] == "run" and t.body[0][:2] == ["live", "http live-lotus (baseline)"]  # first, named
    assert "live fetch" in t.caption
    assert [run for run, _ in d.lab] == ["ours"]  # the live run was on hardware
    # without the live file: rdmabench's own Lotus fetch is the baseline
    d = decide(ours)[0][("pc1-pc2", S32)]
    assert lines(d)["http"].baseline and "rdmabench reproduces it" in d.baseline


def test_rdmabench_parallel_http_is_a_series_of_its_own_and_never_the_baseline(tmp_path):
    path = save(tmp_path, [row("pc1-pc2", "http", "8MiB", 300, protocol="rdmabench-parallel", parallel=4),
                           row("pc1-pc2", "rdma-write", "8MiB", 400)])
    d = decide(path)[0][("pc1-pc2", 8 * MiB)]
    assert set(lines(d)) == {"http (rdmabench parallel=4 streams=1)", "rdma-write"}
    assert not any(x.baseline for x in d.lines) and all(x.speedup is None for x in d.lines)
    assert any("no Lotus HTTP fetch measured" in n for n in d.notes)
    assert "No baseline" in decision.table(d).caption


def test_one_table_per_hand_off_and_real_size_biggest_first_and_hardware_unmarked(tmp_path):
    path = save(tmp_path, [row("c1-c2", "http", "8MiB", 5), row("pc1-pc2", "http", "8MiB", 30),
                           row("pc1-pc2", "http", "32GiB", 30, scale=16384), row("finalize", "http", "64GiB", 30,
                                                                                 scale=65536)], hardware=True)
    found, _ = decision.decide(frames.load([path]))
    assert [(d.handoff, d.sector) for d in found] == [("finalize", 64 * GiB), ("pc1-pc2", S32),
                                                     ("pc1-pc2", 8 * MiB), ("c1-c2", 8 * MiB)]
    assert all(decision.table(d).warn == "" for d in found)


# ---- in the report, with the what-if ----

def test_report_leads_with_the_decision_then_sectors_a_day(tmp_path):
    path = crafted.transfer_result().save(tmp_path / "t.json")  # 8 MiB, measured unscaled; rxe under emulation
    out = CliRunner().invoke(cli, ["report", str(path), "-o", str(tmp_path / "r"), "--jobs", str(LOG)])
    assert out.exit_code == 0, out.output
    html = (tmp_path / "r" / "report.html").read_text()
    order = [html.index(f'<h2 id="{s}">') for s in ("decision", "what-if", "bandwidth", "transfer", "cpu")]
    assert order == sorted(order)
    # the what-if's sectors a day, by its stated model, from the same sums as `rdmabench jobs --what-if`
    w = whatif.compute(read([LOG]).jobs, frames.load([path]), 8 * MiB)
    p = w.pipeline.set_index("scenario")
    moved = whatif.payload_bytes(8 * MiB)
    fetch = sum(moved[h] / (rate * MiB) for (h, t), rate in crafted.TRANSFER_MIBPS.items() if t == "http")
    today = 86_400 / (p.loc["today", "tasks_s"] + fetch)
    assert p.loc["today", "sectors_per_day"] == pytest.approx(today)
    assert f"<td>today</td>\n<td>{today:.2f}</td>" in html.replace("</td><td>", "</td>\n<td>")
    rdma = p.loc["rdma-write", "sectors_per_day"]
    assert f"{rdma:.2f} ({rdma / today - 1:+.0%})" in html
    assert "Little&#x27;s law" in html and "ILLUSTRATIVE ONLY" in html
    md = (tmp_path / "r" / "report.md").read_text()
    assert md.index("## The decision") < md.index("## Sectors a day") < md.index("## Bandwidth")


def test_report_without_jobs_says_how_to_get_sectors_a_day(tmp_path):
    path = crafted.transfer_result().save(tmp_path / "t.json")
    r = report.build(frames.load([path]))
    s = {x.id: x for x in r.sections}
    assert r.sections[0].id == "decision" and s["decision"].tables
    assert not s["what-if"].tables and "--jobs" in s["what-if"].absent


def test_report_sector_size_needs_jobs_and_must_be_a_lotus_size(tmp_path):
    path = crafted.transfer_result().save(tmp_path / "t.json")
    out = CliRunner().invoke(cli, ["report", str(path), "-o", str(tmp_path / "r"), "--sector-size", "32GiB"])
    assert out.exit_code == 2 and "--sector-size is the what-if's" in out.output
    out = CliRunner().invoke(cli, ["report", str(path), "-o", str(tmp_path / "r"), "--jobs", str(LOG),
                                   "--sector-size", "16GiB"])
    assert out.exit_code == 1 and "use one of" in out.output


def test_a_live_baseline_is_the_what_ifs_today(tmp_path):
    path = save(tmp_path, [row(h, t, "32GiB", rate, scale=16384, variant=v) for h in ("pc1-pc2", "finalize")
                           for t, rate, v in (("http", 100, None), ("http", 50, "live-lotus"), ("rdma-write", 400, None))])
    r = report.build(frames.load([path]), read([LOG]).jobs, logs=1)
    whatif_tables = {x.id: x for x in r.sections}["what-if"].tables
    today = whatif_tables[0].body[0]
    assert today[0] == "today" and "pc1-pc2: http live-lotus" in today[-1] and "finalize: http live-lotus" in today[-1]
