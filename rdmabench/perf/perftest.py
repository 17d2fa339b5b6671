"""Running perftest (the reference) and reading its output.

Five tools, with arguments built here from validated numbers and a fixed table
of atomic operations: the server side may be asked to start them by a client,
so no client-supplied text ever reaches a command line.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import time
from pathlib import Path

from ..engines import tests
from ..errors import RdmabenchError

TOOLS = {"write_bw": "ib_write_bw", "read_bw": "ib_read_bw", "write_lat": "ib_write_lat",
         "atomic_bw": "ib_atomic_bw", "atomic_lat": "ib_atomic_lat"}
ATOMIC_TYPES = {"fetch_add": "FETCH_AND_ADD", "cmp_swap": "CMP_AND_SWAP"}  # our --atomic -> perftest's -A
PERFTEST_PORT = 18525  # not 18515: rdmabench serve may hold that one
MARGIN_S = 2  # perftest's -f in duration mode (its default, passed explicitly): unmeasured seconds before and after


def argv(test: str, device: str, gid_index: int, size: int, iters: int, port: int = PERFTEST_PORT,
         server: str | None = None, depth: int = 128, cq_mod: int = 100, duration: int | None = None,
         atomic: str = "fetch_add") -> list[str]:
    """One perftest command line. ``duration`` (bandwidth tests, whole seconds) instead of ``iters``: -D
    duration + 2 margins, so that perftest measures ``duration`` seconds after a MARGIN_S warm-up.
    ``atomic`` (the atomic tests): one of ATOMIC_TYPES' keys, given to perftest as -A by that table."""
    if test not in TOOLS:
        raise RdmabenchError(f"perftest cross-check covers {', '.join(TOOLS)}, not {test!r}")
    if duration and not test.endswith("_bw"):
        raise RdmabenchError(f"{TOOLS[test]} reports only an average latency in duration mode: give iterations")
    if not duration and int(iters) < 1:
        raise RdmabenchError("perftest needs iterations >= 1 or a duration")
    if tests.is_atomic(test):
        if atomic not in ATOMIC_TYPES:
            raise RdmabenchError(f"atomic operation {atomic!r}: use {' or '.join(ATOMIC_TYPES)}")
        if int(size) != tests.ATOMIC_SIZE:  # perftest exits: "Message size cannot be changed for Atomic tests"
            raise RdmabenchError(f"{TOOLS[test]} moves {tests.ATOMIC_SIZE} bytes an operation, not {int(size)}")
    tool = shutil.which(TOOLS[test])
    if not tool:
        raise RdmabenchError(f"{TOOLS[test]} not found: install Debian's perftest (`make install` does)")
    count = (["-D", str(int(duration) + 2 * MARGIN_S), "-f", str(MARGIN_S)] if duration
             else ["-n", str(int(iters))])
    args = [tool, "-d", device, "-x", str(int(gid_index)), "-s", str(int(size)), *count,
            "-p", str(int(port)), "-F"]
    if test.endswith("_bw"):
        args += ["-t", str(int(depth)), "-Q", str(int(cq_mod))]
    if test == "read_bw":
        reads = outstanding_reads(device)
        if reads:
            args += ["-o", str(reads)]
    if test == "atomic_bw":
        atoms = outstanding_atomics(device, int(depth))
        if atoms:
            args += ["-o", str(atoms)]
    if tests.is_atomic(test):
        args += ["-A", ATOMIC_TYPES[atomic]]
    if server:
        args.append(server)
    return args


def shown(args: list[str]) -> str:
    """The command line as a person would type it (the tool's name, not its path)."""
    return " ".join([Path(args[0]).name, *args[1:]])


@functools.lru_cache(maxsize=None)  # asked once per device, not once per perftest run
def outstanding_reads(device: str) -> int | None:
    """RDMA READs in flight per QP as rdmabench's engines post them: the device's maximum, at most 255.

    Passed to ib_read_bw as -o so both tools read with the same depth whatever perftest's own default."""
    from .. import devices

    most = devices.describe(device).max_qp_rd_atom
    return min(most, 255) if most else None


def outstanding_atomics(device: str, depth: int) -> int | None:
    """Atomics in flight per QP as the native engine's atomic_bw keeps them (ep_atomic.c's atomic_depth): the
    QP's max_rd_atomic (the device's maximum, at most 255), no more than the queue depth.

    Passed to ib_atomic_bw as -o: perftest posts up to -t WRs and the QP holds -o of them in flight, so both
    tools keep the same number of atomics on the wire."""
    most = outstanding_reads(device)
    return min(most, depth) if most else None


def listening(port: int) -> bool:
    """Is some process listening on TCP port `port`? (/proc/net/tcp; connecting would eat perftest's one accept)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def start_server(args: list[str], timeout: float = 30.0) -> subprocess.Popen:
    port = int(args[args.index("-p") + 1])
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout
    while not listening(port):
        if proc.poll() is not None:
            raise RdmabenchError(f"{Path(args[0]).name} server exited at once:\n{proc.stdout.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise RdmabenchError(f"{Path(args[0]).name} server did not listen on port {port} within {timeout:g} s")
        time.sleep(0.1)
    return proc


def finish(proc: subprocess.Popen, timeout: float) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        return -9, out
    return proc.returncode, out


def run_client(args: list[str], timeout: float) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RdmabenchError(f"{Path(args[0]).name} failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout


# a figure, or what perftest prints when its clock misfires (inf, -nan: a CPU MHz it read as 0)
_NUM = r"([0-9]+(?:\.[0-9]+)?|-?inf|-?nan)"


def parse(test: str, text: str) -> dict:
    """The result line of a perftest report: BW in MiB/s (perftest's MB/sec is 2^20 bytes) and the message
    rate (ops_per_s too: the atomic pair's figure; 8-byte BW in MiB/s has two decimals, 0.44 or 0.45), or
    latency in us (ib_atomic_lat's is the whole round trip, post to completion, as ib_read_lat's; ib_write_lat
    halves its ping-pong's)."""
    if test.endswith("_bw"):
        m = re.search(rf"^\s*(\d+)\s+(\d+)\s+{_NUM}\s+{_NUM}\s+{_NUM}\s*$", text, re.M)
        if not m:
            raise RdmabenchError(f"no bandwidth line in perftest's output:\n{text}")
        return {"size": int(m[1]), "iterations": int(m[2]), "bw_peak_MiBps": float(m[3]),
                "bw_avg_MiBps": float(m[4]), "msg_rate_Mpps": float(m[5]), "ops_per_s": float(m[5]) * 1e6}
    m = re.search(rf"^\s*(\d+)\s+(\d+)\s+{_NUM}\s+{_NUM}\s+{_NUM}\s+{_NUM}\s+{_NUM}\s+{_NUM}\s+{_NUM}\s*$", text, re.M)
    if not m:
        raise RdmabenchError(f"no latency line in perftest's output:\n{text}")
    keys = ("t_min_us", "t_max_us", "t_typical_us", "t_avg_us", "t_stdev_us", "p99_us", "p99_9_us")
    return {"size": int(m[1]), "iterations": int(m[2]), **{k: float(m[i + 3]) for i, k in enumerate(keys)}}
