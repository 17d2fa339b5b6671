"""Duration mode as a first-class mode (issue 12, part 2), on the lab's rxe device.

- A latency run by duration keeps every sample's percentiles: raw samples as an iterations run does,
  and a histogram of every sample whose percentiles agree with the exact ones (within its 0.4 %);
  past max_samples the row's percentiles come from that histogram, and say so.
- Every run keeps windows: the windows' operations add up to the run's, each full window is at least
  the interval long, the callback sees each full window; a bandwidth row has min <= median <= max.
- `rdmabench run --until-stopped` runs until Ctrl-C, prints a line per interval, ends cleanly and
  writes its result file (exit 130); Ctrl-C in an iterations run abandons that test and still writes
  the file, saying so.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from lab_pairs import both, pair
from rdmabench.perf import metrics
from rdmabench.perf.client import make_row

INTERVAL = 0.5


def _setup(test, size, **kw):
    return {"test": test, "size": size, "qps": 1, "engine": "native", "connect": "oob", "bidir": False,
            "iters": 0, "duration": kw.get("duration"), "validate": False, **kw}


def test_latency_by_duration_keeps_every_samples_percentiles_and_windows():
    a, b = pair(size=2, depth=16, slots=2, inline_size=220)
    seen = []
    try:
        server, raw = both(lambda: b.run("write_lat", "server", duration_s=3.0, interval_s=INTERVAL),
                           lambda: a.run("write_lat", "client", duration_s=3.0, interval_s=INTERVAL,
                                         on_window=seen.append))
    finally:
        a.close()
        b.close()
    samples = sorted(raw["samples_ns"])
    assert not raw["samples_truncated"] and len(samples) == raw["ops"] > 100
    hist = raw["lat_hist"]
    assert sum(hist["count"]) == len(samples)  # the histogram holds every sample
    from_hist = metrics.latency_from_histogram(hist["ns"], hist["count"], "half round trip")
    exact = metrics.latency(samples, "half round trip")
    for key in ("lat_p50_us", "lat_p99_us", "lat_min_us", "lat_max_us"):
        assert abs(from_hist[key] - exact[key]) <= exact[key] / 256 + 0.001, (key, from_hist[key], exact[key])

    windows = raw["windows"]
    assert list(windows["ops"]) == sorted(windows["ops"]) and windows["ops"][-1] == raw["ops"]
    assert sum(windows["samples"]) == raw["ops"]
    full = [k for k, last in enumerate(windows["last"]) if not last]
    assert len(full) >= 3, windows  # 3 s in 0.5 s windows
    assert len(seen) == len(full) and all(w["latency"] and w["seconds"] >= INTERVAL for w in seen)
    for k in full:
        assert windows["lat_min_ns"][k] <= windows["lat_p50_ns"][k] <= windows["lat_p99_ns"][k] \
            <= windows["lat_max_ns"][k] * (1 + 1 / 256)

    row = make_row("write_lat", 2, 0, _setup("write_lat", 2, duration=3.0), raw, {}, server, {})
    d = row["detail"]
    assert d["percentiles_from"] == "every sample" and d["samples"] == len(samples)
    assert d["windows_full"] == len(full) and d["window_lat_p50_us"]["min"] <= d["window_lat_p50_us"]["max"]


def test_past_max_samples_the_percentiles_come_from_the_histogram_of_every_sample():
    a, b = pair(size=2, depth=16, slots=2, inline_size=220)
    try:
        server, raw = both(lambda: b.run("write_lat", "server", duration_s=1.5),
                           lambda: a.run("write_lat", "client", duration_s=1.5, max_samples=50))
    finally:
        a.close()
        b.close()
    assert raw["samples_truncated"] and len(raw["samples_ns"]) == 50 and raw["ops"] > 50
    row = make_row("write_lat", 2, 0, _setup("write_lat", 2, duration=1.5), raw, {}, server, {})
    d = row["detail"]
    assert d["samples"] == raw["ops"], "the percentiles cover every sample, not the first 50"
    assert "histogram" in d["percentiles_from"] and d["samples_truncated"]
    assert d["lat_min_us"] <= d["lat_p50_us"] <= d["lat_p99_us"] <= d["lat_max_us"]


def test_bandwidth_windows_add_up_to_the_run():
    a, b = pair(size=65536, depth=64)
    seen = []
    try:
        server, raw = both(lambda: b.run("write_bw", "server", duration_s=2.5),
                           lambda: a.run("write_bw", "client", duration_s=2.5, warmup=64, interval_s=INTERVAL,
                                         on_window=seen.append))
    finally:
        a.close()
        b.close()
    windows = raw["windows"]
    assert windows["ops"][-1] == raw["ops"] and raw["ops"] > 0
    assert raw["windows"]["last"][-1] == 1 and len(seen) == len(windows["ops"]) - 1 >= 3
    assert all(w["ops"] >= 0 and w["seconds"] >= INTERVAL for w in seen)
    row = make_row("write_bw", 65536, 0, _setup("write_bw", 65536, duration=2.5), raw, {}, server, {})
    d = row["detail"]
    assert sum(w["ops"] for w in d["windows"]) == raw["ops"]
    assert d["bw_window_min_MiBps"] <= d["bw_window_median_MiBps"] <= d["bw_window_max_MiBps"]
    assert d["bw_window_min_MiBps"] > 0


def test_an_exception_in_the_window_callback_stops_the_run_and_is_raised():
    a, b = pair(size=65536, depth=64)

    def boom(w):
        raise ValueError("the callback failed")

    try:
        with pytest.raises(ValueError, match="the callback failed"):
            both(lambda: b.run("write_bw", "server", duration_s=30.0),
                 lambda: a.run("write_bw", "client", duration_s=30.0, interval_s=INTERVAL, on_window=boom))
    finally:
        a.close()
        b.close()


def _interrupt(args, tmp_path, after_lines):
    """Start `rdmabench run ARGS` in a process group of its own, send the group SIGINT once it has printed after_lines live lines, and return
    (exit code, stdout, stderr, result path)."""
    out = tmp_path / "result.json"
    proc = subprocess.Popen([sys.executable, "-m", "rdmabench.cli", "run", *args, "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    err_lines = []

    def read_stderr():
        for line in proc.stderr:
            err_lines.append(line)

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    deadline = time.monotonic() + 180
    while sum(" t=" in ln for ln in err_lines) < after_lines:
        assert proc.poll() is None, "".join(err_lines)
        assert time.monotonic() < deadline, "no live line within 180 s:\n" + "".join(err_lines)
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: to the whole process group, far end included
    stdout = proc.stdout.read()
    proc.wait(timeout=120)
    reader.join(10)
    return proc.returncode, stdout, "".join(err_lines), out


@pytest.mark.parametrize("test,size", [("write_bw", "64K"), ("write_lat", "2")])
def test_until_stopped_runs_until_ctrl_c_and_still_writes_its_result(tmp_path, test, size):
    code, stdout, stderr, out = _interrupt(
        ["-t", test, "-s", size, "--until-stopped", "--interval", "0.5"], tmp_path, after_lines=3)
    assert code == 130, stdout + stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip().startswith(f"{test} ") and " t=" in ln]
    assert len(lines) >= 3, stderr
    data = json.loads(out.read_text())
    assert "stopped by Ctrl-C" in data["options"]["interrupted"]
    (row,) = data["rows"]
    d = row["detail"]
    assert d["interrupted"] and d["until_stopped"] and d["windows_full"] >= 2
    assert row["value"] > 0 and f"result file: {out}" in stdout


def test_ctrl_c_in_an_iterations_run_writes_what_finished(tmp_path):
    code, stdout, stderr, out = _interrupt(
        ["-t", "write_lat,write_bw", "-n", "100000000", "--interval", "0.5"], tmp_path, after_lines=2)
    assert code == 130, stdout + stderr
    data = json.loads(out.read_text())
    assert data["rows"] == [] and "abandoned" in data["options"]["interrupted"]
    assert os.path.getsize(out) > 0
