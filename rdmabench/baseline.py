"""The strong baseline: is our Lotus-faithful HTTP fetch as fast as nginx serving the same file to curl?

Both sides run on this host over 127.0.0.1, serving one sealed file (``size`` bytes, from the page
cache) to the same destination path, alternating per repetition (nginx first on even ones, ours
first on odd ones) so drift hits both alike:

- nginx (Debian package ``nginx``): a temporary config, ``sendfile on``, ``tcp_nopush on``, one
  worker, started as a foreground child (``daemon off``) and killed afterwards; ``curl -o DEST``,
  timed by curl's own ``time_total`` (so curl's exec is not counted against it).
- ours: ``http_server`` in its own process (like nginx), our ``fetch`` in this one: request to
  verified file renamed into place, the XXH3-128 check included.

Target: ours >= 0.9 x nginx+curl (``ratio`` = our median throughput / nginx+curl's median).
``to_result`` makes it a result file like every other command's (kind "baseline", a row per fetch).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .errors import RdmabenchError
from .transports import http_client
from .workloads import pattern

TARGET = 0.9
MIB = 1 << 20
SECTOR_ID = "s-t01000-1"


class BaselineError(RdmabenchError):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BaselineError(f"{what} exited with status {proc.returncode} before listening on 127.0.0.1:{port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise BaselineError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f}s")


NGINX_CONF = """\
daemon off;
{user}
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location /remote/ {{ alias {root}/; }}
    }}
}}
"""


class _Nginx:
    def __init__(self, root: Path, tmp: Path):
        exe = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
        if not exe:
            raise BaselineError("nginx is not installed (Debian package nginx; scripts/install-debian-packages.sh)")
        self.port = _free_port()
        conf = tmp / "nginx.conf"
        user = "user root root;" if os.geteuid() == 0 else ""
        conf.write_text(NGINX_CONF.format(user=user, tmp=tmp, port=self.port, root=root))
        self.log = tmp / "error.log"
        self.proc = subprocess.Popen([exe, "-p", str(tmp), "-c", str(conf), "-e", str(self.log)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        try:
            _wait_listening(self.port, self.proc, "nginx")
        except BaselineError as err:
            self.stop()
            raise BaselineError(f"{err}: {self.log.read_text()[-500:] if self.log.exists() else ''}") from None
        self.version = subprocess.run([exe, "-v"], capture_output=True, text=True).stderr.strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # its own session: the master and its worker
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()


class _OurServer:
    def __init__(self, root: Path, token: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "rdmabench.transports.http_server", "--root", str(root),
                                      "--bind", "127.0.0.1", "--port", "0", "--token", token],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.stop()
            raise BaselineError(f"our http server did not start: {line!r}")
        self.url = line.split()[-1]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()


def _curl(port: int, dest: Path, size: int) -> float:
    curl = shutil.which("curl")
    if not curl:
        raise BaselineError("curl is not installed")
    out = subprocess.run([curl, "-sS", "--fail", "-o", str(dest), "-w", "%{time_total} %{size_download}",
                          f"http://127.0.0.1:{port}/remote/{SECTOR_ID}"], capture_output=True, text=True)
    if out.returncode != 0:
        raise BaselineError(f"curl from nginx failed ({out.returncode}): {out.stderr.strip()}")
    seconds, got = out.stdout.split()
    if int(got) != size or dest.stat().st_size != size:
        raise BaselineError(f"curl received {got} bytes, expected {size}")
    return float(seconds)


def _summary(seconds: list[float], size: int) -> dict:
    rates = [size / s / 1e9 for s in seconds]
    return {"seconds": seconds, "gbytes_per_s": rates, "median_gbytes_per_s": statistics.median(rates),
            "median_gbps": statistics.median(rates) * 8}


def run_baseline(size: int = 1 << 30, repetitions: int = 5, workdir: Path | str | None = None, *,
                 bufsize: int = http_client.BUFFER, keep: bool = False) -> dict:
    """Serve one ``size``-byte file with nginx to curl and with our server to our client, ``repetitions``
    times each, alternating; return both throughputs and ``ratio`` (ours / nginx+curl, medians)."""
    if repetitions < 1:
        raise BaselineError("repetitions must be at least 1")
    tmp = Path(tempfile.mkdtemp(prefix="rdmabench-baseline-", dir=workdir))
    try:
        os.chmod(tmp, 0o755)
        root, dest_root = tmp / "storage", tmp / "work"
        from . import integrity
        integrity.check_free_space(tmp, 3 * size)
        src = root / "sealed" / SECTOR_ID
        digest = pattern.write_file(src, f"sealed/{SECTOR_ID}", size)
        for d in (root, root / "sealed"):
            os.chmod(d, 0o755)
        (dest_root / "sealed").mkdir(parents=True)
        dest = dest_root / "sealed" / SECTOR_ID
        token = "rdmabench-baseline"
        (tmp / "nginx").mkdir()
        nginx = _Nginx(root / "sealed", tmp / "nginx")
        ours = None
        try:
            ours = _OurServer(root, token)
            # warm-up: one of each (page cache, first connections), not counted
            _curl(nginx.port, dest, size)
            dest.unlink()
            http_client.fetch(ours.url, token, "sealed", SECTOR_ID, dest_root, expected=digest, bufsize=bufsize)
            dest.unlink()
            t_nginx, t_ours = [], []
            for rep in range(repetitions):
                order = ("nginx", "ours") if rep % 2 == 0 else ("ours", "nginx")
                for who in order:
                    if who == "nginx":
                        t_nginx.append(_curl(nginx.port, dest, size))
                    else:
                        t0 = time.perf_counter()  # connect to verified file in place (curl reports its time_total)
                        rec = http_client.fetch(ours.url, token, "sealed", SECTOR_ID, dest_root, expected=digest,
                                                bufsize=bufsize)
                        t_ours.append(time.perf_counter() - t0)
                        if not rec.verified:
                            raise BaselineError("our fetch did not verify")
                    dest.unlink()
        finally:
            nginx.stop()
            if ours:
                ours.stop()
        a, b = _summary(t_nginx, size), _summary(t_ours, size)
        ratio = b["median_gbytes_per_s"] / a["median_gbytes_per_s"]
        curl_v = subprocess.run(["curl", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
        return {"size": size, "repetitions": repetitions, "bufsize": bufsize, "nginx_curl": a, "rdmabench_http": b,
                "ratio": ratio, "target": TARGET, "meets_target": ratio >= TARGET,
                "versions": {"nginx": nginx.version, "curl": curl_v}}
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


TOOLS = (("nginx_curl", "nginx+curl"), ("rdmabench_http", "rdmabench http"))  # key in run_baseline's dict, name


def to_result(r: dict):
    """A result file's content: one row per timed fetch of each tool, the verdict in the options."""
    from .results import context
    from .results.model import Result
    from .results.row import make

    rows = []
    for key, tool in TOOLS:
        detail = {"version": r["versions"]["nginx"]} if key == "nginx_curl" else {"bufsize": r["bufsize"], "verified": True}
        rows += [make({"tool": tool, "size": r["size"]}, "throughput_MiBps", r["size"] / s / MIB, repetition=rep,
                      bytes=r["size"], seconds=s, detail=detail) for rep, s in enumerate(r[key]["seconds"])]
    summary = {k: r[k] for k in ("ratio", "target", "meets_target", "versions")}
    return Result(kind="baseline", context=context.collect(), rows=rows,
                  options={"size": r["size"], "repetitions": r["repetitions"], "bufsize": r["bufsize"],
                           "summary": summary})


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    from .units import parse_size
    p = argparse.ArgumentParser(prog="python -m rdmabench.baseline", description=__doc__.split("\n")[0])
    p.add_argument("--size", default="1G")
    p.add_argument("--repetitions", type=int, default=5)
    p.add_argument("--workdir")
    a = p.parse_args(argv)
    print(json.dumps(run_baseline(parse_size(a.size), a.repetitions, a.workdir), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
