"""The null wire: the rdma transports' file pipeline with the network taken out, against ``dd bs=1M``.

It answers "will my disks and CPU, not the NIC, set the limit?": the same C pipeline a transfer runs
(native/pipeline.c: one thread preads and digests each chunk into a ring of ``slots`` x ``chunk``
bytes, another digests and pwrites it; the XXH3-128 of integrity.py at both ends), copying one file
between two folders of this host, beside GNU dd copying the same file between the same folders, in
the same run, alternating per repetition (ours first on even ones) so drift hits both alike.

Like for like: both read the same source and write a new destination file, neither fsyncs (page
cache) unless ``direct`` (then ours opens both files with O_DIRECT and dd gets ``iflag=direct
oflag=direct``); ``cold`` flushes the source and drops its cached pages before every copy of both.
One copy of each comes first as a warm-up, not counted. Every copy starts after an (untimed) sync, so none pays for the dirty pages the one before left.
Only ours verifies (the two digests must equal the generator's); dd checks nothing, and the rows
say so. Each copy is metered by cpu.CpuMeter (dd's CPU as this process's child).

Target: ours >= 0.9 x dd (``ratio`` = our median throughput / dd's median).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from . import integrity
from .cpu import CpuMeter
from .errors import RdmabenchError
from .workloads import pattern

TARGET = 0.9
MIB = 1 << 20
TOOLS = (("rdmabench", "rdmabench pipeline"), ("dd", "dd bs=1M"))


class PipelineError(RdmabenchError):
    pass


def _open(path: Path, write: bool, direct: bool) -> int:
    try:
        return integrity.open_file(path, write, direct)
    except integrity.DirectIORefused as err:
        raise PipelineError(f"--direct: {err}; use a disk file system or leave --direct out") from None


def _ours(src: Path, dst: Path, size: int, chunk: int, slots: int, direct: bool) -> dict:
    from . import _native

    fi = _open(src, False, direct)
    try:
        fo = _open(dst, True, direct)
        try:
            r = _native.fx_null([(fi, size)], [(fo, size)], chunk=chunk, slots=slots)
        finally:
            os.close(fo)
    finally:
        os.close(fi)
    return r


def _native_digest() -> str:
    from . import _native
    return _native.digest_impl()


def _dd(src: Path, dst: Path, direct: bool) -> None:
    cmd = ["dd", f"if={src}", f"of={dst}", "bs=1M", "status=none"] + (["iflag=direct", "oflag=direct"] if direct else [])
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise PipelineError(f"{' '.join(cmd)} failed: {done.stderr.strip()}")


def _copy(who: str, src: Path, dst: Path, size: int, digest: str, chunk: int, slots: int, direct: bool,
          cold: bool) -> dict:
    if cold:
        integrity.drop_cached_pages(src)
    os.sync()  # untimed: no copy pays for the dirty pages the one before it left behind
    meter = CpuMeter()
    t0 = time.perf_counter()
    if who == "rdmabench":
        r = _ours(src, dst, size, chunk, slots, direct)
        seconds = time.perf_counter() - t0
        cpu = meter.stop(size)
        if not r["src_digests"] == r["dst_digests"] == [digest]:
            raise PipelineError(f"the pipeline's digests {r['src_digests']} / {r['dst_digests']} are not the "
                                f"generator's {digest}")
        extra = {"read_busy_s": r["read_busy_ns"] / 1e9, "write_busy_s": r["write_busy_ns"] / 1e9}
    else:
        _dd(src, dst, direct)
        seconds = time.perf_counter() - t0
        cpu = meter.stop(size)
        extra = {}
    if dst.stat().st_size != size:
        raise PipelineError(f"{who} left {dst.stat().st_size} bytes, not {size}")
    dst.unlink()
    return {"seconds": seconds, "cpu_s": cpu["process"]["cpu_s"], **extra}


def _summary(runs: list[dict], size: int) -> dict:
    rates = [size / r["seconds"] / 1e9 for r in runs]
    cpu = [r["cpu_s"] / (size / 1e9) for r in runs]
    return {"runs": runs, "gbytes_per_s": rates, "median_gbytes_per_s": statistics.median(rates),
            "median_cpu_s_per_gb": statistics.median(cpu)}


def run_pipeline(size: int = 1 << 30, repetitions: int = 3, src_dir: Path | str | None = None,
                 dst_dir: Path | str | None = None, *, chunk: int = 1 << 20, slots: int = 16, direct: bool = False,
                 cold: bool = False, progress=lambda msg: None) -> dict:
    """Copy one ``size``-byte file from ``src_dir`` to ``dst_dir`` (default: the same) ``repetitions`` times
    with our pipeline and with dd, alternating; return both and ``ratio`` (ours / dd, medians)."""
    if repetitions < 1:
        raise PipelineError("repetitions must be at least 1")
    if chunk % 4096 or chunk <= 0 or slots < 1 or chunk * slots > 1 << 30:
        raise PipelineError("chunk must be a multiple of 4 KiB, slots at least 1, chunk x slots at most 1 GiB")
    src_tmp = Path(tempfile.mkdtemp(prefix="rdmabench-pipeline-", dir=src_dir))
    dst_tmp = Path(tempfile.mkdtemp(prefix="rdmabench-pipeline-", dir=dst_dir)) if dst_dir else src_tmp
    try:
        integrity.check_free_space(src_tmp, size if dst_tmp != src_tmp else 2 * size)
        if dst_tmp != src_tmp:
            integrity.check_free_space(dst_tmp, size)
        src, dst = src_tmp / "source", dst_tmp / "copy"
        progress(f"writing a {size} B source file in {src_tmp}")
        digest = pattern.write_file(src, "pipeline", size)
        for who in ("rdmabench", "dd"):  # warm-up, not counted: the first copy after the source was written pays for it
            _copy(who, src, dst, size, digest, chunk, slots, direct, cold)
        runs: dict[str, list[dict]] = {"rdmabench": [], "dd": []}
        for rep in range(repetitions):
            for who in (("rdmabench", "dd") if rep % 2 == 0 else ("dd", "rdmabench")):
                progress(f"repetition {rep + 1}/{repetitions}: {who}")
                runs[who].append(_copy(who, src, dst, size, digest, chunk, slots, direct, cold))
        ours, dd = _summary(runs["rdmabench"], size), _summary(runs["dd"], size)
        ratio = ours["median_gbytes_per_s"] / dd["median_gbytes_per_s"]
        dd_v = subprocess.run(["dd", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
        return {"size": size, "repetitions": repetitions, "chunk": chunk, "slots": slots, "direct": direct,
                "cold": cold, "source_dir": str(src_tmp.parent), "destination_dir": str(dst_tmp.parent),
                "rdmabench": ours, "dd": dd, "ratio": ratio, "target": TARGET, "meets_target": ratio >= TARGET,
                "versions": {"dd": dd_v, "digest": _native_digest()}}
    finally:
        shutil.rmtree(src_tmp, ignore_errors=True)
        if dst_tmp != src_tmp:
            shutil.rmtree(dst_tmp, ignore_errors=True)


def to_result(r: dict):
    """A result file (kind "baseline"): one row per timed copy of each tool, the verdict in the options."""
    from .results import context
    from .results.model import Result
    from .results.row import make

    rows = []
    for key, tool in TOOLS:
        for rep, run in enumerate(r[key]["runs"]):
            detail = {"verified": key == "rdmabench", "verification": "stream (both ends)" if key == "rdmabench" else "none",
                      "direct": r["direct"], "cold": r["cold"], "cpu_s": run["cpu_s"],
                      "cpu_s_per_GB": run["cpu_s"] / (r["size"] / 1e9),
                      **({"chunk": r["chunk"], "slots": r["slots"]} if key == "rdmabench" else {"version": r["versions"]["dd"]})}
            rows.append(make({"tool": tool, "size": r["size"]}, "throughput_MiBps", r["size"] / run["seconds"] / MIB,
                             repetition=rep, bytes=r["size"], seconds=run["seconds"], detail=detail))
    summary = {k: r[k] for k in ("ratio", "target", "meets_target", "versions")}
    return Result(kind="baseline", context=context.collect(), rows=rows,
                  options={k: r[k] for k in ("size", "repetitions", "chunk", "slots", "direct", "cold", "source_dir",
                                             "destination_dir")} | {"what": "pipeline", "summary": summary})
