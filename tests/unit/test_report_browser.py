"""The report as a browser shows it: report.html rendered by headless Chromium to a screenshot (not blank: the
page drew its tables and plots) and to its DOM (the decision tables lead, every plot has its table).

Needs Debian's chromium-headless-shell (scripts/install-debian-packages.sh installs it); without it this test
fails and says what to install: a report nobody looked at in a browser is not tested.
"""

import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from matplotlib.image import imread

from data import crafted
from rdmabench.results import frames, report

BROWSER = "chromium-headless-shell"
PACKAGE = "chromium-headless-shell"
WIDTH, HEIGHT = 1200, 3000


def browser() -> str:
    path = shutil.which(BROWSER)
    if not path:
        pytest.fail(f"{BROWSER} is not installed: this test renders the report in a headless browser. Install the "
                    f"Debian package {PACKAGE} (`make install` does, or `apt-get install -y --no-install-recommends "
                    f"{PACKAGE}`).")
    return path


def chromium(tmp_path, *args: str) -> subprocess.CompletedProcess:
    # --no-sandbox: the page is our own file, and Chromium's sandbox refuses to start as root (CI runs as root)
    cmd = [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={WIDTH},{HEIGHT}", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{' '.join(cmd)}: exit {done.returncode}\n{done.stderr[-2000:]}"
    return done


class Dom(HTMLParser):
    """What the browser's DOM holds: section ids in order, tables by class, and each plot's contents."""

    def __init__(self, text):
        super().__init__()
        self.sections, self.tables, self.plots = [], [], []
        self._plot_depth = 0
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "h2" and a.get("id"):
            self.sections.append(a["id"])
        if tag == "table":
            self.tables.append(a.get("class") or "")
            if self._plot_depth:
                self.plots[-1].append("table")
        if tag == "img" and self._plot_depth:
            self.plots[-1].append("img")
        if tag == "div":
            if self._plot_depth:
                self._plot_depth += 1
            elif a.get("class") == "plot":
                self._plot_depth = 1
                self.plots.append([])

    def handle_endtag(self, tag):
        if tag == "div" and self._plot_depth:
            self._plot_depth -= 1


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    d = tmp_path_factory.mktemp("browser")
    paths = [crafted.verbs_a().save(d / "verbs-a.json"), crafted.transfer_result().save(d / "transfer-rxe.json")]
    return report.write(report.build(frames.load(paths)), d / "out")


@pytest.mark.slow
def test_the_screenshot_is_not_blank(page, tmp_path):
    shot = tmp_path / "report.png"
    chromium(tmp_path, f"--screenshot={shot}", page.as_uri())
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (HEIGHT, WIDTH)
    colours = np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 50, f"{len(colours)} distinct colours: the page rendered as (nearly) blank"
    ink = (pixels.min(axis=2) < 0.8)  # not white nor a pale background
    top = ink[:HEIGHT // 3]
    assert top.mean() > 0.02, f"only {top.mean():.2%} of the first screen is drawn on: where is the decision table?"
    assert ink.mean() > 0.02 and pixels.std() > 0.05


def test_the_dom_has_the_decision_tables_first_and_a_table_with_every_plot(page, tmp_path):
    dom = Dom(chromium(tmp_path, "--dump-dom", page.as_uri()).stdout)
    assert dom.sections[:3] == ["decision", "what-if", "bandwidth"]
    decisions = [c for c in dom.tables if "decision" in c.split()]
    assert len(decisions) == 3  # pc1-pc2, finalize, c1-c2 at 8 MiB
    assert dom.tables.index(decisions[0]) == 0  # the first table on the page
    assert len(dom.plots) == 7 and all(p == ["img", "table"] for p in dom.plots), dom.plots
