import base64
import re
from html.parser import HTMLParser

import pytest
from click.testing import CliRunner

from data import crafted
from rdmabench.cli import cli
from rdmabench.results import frames, report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
    """The parts of the page the tests look at: images, headings, table cells, external references."""

    def __init__(self, text):
        super().__init__()
        self.imgs, self.headings, self.cells, self.external, self.warn = [], [], [], [], ""
        self._in, self._cls, self._warn_depth = None, None, 0
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a)
        for key in ("src", "href"):
            v = a.get(key)
            if v and not (v.startswith("data:") or v.startswith("#")):
                self.external.append(v)
        if tag in ("link", "script", "iframe"):
            self.external.append(tag)
        if tag in ("h1", "h2", "td", "th"):
            self._in, self._cls = tag, a.get("class")
            self._text = ""
        if tag == "div" and a.get("class") == "warn":
            self._warn_depth = 1
        elif self._warn_depth:
            self._warn_depth += 1

    def handle_endtag(self, tag):
        if tag == self._in:
            (self.headings if tag in ("h1", "h2") else self.cells).append((tag, self._cls, self._text.strip()))
            self._in = None
        if self._warn_depth and tag != "img":
            self._warn_depth -= 1

    def handle_data(self, data):
        if self._in:
            self._text += data
        if self._warn_depth:
            self.warn += data


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """A hardware verbs run and a soft-RoCE transfer run in one report (built once: plotting takes a moment)."""
    d = tmp_path_factory.mktemp("full")
    paths = [crafted.verbs_a().save(d / "verbs-a.json"), crafted.transfer_result().save(d / "transfer-rxe.json")]
    page = report.write(report.build(frames.load(paths)), d / "out")
    return page, Page(page.read_text())


def test_every_plot_is_inline(full):
    page, p = full
    alts = [i["alt"] for i in p.imgs]
    assert alts == ["write_bw: bandwidth vs message size", "read_bw: bandwidth vs message size", "write_lat: latency CDF",
                    "pc1-pc2: transfer time per transport", "finalize: transfer time per transport",
                    "c1-c2: transfer time per transport", "CPU-seconds per GB per transport"]
    for img in p.imgs:
        assert img["src"].startswith("data:image/png;base64,")
        assert base64.b64decode(img["src"].split(",", 1)[1]).startswith(PNG_MAGIC)
    assert p.external == []  # self-contained: no link, script or remote image


def test_headings(full):
    _, p = full
    assert [h[2] for h in p.headings] == ["rdmabench report", "The decision: each hand-off at the real sector size",
                                          "Sectors a day: today and with each transport", "Bandwidth vs message size",
                                          "Latency distribution", "Transfer time per hand-off, as measured",
                                          "RDMA transfers against the link's raw bandwidth",
                                          "CPU-seconds per GB per transport", "Cluster: fan-in and all pairs",
                                          "Context"]


def test_every_plot_has_a_table_of_its_numbers_below_it(full):
    page, p = full
    text = page.read_text()
    plots = re.findall(r'<div class="plot"><figure>.*?</figure>(.*?)</div>\n', text, re.S)
    assert len(plots) == len(p.imgs) == 7
    assert all(rest.startswith('<div class="tablewrap numbers">') for rest in plots)
    texts = [c[2] for c in p.cells]
    assert "1,000.0 ± 10.0" in texts  # verbs-a write_bw 64 KiB: 1000, 1010, 990 MiB/s
    # transfer-rxe pc1-pc2 over http: 98, 100, 102 MiB/s, the mean beside its bar
    assert ["8MiB", "http", "3"] == texts[texts.index("http") - 1:texts.index("http") + 2]
    i = texts.index("http")
    assert texts[i + 4] == "100.0"


def test_the_transfer_charts_fit_the_page(full):
    page, _ = full
    from matplotlib.image import imread
    for h in ("pc1-pc2", "finalize", "c1-c2"):
        height, width = imread(page.parent / f"transfer-{h}.png").shape[:2]
        assert 700 <= width <= 1100, (h, width)  # drawn at page width: never squeezed, never scaled down


def test_context_table_and_emulation_flag(full):
    _, p = full
    texts = [c[2] for c in p.cells]
    for value in ("verbs-a", "transfer-rxe", "mlx5_0", "rxe0", "rdma_rxe", "16.35.2000", "6.12.12-amd64", "Ethernet",
                  "4096", "RoCE v2", "44.0-2", "tcg", "storage-1", "hardware", "active MTU", "GID type", "firmware",
                  "perftest", "4.5-0.20"):  # the perftest version the JSON carries, beside rdma-core
        assert value in texts, value
    flagged = [c[2] for c in p.cells if c[1] == "emulated"]
    assert flagged == ["soft-RoCE (rxe) under emulation (QEMU TCG): ratios only, not a hardware figure"]
    assert "Not a hardware figure" in p.warn and "transfer-rxe" in p.warn and "verbs-a" not in p.warn
    row = dict((c[2], i) for i, c in enumerate(p.cells) if c[0] == "th")
    assert p.cells[row["firmware"] + 2][2] == "-"  # rxe has none: shown as missing, not as "None"


def test_markdown_and_pngs_beside_it(full):
    page, _ = full
    md = (page.parent / "report.md").read_text()
    for name in ("bw-write_bw", "bw-read_bw", "lat-write_lat", "transfer-pc1-pc2", "transfer-finalize",
                 "transfer-c1-c2", "cpu-per-gb"):
        assert f"]({name}.png)" in md
        assert (page.parent / f"{name}.png").read_bytes().startswith(PNG_MAGIC)
    assert "## Context" in md and "| **device** | mlx5_0 | rxe0 |" in md
    assert "> **⚠ Not a hardware figure**" in md and "> - transfer-rxe: soft-RoCE (rxe) under emulation" in md


def test_verbs_only_has_no_transfer_plots_and_says_so(tmp_path):
    path = crafted.verbs_b().save(tmp_path / "b.json")
    out = CliRunner().invoke(cli, ["report", str(path), "-o", str(tmp_path / "r")])
    assert out.exit_code == 0, out.output
    assert out.output.strip() == str(tmp_path / "r" / "report.html")
    p = Page((tmp_path / "r" / "report.html").read_text())
    assert [i["alt"] for i in p.imgs] == ["write_bw: bandwidth vs message size", "read_bw: bandwidth vs message size",
                                          "write_lat: latency CDF"]
    html = (tmp_path / "r" / "report.html").read_text()
    assert "No transfer rows in these files" in html and "no CPU-per-GB plot" in html
    assert p.warn == ""  # hardware only: no banner
    assert not list((tmp_path / "r").glob("transfer-*.png"))
    assert "No transfer rows in these files: nothing to decide" in html
