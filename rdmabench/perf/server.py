"""The verbs service of `rdmabench serve`: the far end of every verbs test and perftest cross-check.

One measurement at a time: a second client waits for the first to finish (two tests sharing a
device would measure each other). A malformed message (missing or wrong-typed field, unknown type)
raises BadMessage, which the daemon (rdmabench.wire.Server) answers with an error before it closes
that connection; the next client is served either way.
"""

from __future__ import annotations

import math
import threading
from array import array

from ..cpu import CpuMeter
from ..errors import RdmabenchError
from ..wire import Channel
from ..wirecheck import Bool, Int, Num, Opt, Str, fields
from ..engines import tests
from . import engine, perftest
from .. import placement

SETUP_WAIT_S = 120.0  # between tests a client may be computing and printing
# A client running a test (ours or perftest) says "running" every KEEPALIVE_S (the hello tells it to), so the
# far end waits for its "done" as long as the run lasts, however long that is, and gives up only after a
# silence of timeout_ms + QUIET_S: a bound on the run's length closed this end's QPs under slow but healthy
# runs (5000 x 1 MiB under emulation), and rxe retries a vanished peer forever: the client stalled.
KEEPALIVE_S = 5.0
QUIET_S = 60.0
SETUP = {
    "v": Int(), "type": Str(), "test": Str(max_len=64), "size": Int(1, 1 << 40), "qps": Int(1, 1 << 16),
    "depth": Int(1, 1 << 20), "cq_mod": Int(1, 1 << 20), "mtu": Opt(Int(0, 1 << 16)), "iters": Int(0, 1 << 40),
    "duration": Opt(Num(0, 1e7)), "warmup": Int(0, 1 << 40), "bidir": Bool(), "validate": Bool(),
    "engine": Str(max_len=32), "connect": Str(choices=("oob", "cm")), "inline_size": Opt(Int(0, 1 << 20)),
    "slots": Opt(Int(0, 1 << 20)), "max_samples": Int(0, 1 << 32), "timeout_ms": Int(1, 1 << 31),
    "cm_port": Int(1, 65535), "cm_bind": Str(max_len=255),
    # RoCE knobs (absent from an older client: the defaults)
    "tclass": Opt(Int(0, 255)), "sl": Opt(Int(0, 15)), "hugepages": Opt(Bool()),
    "placement": Opt(Str(choices=("nic", "off"))), "atomic": Opt(Str(choices=tests.ATOMIC_OPS)),
    # windows, and a run until the client's Ctrl-C (absent from an older client: 1 s windows, no)
    "interval": Opt(Num(0.01, 86400)), "until_stopped": Opt(Bool()),
}
WINDOW_S = 1.0  # a run's windows when the client gives no --interval
PERFTEST = {"v": Int(), "type": Str(), "test": Str(max_len=64), "size": Int(1, 1 << 40), "iters": Int(0, 1 << 40),
            "duration": Opt(Int(1, 3600)), "cq_mod": Opt(Int(1, 1 << 16)),
            # the atomic tests' operation, one of a fixed set; perftest.argv maps it to -A through its own table
            "atomic": Opt(Str(choices=tests.ATOMIC_OPS))}


def jsonable(raw: dict) -> dict:
    """An engine's record for the wire and the result file: arrays as lists, and a run until stopped's
    duration_s (inf) as None (JSON has no infinity)."""
    def one(v):
        if isinstance(v, (array, bytes, memoryview, list, tuple)):
            return list(v)
        if isinstance(v, dict):
            return jsonable(v)
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v
    return {k: one(v) for k, v in raw.items()}


def endpoint_spec(setup: dict) -> dict:
    return {
        "qps": setup["qps"], "size": setup["size"], "depth": setup["depth"], "slots": setup.get("slots") or 0,
        "mtu": setup.get("mtu") or 0, "cq_mod": setup["cq_mod"], "inline_size": setup.get("inline_size") or 0,
        "tclass": setup.get("tclass") or 0, "sl": setup.get("sl") or 0, "hugepages": bool(setup.get("hugepages")),
    }


def run_kwargs(setup: dict, role: str, on_window=None) -> dict:
    """ep.run's arguments. A run until stopped is a duration run of infinite length: it ends, as a timed run
    does at its end, when the client's tick asks it to (Ctrl-C). Windows are the native engine's."""
    until_stopped = bool(setup.get("until_stopped"))
    kw = {
        "test": setup["test"], "role": role, "iters": setup["iters"],
        "duration_s": float("inf") if until_stopped else setup["duration"] or 0.0,
        "warmup": setup["warmup"], "bidir": setup["bidir"], "validate": setup["validate"],
        "max_samples": setup["max_samples"], "timeout_ms": int(setup["timeout_ms"]),
        **({"atomic": setup.get("atomic") or "fetch_add"} if tests.is_atomic(setup["test"]) else {}),
    }
    if setup.get("engine", "native") == "native":
        kw.update(interval_s=float(setup.get("interval") or WINDOW_S), on_window=on_window)
    return kw


