"""`rdmabench crosscheck`: perftest and rdmabench's native engine, back to back.

Same device, GID, sizes, length, queue depth and CQ moderation; each
repetition is a pair run back to back, the order alternating. The ratios say
how close our measurements are to the reference: bandwidth ours/perftest
(target >= 0.95), write latency p50 ours/perftest t_typical (target <= 1.10),
each the median of the paired ratios. The atomic pairs (8-byte fetch-and-add or
compare-and-swap, perftest's -A) compare operations per second (>= 0.95) and the
p50 of the whole round trip against ib_atomic_lat's t_typical (<= 1.10).

A bandwidth run lasts a duration by default (BW_DURATION_S measured seconds), so the
cross-check's length does not grow as the link slows down: perftest's own default,
5000 x 1 MiB, takes a second at 100 Gb/s and minutes on soft-RoCE.
"""

from __future__ import annotations

import math
import statistics
from typing import Callable

from .. import linerate
from ..errors import RdmabenchError
from ..results import context, row
from ..results.model import Result
from ..engines import tests
from . import perftest
from .client import Client, keepalive, run_local
from ..wire import Channel
from .options import RunOptions

BW_DURATION_S = 5  # measured seconds per bandwidth run (perftest runs 2 x perftest.MARGIN_S longer)
BW_WARMUP = 128  # our runs' unmeasured messages first (one queue depth), as perftest's margin is unmeasured
SIGNAL_BYTES = 1 << 20  # duration runs: a signaled completion at least every MiB moved (see bw_cq_mod)
BW_TARGET = 0.95
LAT_TARGET = 1.10
# Latency pairs of a cross-check by default. One 1000-round-trip run lasts ~20 ms: a snapshot of a machine whose
# latency switches between modes (one guest, rxe under TCG: ~9 and ~13 us, both tools alike, for tens of ms to
# seconds at a time; docs/write-lat-one-guest.md). Paired ratios then spread +-30 %, and a median of 3 pairs
# missed 1.10 about one time in six by chance alone. A latency pair costs about 10 s in one guest.
LAT_PAIRS = 9
# every pair the cross-check knows, in the order it runs them; kind "rate": judged by operations per second
PLAN = (("write_bw", "bw"), ("read_bw", "bw"), ("write_lat", "lat"), ("atomic_bw", "rate"), ("atomic_lat", "lat"))
# what runs without --tests: the verbs pairs. The atomic pairs are asked for (-t atomic_bw,atomic_lat): with 9
# latency pairs each, the default run with them took 11 min 20 s in the one-guest lab under TCG (boot included),
# past the 10 minutes the default must stay within; without them it is about 2.5 minutes shorter
DEFAULT_TESTS = ("write_bw", "read_bw", "write_lat")
# the figure compared, per kind of test and tool
FIGURE = {("bw", "perftest"): "bw_avg_MiBps", ("bw", "rdmabench"): "bw_avg_MiBps",
          ("rate", "perftest"): "ops_per_s", ("rate", "rdmabench"): "ops_per_s",
          ("lat", "perftest"): "t_typical_us", ("lat", "rdmabench"): "lat_p50_us"}


def _perftest_remote(host: str, port: int, test: str, size: int, iters: int, dev: str, gid: int,
                     duration: int | None = None, cq_mod: int = 100, atomic: str = "fetch_add") -> dict:
    chan = Channel.connect(host, port, "verbs", timeout=10, wait=5)
    try:
        chan.send("perftest", test=test, size=size, iters=iters,
                  **({"duration": duration, "cq_mod": cq_mod} if duration else {}),
                  **({"atomic": atomic} if tests.is_atomic(test) else {}))
        chan.recv(60, "perftest_ready")
        args = perftest.argv(test, dev, gid, size, iters, server=host, duration=duration, cq_mod=cq_mod,
                             atomic=atomic)
        try:
            with keepalive(chan):
                out = perftest.run_client(args, timeout=900)
        finally:
            chan.send("perftest_done")
            chan.recv(120, "perftest_result")
        chan.send("bye")
    finally:
        chan.close()
    return {**perftest.parse(test, out), "command": perftest.shown(args)}


