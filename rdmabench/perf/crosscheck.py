"""`rdmabench crosscheck`: perftest and rdmabench's native engine, back to back.

Same device, GID, sizes, iterations, queue depth and CQ moderation; perftest
first, then ours, alternating over repetitions. The ratios say how close our
measurements are to the reference: bandwidth ours/perftest (target >= 0.95),
write latency p50 ours/perftest t_typical (target <= 1.10).
"""

from __future__ import annotations

import statistics
from typing import Callable

from ..errors import RdmabenchError
from ..results import context
from ..results.model import Result
from . import perftest
from .client import Client, run_local
from .control import Channel
from .options import RunOptions

BW_TARGET = 0.95
LAT_TARGET = 1.10
PLAN = (("write_bw", "bw"), ("read_bw", "bw"), ("write_lat", "lat"))


def _perftest_remote(host: str, port: int, test: str, size: int, iters: int, dev: str, gid: int) -> dict:
    chan = Channel.connect(host, port, timeout=10, wait=5)
    try:
        chan.send("hello", tool="rdmabench")
        chan.recv(30, "hello")
        chan.send("perftest", test=test, size=size, iters=iters)
        chan.recv(60, "perftest_ready")
        args = perftest.argv(test, dev, gid, size, iters, server=host)
        try:
            out = perftest.run_client(args, timeout=900)
        finally:
            chan.send("perftest_done")
            chan.recv(120, "perftest_result")
        chan.send("bye")
    finally:
        chan.close()
    return perftest.parse(test, out)


def _perftest_local(test: str, size: int, iters: int, dev: str, gid: int) -> dict:
    server = perftest.start_server(perftest.argv(test, dev, gid, size, iters))
    try:
        out = perftest.run_client(perftest.argv(test, dev, gid, size, iters, server="127.0.0.1"), timeout=900)
    finally:
        perftest.finish(server, 60)
    return perftest.parse(test, out)


def run(device: str, peer: tuple[str, int] | None, sizes: list[int], lat_size: int = 2, repeat: int = 1,
        bw_iters: int | None = None, lat_iters: int = 1000, timeout_ms: int = 30000,
        progress: Callable[[str], None] = lambda m: None) -> Result:
    ctx = context.collect(device)
    gid = ctx["device"]["gid_index"]
    if gid is None:
        from .. import devices

        gid = devices.require(device).ports[0].recommended_gid_index
        ctx = context.collect(device, gid)
    rows = []
    for test, kind in PLAN:
        for size in (sizes if kind == "bw" else [lat_size]):
            iters = lat_iters if kind == "lat" else (bw_iters or (5000 if test == "write_bw" else 1000))
            for rep in range(repeat):
                progress(f"perftest {perftest.TOOLS[test]} {size} B")
                ref = (_perftest_remote(*peer, test, size, iters, device, gid) if peer
                       else _perftest_local(test, size, iters, device, gid))
                progress(f"rdmabench {test} {size} B")
                opts = RunOptions(tests=[test], sizes=[size], iters=iters, gid_index=gid)
                ours = (Client(opts, device, *peer, timeout_ms=timeout_ms).run() if peer
                        else run_local(opts, device, timeout_ms=timeout_ms)).rows[0]
                rows.append({"test": test, "size": size, "repetition": rep, "iterations": iters,
                             "tool": "perftest", **ref})
                rows.append({"tool": "rdmabench", **ours})
    return Result(kind="crosscheck", context=ctx,
                  options={"device": device, "peer": f"{peer[0]}:{peer[1]}" if peer else "local", "sizes": sizes,
                           "lat_size": lat_size, "repeat": repeat, "gid_index": gid, "lat_iters": lat_iters,
                           "bw_iters": bw_iters},
                  rows=rows)


def ratios(result: Result) -> list[dict]:
    """Ratio per (test, size), over the mean of the repetitions."""
    out = []
    keys = sorted({(r["test"], r["size"]) for r in result.rows}, key=lambda k: ([t for t, _ in PLAN].index(k[0]), k[1]))
    for test, size in keys:
        ref = [r for r in result.rows if r["tool"] == "perftest" and (r["test"], r["size"]) == (test, size)]
        ours = [r for r in result.rows if r["tool"] == "rdmabench" and (r["test"], r["size"]) == (test, size)]
        if test.endswith("_bw"):
            a = statistics.fmean(r["bw_avg_MiBps"] for r in ref)
            b = statistics.fmean(r["bw_avg_MiBps"] for r in ours)
            ratio, ok, what = b / a, b / a >= BW_TARGET, "BW average MiB/s (ours / perftest)"
            target = f">= {BW_TARGET}"
        else:
            a = statistics.fmean(r["t_typical_us"] for r in ref)
            b = statistics.fmean(r["lat_p50_us"] for r in ours)
            ratio, ok, what = b / a, b / a <= LAT_TARGET, "latency p50 us (ours / perftest t_typical)"
            target = f"<= {LAT_TARGET}"
        out.append({"test": test, "size": size, "measure": what, "perftest": a, "rdmabench": b, "ratio": ratio,
                    "target": target, "meets_target": ok, "repetitions": len(ref)})
    if not out:
        raise RdmabenchError("the cross-check produced no pairs")
    return out


def render(rows: list[dict]) -> str:
    head = f"{'test':<10} {'size':>8} {'perftest':>12} {'rdmabench':>12} {'ratio':>7}  target   verdict"
    lines = [head]
    for r in rows:
        lines.append(f"{r['test']:<10} {r['size']:>8} {r['perftest']:>12.2f} {r['rdmabench']:>12.2f} "
                     f"{r['ratio']:>7.3f}  {r['target']:<7}  {'meets' if r['meets_target'] else 'MISSES'}")
    lines.append("bandwidth: BW average in MiB/s; latency: p50 (perftest's t_typical) in us, half round trip")
    return "\n".join(lines)
