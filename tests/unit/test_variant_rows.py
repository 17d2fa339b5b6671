"""Rows of [nfs] variants: built by the runner with the measured key "variant" and what the kernel applied,
kept apart everywhere rows are grouped (the run's table, compare, the report's plots, the what-if), and a
result without variants reads as before."""

from pathlib import Path

import pytest

from data import crafted
from rdmabench.config import Shape
from rdmabench.jobs import whatif
from rdmabench.jobs.logparse import read
from rdmabench.nfs.variants import Variant
from rdmabench.results import compare, frames, plots
from rdmabench.results.model import Result
from rdmabench.transfer import runner

LOG = Path(__file__).parent / "data" / "jobs-2021-07-30.log"

MiB = 1 << 20
SHAPE = Shape(8 << 20)
MOVED = 40 * MiB


class End:
    def __init__(self, name):
        self.name = name


def record(seconds, applied, changed=None):
    return {"transport": "nfs-tcp", "item": "sealed/s-t01000-1", "bytes": MOVED, "seconds": seconds,
            "verified": True, "digest": "d", "phases": {}, "wire_bytes": None,
            "extra": {"mount": {"vers": applied.get("vers", "3"), "proto": "tcp", "port": 2049,
                                "nconnect": applied.get("nconnect", 1), "rsize": applied.get("rsize", 262144),
                                "wsize": 262144}, "changed": changed or {}}}


def row(transport, variant, rep, mibps, applied=None, changed=None, handoff="pc1-pc2"):
    rec = record(MOVED / (mibps * MiB), applied or {}, changed)
    rec["transport"] = transport
    return runner._row(handoff, SHAPE, transport, rep, [{"files": 13}], End("storage"), End("worker"),
                       End("worker"), [rec], {"client": None, "server": None}, True, variant=variant)


V1, V4, V16 = Variant("3", 1, 1 << 20), Variant("3", 4, 1 << 20), Variant("3", 16, 1 << 20)
LOWERED = {"rsize": {"requested": 1 << 20, "applied": 262144}}


def rows(rates: dict, reps=3):
    out = []
    for rep in range(reps):
        for (transport, variant), rate in rates.items():
            out.append(row(transport, variant, rep, rate * (0.98 + 0.02 * rep),
                           {"nconnect": variant.nconnect} if variant else None, LOWERED if variant else None))
    return out


RATES = {("http", None): 100.0, ("nfs-tcp", V16): 300.0, ("nfs-tcp", V1): 150.0, ("nfs-tcp", V4): 250.0}


def result(rates=RATES):
    return Result(kind="transfer", context=crafted.emulated_context(), peer_context=crafted.emulated_context("storage"),
                  options={"config": "x.toml"}, rows=rows(rates), created="2024-05-04T10:00:00+00:00")


def test_a_variant_row_says_which_and_what_the_kernel_applied():
    r = row("nfs-tcp", V4, 0, 200.0, {"nconnect": 4}, LOWERED)
    assert r["measured"] == {"handoff": "pc1-pc2", "transport": "nfs-tcp", "sector": "8MiB",
                             "variant": "v3 nconnect=4 rsize=1M"}
    assert r["detail"]["nfs"] == {
        "requested": {"vers": "3", "nconnect": 4, "rsize": 1 << 20},
        "applied": {"vers": "3", "proto": "tcp", "port": 2049, "nconnect": 4, "rsize": 262144, "wsize": 262144},
        "changed": LOWERED}
    assert r["value"] == pytest.approx(200.0) and r["detail"]["verified"] is True
    plain = row("nfs-tcp", None, 0, 200.0)
    assert "variant" not in plain["measured"] and "nfs" not in plain["detail"]  # no [nfs] table: as before