def _perftest_local(test: str, size: int, iters: int, dev: str, gid: int, duration: int | None = None,
                    cq_mod: int = 100, atomic: str = "fetch_add") -> dict:
    server = perftest.start_server(perftest.argv(test, dev, gid, size, iters, duration=duration, cq_mod=cq_mod,
                                                 atomic=atomic))
    args = perftest.argv(test, dev, gid, size, iters, server="127.0.0.1", duration=duration, cq_mod=cq_mod,
                         atomic=atomic)
    try:
        out = perftest.run_client(args, timeout=900)
    finally:
        perftest.finish(server, 60)
    return {**perftest.parse(test, out), "command": perftest.shown(args)}


def bw_cq_mod(size: int, duration: int | None) -> int:
    """CQ moderation of a bandwidth pair: perftest's every 100th WR, or in a duration run at least every
    SIGNAL_BYTES. perftest counts a duration run's messages in steps of its moderation (cq_mod per signaled
    completion), so its figure is quantized to cq_mod x size bytes: at 1 MiB that is 100 MiB, a third of a
    5 s run on soft-RoCE (seen: 39.9 and 59.8 MiB/s from the same link). Both tools get the same value."""
    if not duration:
        return 100
    return max(1, min(100, SIGNAL_BYTES // size))


def _measure(what: str, fn: Callable[[], dict]) -> dict:
    """One measurement (a row); a value that is not a positive number (perftest prints 0.00, inf or -nan when
    a run misfires) is retried once."""
    for _ in (1, 2):
        r = fn()
        value = r["value"] or 0
        if math.isfinite(value) and value > 0:
            return r
    raise RdmabenchError(f"{what}: {r['metric']} was {r['value']!r} twice in a row: no figure to compare")


def run(device: str, peer: tuple[str, int] | None, sizes: list[int], lat_size: int = 2, repeat: int = 1,
        bw_iters: int | None = None, lat_iters: int = 1000, timeout_ms: int = 30000,
        progress: Callable[[str], None] = lambda m: None, only: list[str] | None = None,
        bw_duration: int | None = None, atomic: str = "fetch_add",
        lat_repeat: int | None = None) -> Result:
    """perftest and rdmabench on the same settings, as pairs run back to back.

    ``only``: the tests of PLAN to run, DEFAULT_TESTS when not given. A bandwidth run (atomic_bw included)
    measures ``bw_duration`` seconds (BW_DURATION_S when neither it nor ``bw_iters`` is given), or
    ``bw_iters`` messages; latency runs ``lat_iters`` round trips (perftest's duration mode reports only an
    average latency); ``lat_repeat`` pairs for each latency test (None: ``repeat``). The atomic pairs run ``atomic`` (fetch_add or cmp_swap) on 8 bytes, whatever the sizes.

    The order inside a pair alternates (perftest first in even repetitions, ours first in odd
    ones) so that whatever drifts in the machine -- page cache, another tenant, the emulator's
    translation cache -- weighs on both tools alike.
    """
    ctx = context.collect(device)
    gid = ctx["device"]["gid_index"]
    if gid is None:
        from .. import devices

        gid = devices.require(device).ports[0].recommended_gid_index
        ctx = context.collect(device, gid)
    if bw_iters and bw_duration:
        raise RdmabenchError("give the bandwidth runs iterations or a duration, not both")
    if not bw_iters and not bw_duration:
        bw_duration = BW_DURATION_S
    if atomic not in perftest.ATOMIC_TYPES:
        raise RdmabenchError(f"atomic operation {atomic!r}: use {' or '.join(perftest.ATOMIC_TYPES)}")
    chosen = [t for t, _ in PLAN if t in (only or DEFAULT_TESTS)]
    rows = []
    for test, kind in PLAN:
        if test not in chosen:
            continue
        is_atomic = tests.is_atomic(test)
        for size in ([tests.ATOMIC_SIZE] if is_atomic else sizes if kind == "bw" else [lat_size]):
            duration = bw_duration if kind != "lat" else None
            iters = 0 if duration else (lat_iters if kind == "lat" else bw_iters)
            cq_mod = bw_cq_mod(size, duration)
            op = {"atomic": atomic} if is_atomic else {}
            opts = (RunOptions(tests=[test], sizes=[size], duration=float(duration), warmup=BW_WARMUP,
                               cq_mod=cq_mod, gid_index=gid, **op) if duration
                    else RunOptions(tests=[test], sizes=[size], iters=iters, gid_index=gid, **op))
            measured = {"test": test, "op": atomic, "size": size} if is_atomic else {"test": test, "size": size}

            def reference(rep):
                figures = (_perftest_remote(*peer, test, size, iters, device, gid, duration, cq_mod, **op) if peer
                           else _perftest_local(test, size, iters, device, gid, duration, cq_mod, **op))
                key = FIGURE[kind, "perftest"]
                length = {"duration_s": duration, "cq_mod": cq_mod} if duration else {"iterations": iters}
                return row.make({"tool": "perftest", **measured}, key, figures.get(key) or 0,
                                repetition=rep, detail={**length, **figures})

            def ours(rep):
                r = (Client(opts, device, *peer, timeout_ms=timeout_ms).run() if peer
                     else run_local(opts, device, timeout_ms=timeout_ms)).rows[0]
                key = FIGURE[kind, "rdmabench"]  # the row's own figure, or one its detail keeps (ops_per_s)
                return row.make({"tool": "rdmabench", **r["measured"]}, key, row.figure(r, key) or 0,
                                repetition=rep, bytes=r["bytes"], seconds=r["seconds"], cpu=r["cpu"],
                                detail=r["detail"])

            named = f"{' ' + atomic if is_atomic else ''} {size} B"
            tools = {"perftest": (f"perftest {perftest.TOOLS[test]}{named}", reference),
                     "rdmabench": (f"rdmabench {test}{named}", ours)}
            for rep in range(repeat if kind != "lat" or lat_repeat is None else lat_repeat):
                pair = {}
                for tool in (("perftest", "rdmabench") if rep % 2 == 0 else ("rdmabench", "perftest")):
                    what, fn = tools[tool]
                    progress(what)
                    pair[tool] = _measure(what, lambda: fn(rep))
                rows += [pair["perftest"], pair["rdmabench"]]
    return Result(kind="crosscheck", context=ctx,
                  options={"device": device, "peer": f"{peer[0]}:{peer[1]}" if peer else "local", "sizes": sizes,
                           "lat_size": lat_size, "repeat": repeat, "gid_index": gid, "lat_iters": lat_iters,
                           "lat_repeat": repeat if lat_repeat is None else lat_repeat,
                           "bw_iters": bw_iters, "bw_duration_s": bw_duration,
                           "bw_warmup": BW_WARMUP if bw_duration else 0, "tests": chosen,
                           **({"atomic": atomic} if any(tests.is_atomic(t) for t in chosen) else {})},
                  rows=rows)


def ratios(result: Result) -> list[dict]:
    """One verdict per (test, size): the median over repetitions of the paired ratio ours/perftest.

    Each repetition is a pair run back to back, so its ratio cancels the slow drift that moves
    both tools; the median keeps one disturbed pair from deciding the verdict. The ratio of the
    two means is kept beside it.
    """
    out = []
    keys = sorted({(r["measured"]["test"], r["measured"]["size"]) for r in result.rows},
                  key=lambda k: ([t for t, _ in PLAN].index(k[0]), k[1]))
    for test, size in keys:
        pairs = {}
        for r in result.rows:
            m = r["measured"]
            if (m["test"], m["size"]) == (test, size):
                pairs.setdefault(r["repetition"], {})[m["tool"]] = r
        pairs = [p for _, p in sorted(pairs.items()) if "perftest" in p and "rdmabench" in p]
        if not pairs:
            continue
        kind = dict(PLAN)[test]
        ref = [row.figure(p["perftest"], FIGURE[kind, "perftest"]) for p in pairs]
        ours = [row.figure(p["rdmabench"], FIGURE[kind, "rdmabench"]) for p in pairs]
        what, target = MEASURES[kind]
        paired = [b / a for a, b in zip(ref, ours)]
        ratio = statistics.median(paired)
        ok = ratio <= LAT_TARGET if kind == "lat" else ratio >= BW_TARGET
        op = pairs[0]["rdmabench"]["measured"].get("op")
        out.append({"test": test, **({"op": op} if op else {}), "size": size, "measure": what,
                    "perftest": statistics.median(ref),
                    "rdmabench": statistics.median(ours), "ratio": ratio, "paired_ratios": paired,
                    "ratio_of_means": statistics.fmean(ours) / statistics.fmean(ref),
                    "target": target, "meets_target": ok, "repetitions": len(pairs),
                    "share_of_line_rate": _shares(pairs, ref, ours) if kind == "bw" else None})
    if not out:
        raise RdmabenchError("the cross-check produced no pairs")
    return out


MEASURES = {"bw": ("BW average MiB/s (ours / perftest)", f">= {BW_TARGET}"),
            "rate": ("operations per second (ours / perftest)", f">= {BW_TARGET}"),
            "lat": ("latency p50 us (ours / perftest t_typical)", f"<= {LAT_TARGET}")}


def _shares(pairs: list[dict], ref: list[float], ours: list[float]) -> dict | None:
    """Each tool's median BW average over the path's limit (our rows carry it: linerate.path)."""
    line = pairs[0]["rdmabench"]["detail"].get("line_rate")
    gbps = lambda mib: mib * (1 << 20) * 8 / 1e9  # noqa: E731
    out = {t: linerate.share(gbps(statistics.median(v)), line) for t, v in (("perftest", ref), ("rdmabench", ours))}
    return out if line and line.get("limit_gbps") else None


def _line_cell(r: dict) -> str:
    s = r.get("share_of_line_rate")
    return f"{s['perftest'] * 100:.1f}/{s['rdmabench'] * 100:.1f}" if s else "-"


def render(rows: list[dict]) -> str:
    head = (f"{'test':<10} {'size':>8} {'perftest':>12} {'rdmabench':>12} {'ratio':>7} {'means':>8} {'pairs':>5}"
            "  target   verdict  % of line (perftest/ours)")
    lines = [head]
    for r in rows:
        lines.append(f"{r['test']:<10} {r['size']:>8} {r['perftest']:>12.2f} {r['rdmabench']:>12.2f} "
                     f"{r['ratio']:>7.3f} {r['ratio_of_means']:>8.3f} {r['repetitions']:>5}  {r['target']:<7}  "
                     f"{'meets' if r['meets_target'] else 'MISSES':<7}  {_line_cell(r)}")
    if any(not r.get("op") for r in rows):
        lines.append("bandwidth: BW average in MiB/s; latency: p50 (perftest's t_typical) in us, half round trip;")
    ops = sorted({r["op"] for r in rows if r.get("op")})
    if ops:
        lines.append("atomic_bw: operations per second; atomic_lat: p50 (perftest's t_typical) in us, whole round "
                     "trip (post to completion);")
        lines.append(f"  both 8-byte {' and '.join(ops)} (perftest -A "
                     f"{' and '.join(perftest.ATOMIC_TYPES[o] for o in ops)});")
    lines.append("figures are medians over the pairs; ratio: median of the paired ratios ours/perftest, "
                 "the verdict's; means: ratio of the two tools' means")
    return "\n".join(lines)
