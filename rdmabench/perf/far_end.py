"""The far end of a local run (`rdmabench run` with no --peer) in a process of its own.

perftest's ib_write_lat runs its two ends as two processes; run_local used to run ours as a server
thread inside the client's process. Then both ends' CpuMeter read the same process: each end's
per-process CPU counted the other end's loop too (a passive write_bw far end showed the client's
full core). As two processes each end's figure is its own, and the pair has perftest's shape. (The
one-guest write_lat gap of issue 12 was measured with both shapes and is not explained by this:
docs/write-lat-one-guest.md.)

``start(device, gid_index)`` launches ``python -m rdmabench.perf.far_end`` (the same VerbsService
that `rdmabench serve` runs, on 127.0.0.1, one client), reads the port it listens on from its first
line of output and returns a FarEnd; ``FarEnd.close()`` ends it. The child ends by itself when its
one client is done, or when its stdin closes (the parent went away).
"""

from __future__ import annotations

import argparse
import os
import select
import subprocess
import sys
import tempfile
import threading
import time

from ..errors import RdmabenchError

START_WAIT_S = 120.0  # a Python start under TCG emulation takes seconds; a far end that does not listen by then failed
STOP_WAIT_S = 30.0
PORT_PREFIX = "rdmabench-far-end: port "


def command(device: str, gid_index: int | None) -> list[str]:
    """The child's command line (a test may replace it with a stand-in)."""
    argv = [sys.executable, "-m", "rdmabench.perf.far_end", "--device", device]
    if gid_index is not None:
        argv += ["--gid-index", str(int(gid_index))]
    return argv


class FarEnd:
    """A running far-end process: ``port`` to connect to, ``pid``, ``dropped()`` for its last reason."""

    def __init__(self, proc: subprocess.Popen, log, port: int):
        self.proc, self._log, self.port = proc, log, port

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_text(self) -> str:
        self._log.flush()
        self._log.seek(0)
        return self._log.read()

    def dropped(self) -> str | None:
        """The far end's reason for dropping its client, if it dropped it (shown with the client's error)."""
        lines = [line for line in self.log_text().splitlines() if " dropped: " in line]
        return lines[-1] if lines else None

    def close(self) -> None:
        try:
            if self.proc.stdin:
                self.proc.stdin.close()  # EOF: the child stops serving and exits
            self.proc.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        finally:
            if self.proc.stdout:
                self.proc.stdout.close()
            self._log.close()


def start(device: str, gid_index: int | None) -> FarEnd:
    log = tempfile.TemporaryFile("w+", prefix="rdmabench-far-end-")
    # a session of its own: a terminal's Ctrl-C reaches the client, which ends its test cleanly (the far end
    # must outlive it to take the end marker and answer "done"); the far end ends when its client is done
    proc = subprocess.Popen(command(device, gid_index), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=log, text=True, start_new_session=True)
    deadline = time.monotonic() + START_WAIT_S
    line = ""
    while not line.endswith("\n"):
        left = deadline - time.monotonic()
        ready = select.select([proc.stdout], [], [], max(left, 0))[0] if left > 0 else []
        chunk = os.read(proc.stdout.fileno(), 256).decode(errors="replace") if ready else ""
        if not chunk:  # EOF (the child exited) or out of time
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            reason = far_text(log) or f"exit status {proc.returncode}"
            FarEnd(proc, log, 0).close()
            raise RdmabenchError(f"the local run's far end (a process of its own) did not start: {reason}")
        line += chunk
    if not line.startswith(PORT_PREFIX):
        proc.kill()
        FarEnd(proc, log, 0).close()
        raise RdmabenchError(f"the local run's far end said {line.strip()!r}, not its port")
    return FarEnd(proc, log, int(line[len(PORT_PREFIX):].strip()))


def far_text(log) -> str:
    try:
        log.seek(0)
        return log.read().strip()[-2000:]
    except (OSError, ValueError):
        return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rdmabench.perf.far_end", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", required=True)
    parser.add_argument("--gid-index", type=int, default=None)
    args = parser.parse_args(argv)

    from .. import devices
    from ..results import context
    from ..wire import Server
    from .server import VerbsService

    dev = devices.require(args.device)
    gid_index = args.gid_index if args.gid_index is not None else dev.ports[0].recommended_gid_index
    far_end = VerbsService(dev, gid_index, "127.0.0.1")
    greeting = lambda: {"context": context.collect(dev.name, gid_index, dev=dev), **far_end.greeting()}  # noqa: E731
    server = Server("127.0.0.1", 0, {"verbs": (far_end.handle, greeting)}, max_clients=1,
                    log=lambda msg: print(f"rdmabench far end: {msg}", file=sys.stderr, flush=True))
    def watch_stdin() -> None:  # the parent closes our stdin when it is done with us, or dies
        try:
            while sys.stdin.read(4096):
                pass
        finally:
            server.finished.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    print(f"{PORT_PREFIX}{server.port}", flush=True)
    try:
        server.finished.wait()  # one client done, or the parent gone
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