def _knobs(ep, place, setup: dict) -> dict:
    """The far end's QP and placement, for the client's record; refuses atomics its device cannot do."""
    knobs = ep.knobs() if hasattr(ep, "knobs") else None
    if knobs and tests.is_atomic(setup["test"]) and knobs.get("atomic_cap") == "none":
        ep.close()
        raise RdmabenchError(f"{ep.device} at the server reports no atomic operations (atomic_cap none): "
                             "it cannot answer the atomic tests")
    return {"knobs": knobs, "placement": placement.record(place, knobs)}


class VerbsService:
    """``handle`` serves one client's tests on ``dev`` (a devices.Device, or None: then it says so)."""

    def __init__(self, dev, gid_index: int | None, bind: str):
        self.dev, self.gid_index, self.bind = dev, gid_index, bind
        self._one_at_a_time = threading.Lock()

    @staticmethod
    def greeting() -> dict:
        """What the hello tells a client besides the context: how often to say it is still running."""
        return {"keepalive_s": KEEPALIVE_S}

    def handle(self, chan: Channel, hello: dict) -> None:
        with self._one_at_a_time:
            self._session(chan)

    def _session(self, chan: Channel) -> None:
        while True:
            msg = chan.recv(SETUP_WAIT_S, ("setup", "perftest", "bye"))
            if msg["type"] == "bye":
                return
            if msg["type"] == "perftest":
                self._perftest(chan, fields(msg, PERFTEST, "perftest"))
                continue
            msg = fields(msg, SETUP, "setup")
            try:
                ep = self._open(chan, msg)
            except (RdmabenchError, ValueError) as err:
                chan.send("error", message=str(err))
                continue
            try:
                self._one_test(chan, msg, ep)
            finally:
                ep.close()

    def _perftest(self, chan: Channel, msg: dict) -> None:
        """Start perftest's server side for a cross-check; its arguments are built here, from numbers and a
        fixed choice of atomic operation (the client's test name only picks an entry of perftest.TOOLS)."""
        try:
            self._need_device()
            args = perftest.argv(msg["test"], self.dev.name, self.gid_index, int(msg["size"]), int(msg["iters"]),
                                 duration=msg.get("duration"), cq_mod=msg.get("cq_mod") or 100,
                                 atomic=msg.get("atomic") or "fetch_add")
            proc = perftest.start_server(args)
        except (RdmabenchError, ValueError) as err:
            chan.send("error", message=str(err))
            return
        try:
            chan.send("perftest_ready", port=perftest.PERFTEST_PORT)
            chan.recv_after("running", SETUP_WAIT_S + 600, "perftest_done")
            code, out = perftest.finish(proc, 60)
            chan.send("perftest_result", code=code, output=out)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def _need_device(self) -> None:
        if self.dev is None:
            raise RdmabenchError(f"the server at {self.bind} has no RDMA device: it serves sector transfers only")

    def _open(self, chan: Channel, setup: dict):
        self._need_device()
        tests.get(setup["test"])
        max_msg = self.dev.ports[0].max_msg_sz
        if max_msg and setup["size"] > max_msg:
            raise RdmabenchError(f"size {setup['size']} is above {self.dev.name}'s maximum message size {max_msg}")
        place = placement.plan(self.dev.name, numa=setup.get("placement") != "off")  # this end's own NIC's node
        placement.pin_thread(place)  # this connection's thread runs the loops; it ends with the connection
        spec = {**endpoint_spec(setup), "numa_node": place.endpoint_node}
        if setup["connect"] == "cm":
            chan.send("ready", cm_port=setup["cm_port"], device=self.dev.name)
            ep = engine.cm_listen(setup["engine"], bind_ip=setup["cm_bind"], port=setup["cm_port"],
                                  timeout_ms=int(setup["timeout_ms"]), **spec)
            chan.send("connected", **_knobs(ep, place, setup))
            return ep
        ep = engine.open_endpoint(setup["engine"], device=self.dev.name, gid_index=self.gid_index, port=1, **spec)
        try:
            chan.send("ready", info=ep.local_info(), device=self.dev.name)
            remote = chan.recv(60, "connect")
            ep.connect(remote["info"])
            chan.send("connected", **_knobs(ep, place, setup))
        except BaseException:
            ep.close()
            raise
        return ep

    def _one_test(self, chan: Channel, setup: dict, ep) -> None:
        chan.recv(60, "go")
        meter = CpuMeter()
        raw = {"passive": True}
        if setup["test"].startswith("read") and setup["validate"]:
            raw = ep.run(**run_kwargs(setup, "server"))  # fills the slots the client will read, returns at once
            chan.send("started")
        elif tests.server_active(setup["test"], setup["validate"], setup["bidir"]):
            chan.send("started")  # receives are already posted; ping-pongs handshake inside the engine
            raw = ep.run(**run_kwargs(setup, "server"))
        else:
            chan.send("started")
        # each wait is bounded: the client says "running" every KEEPALIVE_S however long the run lasts
        chan.recv_after("running", setup["timeout_ms"] / 1000 + (setup["duration"] or 0) + QUIET_S, "done")
        cpu = meter.stop(raw.get("bytes") or None)
        chan.send("result", raw=jsonable(raw), cpu=cpu)
        chan.recv(60, "teardown")
        chan.send("closed")