def test_the_runs_table_has_a_line_per_variant_and_names_what_changed():
    lines = runner.render(rows(RATES)).splitlines()
    assert len(lines) == 1 + 4 + 1 + 3  # head, one line per transport or variant, the CPU note, 3 changed variants
    names = ["http", "nfs-tcp v3 nconnect=16 rsize=1M", "nfs-tcp v3 nconnect=1 rsize=1M",
             "nfs-tcp v3 nconnect=4 rsize=1M"]
    width = len(names[1])  # the transport column fits the longest name: the columns after it stay aligned
    for line, name, mibps in zip(lines[1:5], names, (100, 300, 150, 250)):
        assert line.startswith(f"pc1-pc2   8MiB               {name:<{width}}    3      40.0 ")
        assert f" {mibps:.1f}±" in line and line.endswith("yes")
    assert lines[0].index("reps") == lines[1].index(" 3 ") - 2
    assert lines[5].startswith("CPU s/GB")
    assert lines[6:] == [f"nfs-tcp v3 nconnect={n} rsize=1M: the kernel applied rsize=262144 (asked 1048576)"
                         for n in (16, 1, 4)]


def test_series_keep_variants_apart_in_transport_order():
    t = frames.from_results([("r", result())])
    assert frames.series_order(t.rows) == ["http", "nfs-tcp v3 nconnect=1 rsize=1M", "nfs-tcp v3 nconnect=4 rsize=1M",
                                           "nfs-tcp v3 nconnect=16 rsize=1M"]
    assert list(frames.series(t.rows).iloc[:2]) == ["http", "nfs-tcp v3 nconnect=16 rsize=1M"]
    ordered = sorted(t.rows.to_dict("records"), key=lambda r: r["order"])
    assert [r["item"] for r in ordered[::3]] == ["pc1-pc2 http 8MiB", "pc1-pc2 nfs-tcp 8MiB v3 nconnect=1 rsize=1M",
                                                 "pc1-pc2 nfs-tcp 8MiB v3 nconnect=4 rsize=1M",
                                                 "pc1-pc2 nfs-tcp 8MiB v3 nconnect=16 rsize=1M"]


def test_compare_pairs_variant_with_variant(tmp_path):
    a = result().save(tmp_path / "a.json")
    b = result({**RATES, ("nfs-tcp", V4): 500.0}).save(tmp_path / "b.json")
    c = compare.compare(frames.load([a, b]))
    table = c.table.set_index("item")
    assert len(table) == 4 and not c.notes
    assert table.loc["pc1-pc2 nfs-tcp 8MiB v3 nconnect=4 rsize=1M", "ratio"] == pytest.approx(2.0)
    assert table.loc["pc1-pc2 nfs-tcp 8MiB v3 nconnect=1 rsize=1M", "ratio"] == pytest.approx(1.0)
    plain = crafted.transfer_result().save(tmp_path / "plain.json")  # rows of a run without [nfs]
    c = compare.compare(frames.load([plain, a]))
    assert "nfs-tcp 8MiB v3 nconnect=4 rsize=1M" in " ".join(c.notes)  # unpaired, never matched to plain nfs rows


def test_the_transfer_plot_has_a_bar_per_variant(monkeypatch):
    drawn = []
    monkeypatch.setattr(plots, "_png", lambda fig: drawn.append(fig) or b"")
    assert plots.transfer_times(frames.from_results([("r", result())]))
    ax = drawn[0].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "http", "nfs-tcp v3 nconnect=1 rsize=1M", "nfs-tcp v3 nconnect=4 rsize=1M", "nfs-tcp v3 nconnect=16 rsize=1M"]
    heights = [p.get_height() for p in ax.patches]
    seconds = MOVED / MiB
    assert heights == pytest.approx([seconds / r for r in (100, 150, 250, 300)], rel=0.01)  # each its own mean
    assert plots.cpu_per_gb(frames.from_results([("r", result())])) == []  # no CPU measured: no plot, no error


def test_the_what_if_treats_each_variant_as_a_transport(tmp_path):
    path = result().save(tmp_path / "t.json")
    w = whatif.compute(read([LOG]).jobs, frames.load([path]), 32 << 30)
    f = w.fetches.set_index(["handoff", "transport"])
    assert f.loc[("pc1-pc2", "nfs-tcp v3 nconnect=4 rsize=1M"), "throughput_MiBps"] == pytest.approx(250.0)
    assert f.loc[("pc1-pc2", "nfs-tcp v3 nconnect=1 rsize=1M"), "throughput_MiBps"] == pytest.approx(150.0)
    assert f.loc[("pc1-pc2", "nfs-tcp v3 nconnect=4 rsize=1M"), "vs_today"] == pytest.approx(2.5)
    assert "nfs-tcp v3 nconnect=16 rsize=1M" in set(w.pipeline["scenario"])
