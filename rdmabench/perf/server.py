"""`rdmabench serve`: the far end of every verbs test, cross-check and sector transfer.

Serves clients one after another on the address it was told to listen on. Each new connection
must prove it holds the shared secret (rdmabench.auth) within a few seconds; that check runs in a
thread of its own, so a peer that connects and never speaks delays nobody. A client that dies
mid-test costs the server that test only; a malformed message (missing or wrong-typed field,
unknown type, broken JSON, an over-long line) is answered with an error and that connection is
closed. Either way the next client is served.
"""

from __future__ import annotations

import queue
import socket
import sys
import threading
from pathlib import Path
from array import array

from .. import auth, devices
from ..cpu import CpuMeter
from ..errors import RdmabenchError
from ..results import context
from ..wirecheck import BadMessage, Bool, Int, Num, Opt, Str, fields
from . import engine, perftest, tests
from ..transfer.agent import Agent
from .control import Channel

SETUP_WAIT_S = 120.0  # between tests a client may be computing and printing
MAX_PENDING = 32  # connections proving themselves at once; more are turned away
SETUP = {
    "v": Int(), "type": Str(), "test": Str(max_len=64), "size": Int(1, 1 << 40), "qps": Int(1, 1 << 16),
    "depth": Int(1, 1 << 20), "cq_mod": Int(1, 1 << 20), "mtu": Opt(Int(0, 1 << 16)), "iters": Int(0, 1 << 40),
    "duration": Opt(Num(0, 1e7)), "warmup": Int(0, 1 << 40), "bidir": Bool(), "validate": Bool(),
    "engine": Str(max_len=32), "connect": Str(choices=("oob", "cm")), "inline_size": Opt(Int(0, 1 << 20)),
    "slots": Opt(Int(0, 1 << 20)), "max_samples": Int(0, 1 << 32), "timeout_ms": Int(1, 1 << 31),
    "cm_port": Int(1, 65535), "cm_bind": Str(max_len=255),
}
PERFTEST = {"v": Int(), "type": Str(), "test": Str(max_len=64), "size": Int(1, 1 << 40), "iters": Int(1, 1 << 40)}


def jsonable(raw: dict) -> dict:
    return {k: (list(v) if isinstance(v, (array, bytes, memoryview, list, tuple)) and not isinstance(v, str) else v)
            for k, v in raw.items()}


def endpoint_spec(setup: dict) -> dict:
    return {
        "qps": setup["qps"], "size": setup["size"], "depth": setup["depth"], "slots": setup.get("slots") or 0,
        "mtu": setup.get("mtu") or 0, "cq_mod": setup["cq_mod"], "inline_size": setup.get("inline_size") or 0,
    }


def run_kwargs(setup: dict, role: str) -> dict:
    return {
        "test": setup["test"], "role": role, "iters": setup["iters"], "duration_s": setup["duration"] or 0.0,
        "warmup": setup["warmup"], "bidir": setup["bidir"], "validate": setup["validate"],
        "max_samples": setup["max_samples"], "timeout_ms": int(setup["timeout_ms"]),
    }


