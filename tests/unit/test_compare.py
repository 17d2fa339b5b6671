import math

import pytest
from scipy import stats

from data import crafted
from rdmabench.results import compare, frames


@pytest.fixture
def ab(tmp_path):
    a = crafted.verbs_a().save(tmp_path / "a.json")
    b = crafted.verbs_b().save(tmp_path / "b.json.gz")
    return a, b


def rows(c):
    return c.table.set_index("item")


def test_loader_tables(ab):
    t = frames.load(ab)
    assert list(t.runs["run"]) == ["a", "b"]
    assert set(t.rows["test"]) == {"write_bw", "read_bw", "write_lat"}
    assert "detail.samples_us" not in t.rows.columns  # raw samples live in their own table
    assert "cpu.per_gb.client_system" in t.rows.columns
    assert len(t.samples[t.samples.run == "a"]) == 3 * 400
    assert t.runs.set_index("run").at["b", "active_mtu"] == 1024


def test_a_significant_difference(ab):
    r = rows(compare.compare(frames.load(ab))).loc["write_bw 64 KiB"]
    assert r["a_mean"] == pytest.approx(1000) and r["b_mean"] == pytest.approx(1200)
    assert r["a_sd"] == pytest.approx(10) and r["b_sd"] == pytest.approx(10)
    assert r["ratio"] == pytest.approx(1.2)
    assert r["significance"] == "significant"
    # Welch by hand: t = 200 / sqrt(100/3 + 100/3), df = 4
    t = 200 / math.sqrt(200 / 3)
    assert r["p_value"] == pytest.approx(2 * stats.t.sf(t, 4))


def test_a_non_significant_difference(ab):
    r = rows(compare.compare(frames.load(ab))).loc["write_bw 1 MiB"]
    assert r["ratio"] == pytest.approx(1.01)
    assert r["significance"] == "not significant"
    ref = stats.ttest_ind([2020, 2120, 1920], [2000, 2100, 1900], equal_var=False)
    assert r["p_value"] == pytest.approx(ref.pvalue)
    assert 0.8 < r["p_value"] < 0.85


def test_one_run_is_not_tested(ab):
    r = rows(compare.compare(frames.load(ab))).loc["write_lat 2 B"]
    assert r["significance"] == "n/a: one run"
    assert r["metric"] == "lat_p50_us" and not r["higher_is_better"]
    assert r["ratio"] == pytest.approx(0.75)


def test_welch_edge_cases():
    assert compare.welch([1.0], [1.0, 2.0]) is None
    assert compare.welch([5.0, 5.0], [5.0, 5.0]).p == 1.0
    assert compare.welch([5.0, 5.0], [6.0, 6.0]).p == 0.0


def test_spread_warning(ab):
    c = compare.compare(frames.load(ab))
    spread = [w for w in c.warnings if "spread" in w]
    assert len(spread) == 1  # only B's read_bw 64 KiB (800, 1000, 1200) is over 10%
    assert spread[0].startswith("b: read_bw 64 KiB: spread 20% of the mean over 3 repetitions")


def test_context_difference_warning(ab):
    c = compare.compare(frames.load(ab))
    ctx = [w for w in c.warnings if "different context" in w]
    assert len(ctx) == 1
    assert "active MTU 4096 vs 1024" in ctx[0] and "kernel 6.1.0-18-amd64 vs 6.12.12-amd64" in ctx[0]
    assert "device" not in ctx[0]  # the same NIC both times


def test_same_context_no_warning(tmp_path):
    a = crafted.verbs_a().save(tmp_path / "a.json")
    c = compare.compare(frames.load([a, a]))
    assert not [w for w in c.warnings if "context" in w]
    assert set(c.table["significance"]) == {"not significant"}


def test_hardware_against_emulation_is_flagged(tmp_path):
    hw = crafted.transfer_result(emulated=False).save(tmp_path / "hw.json")
    rxe = crafted.transfer_result(emulated=True).save(tmp_path / "rxe.json")
    c = compare.compare(frames.load([hw, rxe]))
    w = next(w for w in c.warnings if "different context" in w)
    assert "hardware vs soft-RoCE/emulation" in w and "under emulation" in w and "device mlx5_0 vs rxe0" in w
    # transfers pair on handoff + transport + sector, in the pipeline's order with today's transport first
    assert list(c.table["item"])[:3] == ["pc1-pc2 http 8MiB", "pc1-pc2 rdma-write 8MiB", "pc1-pc2 nfs-rdma 8MiB"]
    assert len(c.table) == len(crafted.TRANSFER_MIBPS)


def test_three_files_each_against_the_first(tmp_path, ab):
    c = compare.compare(frames.load([*ab, ab[0]]))
    assert (c.baseline, c.others) == ("1:a", ["b", "3:a"])  # the same name twice is told apart by position
    assert set(c.table["run"]) == set(c.others)


def test_different_kinds_do_not_pair(tmp_path, ab):
    tr = crafted.transfer_result().save(tmp_path / "t.json")
    c = compare.compare(frames.load([ab[0], tr]))
    assert c.table.empty
    assert any("nothing to pair" in n for n in c.notes)


def test_text_and_markdown(ab):
    c = compare.compare(frames.load(ab))
    text = compare.render_text(c)
    assert "b against a:" in text
    assert "1,000 ± 10" in text and "1,200 ± 10" in text and "1.200x (+20.0% better)" in text
    assert "warnings:" in text and "spread 20%" in text
    md = compare.render_markdown(c)
    lines = md.splitlines()
    assert "### b against a" in lines
    head = lines.index("| item | metric | A: a | B: b | B/A | significance (Welch, 95%) |")
    assert lines[head + 1] == "|---|---|---|---|---|---|"
    body = [ln for ln in lines[head + 2:] if ln.startswith("| ")]
    assert len(body) == 4 and all(ln.count(" | ") == 5 for ln in body)
    assert "| write_lat 2 B |" in md and "n/a: one run" in md
    assert "- ⚠ b ran in a different context from a" in md


def test_compare_command(ab):
    from click.testing import CliRunner

    from rdmabench.cli import cli

    out = CliRunner().invoke(cli, ["compare", str(ab[0]), str(ab[1])])
    assert out.exit_code == 0, out.output
    assert out.stdout.startswith("b against a:") and "significant (p=" in out.stdout
    md = CliRunner().invoke(cli, ["compare", str(ab[0]), str(ab[1]), "--format", "md", "--latency", "p99"])
    assert md.exit_code == 0 and "| write_lat 2 B | lat_p99_us (µs, lower is better) |" in md.stdout
    one = CliRunner().invoke(cli, ["compare", str(ab[0])])
    assert one.exit_code == 2 and "at least two result files" in one.output


def test_options_that_differ_are_named_once_per_option(tmp_path):
    a = crafted.verbs_a().save(tmp_path / "a.json")
    b = crafted.verbs_b()
    for row in b.rows:
        if row["measured"]["test"] == "write_bw":
            row["detail"]["qps"] = 4
    c = compare.compare(frames.load([a, b.save(tmp_path / "b.json")]))
    qps = [w for w in c.warnings if w.startswith("qps differs")]
    assert qps == ["qps differs between a (1) and b (4) for write_bw 64 KiB, write_bw 1 MiB: not quite like with like"]
