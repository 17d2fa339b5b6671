"""`rdmabench run`: drive a server through the plan and keep both ends' figures.

For each (test, size, repetition): set up endpoints at both ends, connect them
(out-of-band over the control channel, or through rdma_cm), start together,
measure CPU at both ends, and turn the engines' raw records into one row.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Callable

from .. import devices, linerate, placement
from ..cpu import CpuMeter
from ..errors import RdmabenchError
from ..results import context, row
from ..results.model import Result
from ..engines import tests
from . import engine, far_end, metrics, preflight, table
from ..wire import Channel
from .options import RunOptions
from .server import endpoint_spec, jsonable, run_kwargs

CM_PORT = 18516


class Client:
    def __init__(self, options: RunOptions, device: str, peer: str, port: int, timeout_ms: int = 10000,
                 wait: float = 5.0, progress: Callable[[str], None] | None = None,
                 warn: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True),
                 live: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True),
                 dev: devices.Device | None = None):
        """``dev``: ``device`` as the caller has just described it (`run` has, choosing it): described once
        per process, not three times (devices.describe: ~1.7 s under the lab's emulation)."""
        self.o = options
        self.dev = dev if dev is not None and dev.name == device else devices.require(device)
        self.gid_index = options.gid_index if options.gid_index is not None else self.dev.ports[0].recommended_gid_index
        self.peer, self.port = peer, port
        self.timeout_ms = timeout_ms
        self.cm_addr = peer  # where the server binds its rdma_cm listener: the address we reach it at
        self.far: dict = {}  # the server's "connected" message: its QP's knobs and its placement
        self.wait = wait
        self.progress = progress or (lambda msg: None)
        self.live = live  # --interval's lines
        self.line: dict | None = None  # the path's physical limit, once the server's context is known
        preflight.check(options, self.dev, both_ends_here=peer in ("127.0.0.1", "localhost"), warn=warn)
        self.place = placement.plan(self.dev.name, options.cpu, options.numa)
        self.context = context.collect(self.dev.name, self.gid_index, dev=self.dev)

    def run(self) -> Result:
        chan = Channel.connect(self.peer, self.port, "verbs", timeout=10, wait=self.wait)
        try:
            peer_ctx = chan.greeting["context"]
            result = Result(kind="verbs", context=self.context, peer_context=peer_ctx,
                            options={**self.o.to_dict(), "device": self.dev.name, "gid_index": self.gid_index,
                                     "peer": f"{self.peer}:{self.port}", "timeout_ms": self.timeout_ms,
                                     "placement": self.place.to_dict()})
            self.line = linerate.path((self.context.get("device") or {}).get("line_rate"),
                                      ((peer_ctx or {}).get("device") or {}).get("line_rate"))
            try:
                with placement.pinned(self.place):  # this thread runs the C loops
                    for test, size in self.o.plan():
                        for rep in range(self.o.repeat):
                            self.progress(f"{test} {size} B" + (f" repetition {rep + 1}/{self.o.repeat}"
                                                               if self.o.repeat > 1 else ""))
                            r = with_line_rate(self._one(chan, test, size, rep), self.line)
                            result.rows.append(r)
                            if r["detail"].get("interrupted"):
                                raise KeyboardInterrupt  # the run stopped cleanly at Ctrl-C: no further test
            except KeyboardInterrupt:
                result.options["interrupted"] = interrupted_note(result.rows)
                self.progress(f"interrupted: {result.options['interrupted']}")
                return result  # the far end sees the connection close and frees its side
            chan.send("bye")
            return result
        finally:
            chan.close()

    def _setup(self, test: str, size: int) -> dict:
        o = self.o
        return {
            "test": test, "size": size, "qps": o.qps, "depth": o.depth, "cq_mod": o.cq_mod, "mtu": o.mtu,
            "iters": o.iterations(test), "duration": o.duration, "warmup": o.warmup, "bidir": o.bidir,
            "validate": o.validate, "engine": o.engine, "connect": o.connect, "inline_size": o.inline_for(test, size),
            "slots": o.slots_for(test, size),
            "max_samples": o.max_samples, "timeout_ms": self.timeout_ms,
            "cm_port": CM_PORT, "cm_bind": self.cm_addr,
            "tclass": o.tclass, "sl": o.sl, "hugepages": o.hugepages, "atomic": o.atomic,
            "placement": "off" if self.place.mode == "off" else "nic",  # the server places itself on its own NIC's node
            "interval": o.interval, "until_stopped": o.until_stopped,
        }

    def _live(self, test: str, size: int) -> Callable[[dict], None] | None:
        """A line per window while the test runs, when --interval or --until-stopped asked for them."""
        if self.o.interval is None and not self.o.until_stopped:
            return None
        return lambda w: self.live(table.window_line(test, size, w, self.line))

    def _connect(self, chan: Channel, setup: dict):
        ready = chan.recv(60, "ready")
        spec = {**endpoint_spec(setup), "numa_node": self.place.endpoint_node}
        if setup["connect"] == "cm":
            ep = engine.cm_connect(setup["engine"], peer_ip=self.cm_addr, port=ready["cm_port"],
                                   timeout_ms=self.timeout_ms, **spec)
            try:
                self.far = chan.recv(60, "connected")
            except BaseException:
                ep.close()
                raise
            return ep
        ep = engine.open_endpoint(setup["engine"], device=self.dev.name, gid_index=self.gid_index, port=1, **spec)
        try:
            ep.connect(ready["info"])
            chan.send("connect", info=ep.local_info())
            self.far = chan.recv(60, "connected")
        except BaseException:
            ep.close()
            raise
        return ep

    def _one(self, chan: Channel, test: str, size: int, rep: int) -> dict:
        setup = self._setup(test, size)
        chan.send("setup", **setup)
        ep = self._connect(chan, setup)
        knobs = ep.knobs() if hasattr(ep, "knobs") else None
        setup = {**setup, "registered_bytes": ep.registered_bytes, "outstanding_reads": ep.outstanding_reads,
                 "knobs": {"client": knobs, "server": self.far.get("knobs")},
                 "placement": {"client": placement.record(self.place, knobs), "server": self.far.get("placement")}}
        try:
            chan.send("go")
            chan.recv(60, "started")
            meter = CpuMeter()
            with keepalive(chan):
                raw = ep.run(**run_kwargs(setup, "client", self._live(test, size)))
            cpu = meter.stop(raw.get("bytes") or None)
            chan.send("done")
            server = chan.recv(self.timeout_ms / 1000 + 60, "result")
        finally:
            ep.close()
        chan.send("teardown")
        chan.recv(60, "closed")
        return make_row(test, size, rep, setup, jsonable(raw), cpu, server["raw"], server["cpu"])


def interrupted_note(rows: list[dict]) -> str:
    """What a Ctrl-C left in the result: how many rows, and whether the last one ran to a clean stop."""
    clean = bool(rows) and rows[-1]["detail"].get("interrupted")
    return (f"stopped by Ctrl-C after {len(rows)} row(s); "
            + ("the last one was ended cleanly at the Ctrl-C and covers the run until then" if clean
               else "the test running then was abandoned and has no row"))


def keepalive(chan: Channel):
    """While a run goes on here, tell the server so every keepalive_s its hello asked for (an older server
    asks for nothing: then nothing is sent)."""
    every = chan.greeting.get("keepalive_s")
    return chan.keepalive("running", float(every)) if every else contextlib.nullcontext()


def make_row(test: str, size: int, rep: int, setup: dict, raw: dict, cpu: dict, sraw: dict, scpu: dict) -> dict:
    kind = tests.get(test)
    d = {"qps": setup["qps"], "engine": setup["engine"], "connect": setup["connect"], "bidir": setup["bidir"],
         "iterations": setup["iters"], "duration_s": setup["duration"], "registered_bytes": setup.get("registered_bytes")}
    if test.startswith("read_"):  # READs the client's QP keeps in flight (crosscheck gives perftest the same -o)
        d["outstanding_reads"] = setup.get("outstanding_reads")
    d.update(knob_detail(setup))
    corrupt = (raw.get("corrupt") or 0) + (sraw.get("corrupt") or 0)
    if kind.op == "atomic":
        d.update(atomic_detail(test, raw))
    if setup["validate"] or kind.op == "atomic":
        d["validated"] = (raw.get("validated") or 0) + (sraw.get("validated") or 0)
        d["corrupt"] = corrupt
    if corrupt:
        raise RdmabenchError(f"{test} {size} B: {corrupt} payloads arrived corrupt "
                             f"(first bad sequence {raw.get('first_corrupt_seq', sraw.get('first_corrupt_seq'))})")
    seconds = None
    if kind.latency:
        hist = raw.get("lat_hist")
        if raw.get("samples_truncated") and hist:  # a long run: percentiles over every sample, not the first N
            d.update(metrics.latency_from_histogram(hist["ns"], hist["count"], raw.get("sample", "")))
        else:
            d.update(metrics.latency(raw["samples_ns"], raw.get("sample", "")))
            d["percentiles_from"] = "every sample"
        d["samples_us"] = [v / 1000 for v in raw["samples_ns"]]
        d["samples_truncated"] = bool(raw.get("samples_truncated"))
        moved = raw.get("bytes") or 0
    else:
        d.update(metrics.bandwidth(raw["bytes"], raw["ops"], raw["t_start_ns"], raw["t_end_ns"]))
        moved, seconds = d.pop("bytes"), d.pop("seconds")
        if kind.op == "atomic":
            d["ops_per_s"] = d["ops"] / seconds
        if setup["bidir"] and sraw.get("bytes"):
            # each end timed its own direction on its own clock: the total is the sum of the two rates
            back = metrics.bandwidth(sraw["bytes"], sraw["ops"], sraw["t_start_ns"], sraw["t_end_ns"])
            moved += sraw["bytes"]
            d["bw_avg_MiBps_each_way"] = [d["bw_avg_MiBps"], back["bw_avg_MiBps"]]
            for key in ("bw_avg_MiBps", "bw_avg_Gbps", "msg_rate_Mpps"):
                d[key] += back[key]
        d["completions"] = {  # raw: signaled completions, ns since the first post, and ops done by then
            "t_ns": [t - raw["t_start_ns"] for t in raw.get("completions_ns") or []],
            "ops": list(raw.get("completions_ops") or []),
            "truncated": bool(raw.get("samples_truncated")),
        }
        peak = metrics.best_window(raw.get("completions_ns") or [], raw.get("completions_ops") or [], size,
                                   raw["t_start_ns"])
        if peak and setup["bidir"]:
            # the average counts both directions: so must the best window, or it reads below the average
            back = metrics.best_window(sraw.get("completions_ns") or [], sraw.get("completions_ops") or [], size,
                                       sraw.get("t_start_ns", 0)) if sraw.get("bytes") else None
            if back:
                peak["bw_best_window_MiBps_each_way"] = [peak["bw_best_window_MiBps"], back["bw_best_window_MiBps"]]
                peak["bw_best_window_MiBps"] += back["bw_best_window_MiBps"]
            else:
                peak = None  # the far end kept no completion times: no two-way figure to give
        if peak:
            d.update(peak)
    if raw.get("windows") is not None:
        d.update(metrics.windows(raw["windows"], size))
        d["window_interval_s"] = raw.get("interval_s")
        if setup["bidir"]:
            d["windows_direction"] = "client to server only (each end keeps its own)"
    if setup.get("until_stopped"):
        d["until_stopped"] = True
    if raw.get("interrupted"):
        d["interrupted"] = True  # ended by Ctrl-C, cleanly: every figure covers what ran until then
    metric = "lat_p50_us" if kind.latency else "bw_avg_MiBps"
    measured = {"test": test, "op": setup.get("atomic") or "fetch_add", "size": size} if kind.op == "atomic" else \
        {"test": test, "size": size}
    return row.make(measured, metric, d[metric], repetition=rep, bytes=moved or None,
                    seconds=seconds, cpu={"client": cpu, "server": scpu}, detail=d)


def knob_detail(setup: dict) -> dict:
    """The RoCE knobs a row ran with: asked for, and what each end's QP 0 and buffer held (ep.knobs())."""
    knobs = setup.get("knobs") or {}
    held = {side: {k: (knobs.get(side) or {}).get(k) for k in ("qp_traffic_class", "qp_sl", "memory_node",
                                                                  "hugepages", "atomic_cap")}
            for side in ("client", "server") if knobs.get(side)}
    out = {"tclass": setup.get("tclass") or 0, "sl": setup.get("sl") or 0, "hugepages": bool(setup.get("hugepages")),
           "qp": held, "placement": setup.get("placement")}
    notes = [f"the {side}'s device reports {name} {h[key]} on its QP, not the {out[want]} set"
             for side, h in held.items() for key, want, name in (("qp_traffic_class", "tclass", "traffic class"),
                                                                  ("qp_sl", "sl", "SL"))
             if h.get(key) is not None and h[key] != out[want]]
    if notes:  # e.g. soft-RoCE keeps no SL in its address vectors
        out["qp_notes"] = notes
    return out


def atomic_detail(test: str, raw: dict) -> dict:
    """An atomic run's own figures; a wrong remote counter fails the row as a corrupt payload does."""
    if raw.get("counters_bad"):
        raise RdmabenchError(f"{test} {raw.get('atomic')}: {raw['counters_bad']} remote counter(s) read back "
                             "different from the operations done")
    return {"atomic": raw.get("atomic"), "atomic_depth": raw.get("atomic_depth"),
            "atomic_signal_every": raw.get("atomic_signal_every"), "reply_byte_order": raw.get("reply_byte_order"),
            "counters_checked": raw.get("counters_ok")}


def with_line_rate(r: dict, line: dict | None) -> dict:
    """A bandwidth row gets the path's physical limit (linerate.path: both ends') and the share of it reached."""
    if r["metric"] == "bw_avg_MiBps":
        d = r["detail"]
        d["line_rate"] = line
        d["share_of_line_rate"] = linerate.share(d.get("bw_avg_Gbps"), line, bool(d.get("bidir")))
    return r


def run_local(options: RunOptions, device: str, **kw) -> Result:
    """No --peer: a far end on this host's loopback, both endpoints on the same device (labelled as such).

    The far end is a process of its own (far_end.start), as perftest's server is: as a thread of this
    process, both ends' per-process CPU read this one process, each counting the other end's loop."""
    # the Client first: its preflight refuses what the device cannot do before anything starts, the far end
    # included (a Python start and a context collection: seconds under the lab's emulation); its port after
    client = Client(options, device, "127.0.0.1", 0, **kw)
    gid = next((g for g in client.dev.ports[0].gids if g.index == client.gid_index), None)
    if options.connect == "cm":
        if not (gid and gid.ipv4):
            raise RdmabenchError(f"rdma_cm needs an IPv4 address on {device}'s GID {client.gid_index}")
        client.cm_addr = gid.ipv4  # rdma_cm cannot use 127.0.0.1 with RoCE
    far = far_end.start(client.dev.name, client.gid_index)
    try:
        client.port = far.port
        result = client.run()
    except RdmabenchError as err:
        dropped = far.dropped()  # the far end's reason, shown when the run fails (no serve output to read here)
        if dropped:
            raise RdmabenchError(f"{err} (the far end, process {far.pid}: {dropped})") from err
        raise
    finally:
        far.close()
    result.options["peer"] = "local (both endpoints on this host, the far end a process of its own)"
    return result