class Server:
    def __init__(self, bind: str, port: int, device: str | None, gid_index: int | None, log=None,
                 root: str = "/tmp/rdmabench/serve"):
        self.bind, self.port = bind, port
        self.dev = devices.choose(device, required=False)  # none: it still serves http/shared/NFS transfers
        self.gid_index = None
        if self.dev:
            self.gid_index = gid_index if gid_index is not None else self.dev.ports[0].recommended_gid_index
        self.context = context.collect(self.dev.name if self.dev else None, self.gid_index)
        self.log = log or (lambda msg: print(f"rdmabench serve: {msg}", file=sys.stderr, flush=True))
        self.secret = auth.load_secret()  # no secret, no server: said before anything listens
        try:
            self.listener = socket.create_server((bind, port), reuse_port=False)
        except OSError as err:
            raise RdmabenchError(f"cannot listen on {bind}:{port}: {err.strerror or err}") from None
        self.port = self.listener.getsockname()[1]
        self.agent = Agent(Path(root), bind, self.dev.name if self.dev else None, self.gid_index)  # sector transfers (run --config)

    def serve(self, max_clients: int | None = None) -> None:
        """Serve authenticated clients one at a time (``max_clients`` of them, or forever)."""
        ready: queue.Queue = queue.Queue()
        stop = threading.Event()
        threading.Thread(target=self._accept, args=(ready, stop), name="serve-accept", daemon=True).start()
        served = 0
        try:
            while max_clients is None or served < max_clients:
                chan = ready.get()
                served += 1
                self._serve_one(chan)
        finally:
            stop.set()

    def _accept(self, ready: queue.Queue, stop: threading.Event) -> None:
        pending = threading.BoundedSemaphore(MAX_PENDING)
        self.listener.settimeout(0.5)
        while not stop.is_set():
            try:
                sock, addr = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # the listener was closed
            if stop.is_set() or not pending.acquire(blocking=False):
                sock.close()
                continue
            threading.Thread(target=self._authenticate, args=(sock, f"{addr[0]}:{addr[1]}", ready, pending),
                             daemon=True).start()

    def _authenticate(self, sock, peer: str, ready: queue.Queue, pending: threading.BoundedSemaphore) -> None:
        try:
            sock.setblocking(True)
            ready.put(Channel.accept(sock, peer, self.secret))
        except (RdmabenchError, OSError, ValueError) as err:
            self.log(f"refused {peer}: {err}")
        finally:
            pending.release()

    def _serve_one(self, chan: Channel) -> None:
        self.log(f"client {chan.peer} connected")
        try:
            self.handle(chan)
            self.log(f"client {chan.peer} done")
        except Exception as err:  # one client, whatever it sent, never stops the server
            reason = str(err) if isinstance(err, RdmabenchError) else f"internal error: {type(err).__name__}: {err}"
            self.log(f"client {chan.peer} dropped: {reason}")
            if not isinstance(err, OSError) and not getattr(err, "peer_gone", False):
                try:
                    chan.send("error", message=f"rdmabench serve: {reason}; closing this connection")
                except (RdmabenchError, OSError):
                    pass
        finally:
            self.agent.close()  # a passive end a vanished client left running
            chan.close()

    def close(self) -> None:
        self.listener.close()

    def handle(self, chan: Channel) -> None:
        chan.recv(30, "hello")
        chan.send("hello", context=self.context, root=str(self.agent.root))
        while True:
            msg = chan.recv(SETUP_WAIT_S, ("setup", "perftest", "xfer", "bye"))
            if msg["type"] == "bye":
                return
            if msg["type"] == "xfer":
                self.agent.handle(chan, msg)
                continue
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
        """Start perftest's server side for a cross-check; its arguments are built here, from numbers."""
        try:
            self._need_device()
            args = perftest.argv(msg["test"], self.dev.name, self.gid_index, int(msg["size"]), int(msg["iters"]))
            proc = perftest.start_server(args)
        except (RdmabenchError, ValueError) as err:
            chan.send("error", message=str(err))
            return
        try:
            chan.send("perftest_ready", port=perftest.PERFTEST_PORT)
            chan.recv(SETUP_WAIT_S + 600, "perftest_done")
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
        spec = endpoint_spec(setup)
        if setup["connect"] == "cm":
            chan.send("ready", cm_port=setup["cm_port"], device=self.dev.name)
            ep = engine.cm_listen(setup["engine"], bind_ip=setup["cm_bind"], port=setup["cm_port"],
                                  timeout_ms=int(setup["timeout_ms"]), **spec)
            chan.send("connected")
            return ep
        ep = engine.open_endpoint(setup["engine"], device=self.dev.name, gid_index=self.gid_index, port=1, **spec)
        try:
            chan.send("ready", info=ep.local_info(), device=self.dev.name)
            remote = chan.recv(60, "connect")
            ep.connect(remote["info"])
            chan.send("connected")
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
        chan.recv(setup["timeout_ms"] / 1000 + (setup["duration"] or 0) + 60, "done")
        cpu = meter.stop(raw.get("bytes") or None)
        chan.send("result", raw=jsonable(raw), cpu=cpu)
        chan.recv(60, "teardown")
        chan.send("closed")
