"""`rdmabench run` and `serve` for real, on the guest's rxe device: every test type,
validated, through the CLI as a user runs it; and the errors a user can hit."""

import json
import subprocess
import sys
import threading
import time

import pytest

from rdmabench import devices

ALL = ["write_bw", "read_bw", "send_bw", "write_lat", "read_lat", "send_lat", "atomic_bw", "atomic_lat"]


def rdmabench(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "rdmabench.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("connect", ["oob", "cm"])
def test_every_test_type_validated_with_both_ends_in_the_result(lab_env, tmp_path, connect):
    out = tmp_path / "r.json"
    done = rdmabench("run", "-t", "all", "--iters", "40", "--validate", "--connect", connect, "-o", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["schema"] == "rdmabench-result" and result["kind"] == "verbs"
    assert result["context"]["device"]["name"] == lab_env["device"]
    assert result["context"]["device"]["gid_type"] == "RoCE v2"
    assert "soft-RoCE" in result["context"]["environment"] and result["context"]["hardware"] is False
    assert [r["measured"]["test"] for r in result["rows"]] == ALL
    reads = min(devices.describe(lab_env["device"]).max_qp_rd_atom, 255)  # both ends are this device
    for row in result["rows"]:
        test, d = row["measured"]["test"], row["detail"]
        assert d["corrupt"] == 0 and d["validated"] > 0, test
        assert d.get("outstanding_reads") == (reads if test.startswith("read_") else None), test
        assert row["cpu"]["client"]["elapsed_s"] > 0 and row["cpu"]["server"]["elapsed_s"] > 0
        if test.endswith("_bw"):
            size = 8 if test.startswith("atomic") else 65536  # atomics are 8 bytes whatever the sizes
            assert d["ops"] == 40 and row["bytes"] == 40 * size and row["value"] == d["bw_avg_MiBps"] > 0
            assert row["metric"] == "bw_avg_MiBps" and row["unit"] == "MiB/s" and row["cpu"]["per_gb"]
            assert d["bw_best_window_MiBps"] >= d["bw_avg_MiBps"] * 0.999
        else:
            assert d["samples"] == 40 and len(d["samples_us"]) == 40 and row["value"] == d["lat_p50_us"]
            assert 0 < d["lat_min_us"] <= d["lat_p50_us"] <= d["lat_p99_us"] <= d["lat_max_us"]
    assert "#bytes" in done.stdout and "t_typical[usec]" in done.stdout and "BW average[MiB/sec]" in done.stdout


def test_sweep_several_qps_and_duration(tmp_path):
    out = tmp_path / "r.json"
    done = rdmabench("run", "-t", "write_bw", "--sizes", "1K:4K", "--iters", "30", "--qps", "2", "-o", str(out))
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [r["measured"]["size"] for r in rows] == [1024, 2048, 4096]
    assert all(r["detail"]["ops"] == 60 for r in rows)  # iterations are per QP, as perftest's -n
    # perftest's buffers: a slot per message in flight up to half a page, one shared buffer above
    assert [r["detail"]["registered_bytes"] for r in rows] == [2 * 128 * 1024, 2 * 128 * 2048, 2 * 4096]
    start = time.monotonic()
    done = rdmabench("run", "-t", "read_bw", "--duration", "2", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - start < 60
    row = json.loads(out.read_text())["rows"][0]
    assert 1.5 < row["seconds"] < 4 and row["detail"]["ops"] > 0


def test_results_go_to_the_labs_folder_without_o(lab_env, tmp_path):
    """`run` wrote to ./results (read-only in the guest) and lost the measurement with a traceback."""
    env = {**__import__("os").environ, "RDMABENCH_RESULTS": str(tmp_path / "lab-results")}
    done = subprocess.run([sys.executable, "-m", "rdmabench.cli", "run", "-t", "write_bw", "-n", "100"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    saved = list((tmp_path / "lab-results").glob("verbs-*.json"))
    assert len(saved) == 1 and f"result file: {saved[0]}" in done.stdout


def test_bidirectional_best_window_counts_both_directions(tmp_path):
    """-b printed a best window of 75 MiB/s beside an average of 104: one direction against both."""
    out = tmp_path / "r.json"
    done = rdmabench("run", "-t", "write_bw", "-q", "2", "-b", "--sizes", "64K", "-n", "200", "-o", str(out))
    assert done.returncode == 0, done.stderr
    row = json.loads(out.read_text())["rows"][0]
    d = row["detail"]
    assert len(d["bw_avg_MiBps_each_way"]) == 2 and row["value"] == d["bw_avg_MiBps"]
    assert d["bw_best_window_MiBps"] >= d["bw_avg_MiBps"] * 0.999
    assert len(d["bw_best_window_MiBps_each_way"]) == 2


def test_an_8_mib_ping_pong_registers_two_buffers_not_a_gigabyte(tmp_path):
    """send_lat at 8 MiB was OOM-killed: queue depth x size registered per end (1 GiB each)."""
    out = tmp_path / "r.json"
    done = rdmabench("run", "-t", "send_lat", "--sizes", "8M", "-n", "5", "-o", str(out))
    assert done.returncode == 0, done.stderr
    row = json.loads(out.read_text())["rows"][0]
    assert row["detail"]["registered_bytes"] == 2 * (8 << 20) and row["detail"]["samples"] == 5


def test_device_caps_are_checked_before_anything_starts(lab_env):
    """--depth 100000 and --gid-index 99 failed inside the test, behind an internal address prefix."""
    facts = devices.describe(lab_env["device"])
    assert facts.max_qp_wr and facts.max_cqe  # queried from the device (rxe: 1048576 and 32767)
    done = rdmabench("run", "--depth", "100000")
    cap = f"{lab_env['device']}'s max_qp_wr of {facts.max_qp_wr}" if facts.max_qp_wr < 100000 \
        else "the engines' maximum of 65536"
    assert done.returncode == 1 and f"--depth 100000 is above {cap}" in done.stderr, done.stderr
    assert "127.0.0.1:" not in done.stderr
    done = rdmabench("run", "--gid-index", "99")
    assert done.returncode == 1 and "--gid-index 99" in done.stderr and "has no such GID; it has: " in done.stderr
    assert "127.0.0.1:" not in done.stderr and "running" not in done.stderr  # refused before any test ran


def test_bad_input_gets_clear_errors(lab_env):
    done = rdmabench("run", "--size", "0")
    assert done.returncode == 2 and "at least 1 byte" in done.stderr
    done = rdmabench("run", "--size", "9M")  # rxe's maximum message is 8 MiB
    assert done.returncode == 1 and "maximum message size 8388608" in done.stderr
    done = rdmabench("run", "--device", "mlx5_9")
    assert done.returncode == 1 and f"devices on this host: {lab_env['device']}" in done.stderr
    start = time.monotonic()
    # nobody listens there; --wait 1: the default keeps trying for 5 s, time this error is not about
    done = rdmabench("run", "--peer", lab_env["ip"] + ":18999", "--wait", "1", timeout=60)
    assert done.returncode == 1 and "cannot reach rdmabench serve" in done.stderr
    assert time.monotonic() - start < 30


class Server:
    """`rdmabench serve` in a subprocess, its log lines collected as they come."""

    def __init__(self, ip, port):
        self.proc = subprocess.Popen([sys.executable, "-m", "rdmabench.cli", "serve", "--bind", ip, "--port", str(port)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        threading.Thread(target=lambda: self.lines.extend(iter(self.proc.stdout.readline, "")), daemon=True).start()
        self.wait_for("listening on")

    def wait_for(self, text, timeout=90):
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert time.monotonic() < deadline, f"serve never said {text!r}: {self.lines}"
            assert self.proc.poll() is None or any(text in line for line in self.lines), self.lines
            time.sleep(0.2)

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def client(ip, port, *args):
    return subprocess.Popen([sys.executable, "-m", "rdmabench.cli", "run", "--peer", f"{ip}:{port}", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_server_killed_mid_run_gives_the_client_a_clear_error_soon(lab_env):
    server = Server(lab_env["ip"], 18600)
    try:
        run = client(lab_env["ip"], 18600, "-t", "write_bw", "--duration", "60", "--timeout-ms", "3000")
        server.wait_for("connected")
        time.sleep(5)  # well into the measured loop
        server.stop()
        killed_at = time.monotonic()
        out, err = run.communicate(timeout=90)
        assert run.returncode == 1, out + err
        assert time.monotonic() - killed_at < 45  # the 60 s run ended on the error, not on its own
        assert "Error:" in err and "Traceback" not in err
    finally:
        server.stop()


def test_serve_survives_a_client_that_dies(lab_env):
    server = Server(lab_env["ip"], 18601)
    try:
        # --timeout-ms 3000: serve, in send_bw's receive loop, finds its client gone when a completion is that
        # late (the default waits 10 s for one): the drop this test is about, 7 s sooner
        doomed = client(lab_env["ip"], 18601, "-t", "send_bw", "--duration", "60", "--timeout-ms", "3000")
        server.wait_for("connected")
        time.sleep(5)
        doomed.kill()
        doomed.communicate()
        server.wait_for("dropped")
        done = rdmabench("run", "--peer", f"{lab_env['ip']}:18601", "-t", "write_lat", "--iters", "20", timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        server.wait_for("done")
    finally:
        server.stop()
