"""A validated byte exchange between two hosts over pyverbs resources: the "verbs-peer" service.

`rdmabench serve` on the storage host offers it (``PeerService``); for each client it registers a
buffer of the size the client asks for and answers control requests:

- ``verify {size, sha256}``: hash what is in its buffer, say whether it matches;
- ``fill {size, seed}``: write ``pattern(size, seed)`` into its buffer (for the client to READ);
- ``done``: goodbye.

The worker side calls ``check(peer_ip, port, size, mode, device, gid_index)``: it opens the service
on the daemon's port (rdmabench.wire: authenticated first), RDMA WRITEs a pattern into the server's
buffer, has the server confirm the bytes, RDMA READs them back into a second buffer and compares,
then has the server fill its buffer with a second pattern and RDMA READs and compares that too
(bytes produced on each side). ``mode="oob"``: QP info and requests travel on the service's channel.
``mode="cm"``: the service opens an rdma_cm listener on the ``cm_port`` the client names, for that
one client, and the requests travel over SEND/RECV, which open with the shared-secret handshake again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time

from rdmabench import auth
from rdmabench.errors import PeerUnavailable, RdmabenchError, VerbsError
from rdmabench.wire import DEFAULT_PORT, Channel
from rdmabench.verbs.resources import (Device, PeerInfo, RCEndpoint, SizeError, find_gid_for_ip, first_mismatch,
                                       poll)
from rdmabench.workloads.pattern import pattern

WRITE_SEED = 11
FILL_SEED = 23
DEFAULT_MAX_SIZE = 64 << 20
DEFAULT_CM_PORT = 7471
SERVICE = "verbs-peer"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- server


def _answer(msg: dict, read, write, size: int) -> tuple[dict, bool]:
    """One control request against the server's buffer -> (reply, finished)."""
    op = msg.get("op")
    n = int(msg.get("size", 0))
    if op in ("verify", "fill") and not 0 < n <= size:
        return {"op": "error", "error": f"size {n} is outside the 1..{size} B buffer"}, False
    if op == "verify":
        got = _sha(read(n))
        return {"op": "verified", "ok": got == msg.get("sha256"), "sha256": got, "size": n}, False
    if op == "fill":
        data = pattern(n, int(msg.get("seed", FILL_SEED)))
        write(data)
        return {"op": "filled", "sha256": _sha(data), "size": n}, False
    if op == "done":
        return {"op": "bye"}, True
    return {"op": "error", "error": f"unknown op {op!r}"}, False


def _serve_cm_one(listener, max_size: int, op_timeout_s: float, secret: bytes) -> dict:
    conn = listener.accept(timeout_s=op_timeout_s, max_size=max_size, op_timeout_s=op_timeout_s)
    record = {"mode": "cm", "size": conn.size, "device": conn.device_name, "requests": []}
    with conn:
        auth.serve_handshake(lambda m: conn.send_ctrl(m, op_timeout_s), lambda: conn.recv_ctrl(auth.WAIT_S),
                             secret, conn.where)
        while True:
            msg = conn.recv_ctrl(op_timeout_s)
            reply, finished = _answer(msg, lambda n: conn.read(n), lambda d: conn.write(d), conn.size)
            record["requests"].append({"op": msg.get("op"), **{k: v for k, v in reply.items() if k != "op"}})
            conn.send_ctrl(reply, op_timeout_s)
            if finished:
                break
        conn.wait_disconnect(min(op_timeout_s, 5.0))
    return record


def _serve_oob_one(chan: Channel, device: Device, max_size: int, op_timeout_s: float) -> dict:
    msg = chan.recv(op_timeout_s)
    if msg.get("op") != "connect":
        raise VerbsError(f"{chan.peer} opened with {msg.get('op')!r}, expected 'connect'")
    size = msg.get("size")
    if not isinstance(size, int) or not 0 < size <= max_size:
        raise SizeError(f"{chan.peer} asked for a buffer of {str(size)[:32]} B (1..{max_size})")
    remote = PeerInfo.from_dict(msg.get("info") or {})
    record = {"mode": "oob", "size": size, "device": device.name, "requests": []}
    with RCEndpoint(device, size) as ep:
        ep.connect(remote)  # to RTS before the client may send
        chan.send_msg({"op": "accept", "info": ep.info().to_dict()})
        while True:
            msg = chan.recv(op_timeout_s)
            reply, finished = _answer(msg, lambda n: ep.buffer.read(n), lambda d: ep.buffer.write(d), size)
            record["requests"].append({"op": msg.get("op"), **{k: v for k, v in reply.items() if k != "op"}})
            chan.send_msg(reply)
            if finished:
                break
    return record


class PeerService:
    """The "verbs-peer" service: one validated exchange per connection, on the device that holds ``bind_ip``."""

    def __init__(self, bind_ip: str, device: str | None = None, gid_index: int | None = None,
                 max_size: int = DEFAULT_MAX_SIZE, op_timeout_s: float = 15.0, log=None):
        self.bind_ip, self.device, self.gid_index = bind_ip, device, gid_index
        self.max_size, self.op_timeout_s = max_size, op_timeout_s
        self.log = log or (lambda rec: None)
        self.served: list[dict] = []

    def handle(self, chan: Channel, hello: dict) -> None:
        mode = hello.get("mode")
        if mode not in ("oob", "cm"):
            raise VerbsError(f"mode must be oob or cm, not {str(mode)[:16]!r}")
        t0 = time.monotonic()
        try:
            rec = self._cm(chan, hello) if mode == "cm" else self._oob(chan)
            rec["ok"] = not any(r["op"] == "error" or not r.get("ok", True) for r in rec["requests"])
        except Exception as exc:
            rec = {"mode": mode, "ok": False, "error": str(exc)}
            raise
        finally:
            rec["seconds"] = round(time.monotonic() - t0, 3)
            self.served.append(rec)
            self.log(rec)

    def _oob(self, chan: Channel) -> dict:
        device, gid_index = self.device, self.gid_index
        if device is None or gid_index is None:
            found_dev, found_idx = find_gid_for_ip(self.bind_ip)
            device, gid_index = device or found_dev, found_idx if gid_index is None else gid_index
        with Device(device, gid_index=gid_index) as dev:
            return _serve_oob_one(chan, dev, self.max_size, self.op_timeout_s)

    def _cm(self, chan: Channel, hello: dict) -> dict:
        from rdmabench.verbs.cm import CMListener

        port = hello.get("cm_port")
        if not isinstance(port, int) or not 0 < port < 65536:
            raise VerbsError(f"cm_port must be a port number, not {str(port)[:16]!r}")
        with CMListener(self.bind_ip, port) as listener:
            chan.send("listening", cm_port=port)
            return _serve_cm_one(listener, self.max_size, self.op_timeout_s, auth.load_secret())


# --------------------------------------------------------------------------- client


def _verify_sequence(size: int, write_and_wait, read_and_wait, local_read, local_write, request) -> dict:
    """The check itself, the same for both modes; the callables hide cm vs oob."""
    out: dict = {}
    want = pattern(size, WRITE_SEED)
    local_write(want, 0)
    local_write(bytes(size), 1)
    out["write_us"] = round(write_and_wait() * 1e6, 3)
    reply = request({"op": "verify", "size": size, "sha256": _sha(want)})
    out["server_verified"] = bool(reply.get("ok"))
    out["read_us"] = round(read_and_wait() * 1e6, 3)
    got = local_read(size, 1)
    bad = first_mismatch(got, want)
    out["write_verified"] = out["server_verified"] and bad is None  # server saw it, and it reads back
    out["readback_verified"] = bad is None
    if bad is not None:
        out["readback_first_mismatch"] = bad
    reply = request({"op": "fill", "size": size, "seed": FILL_SEED})
    want = pattern(size, FILL_SEED)
    if reply.get("sha256") != _sha(want):
        raise VerbsError(f"server filled a different pattern ({reply})")
    read_and_wait()
    bad = first_mismatch(local_read(size, 1), want)
    out["read_verified"] = bad is None
    if bad is not None:
        out["read_first_mismatch"] = bad
    request({"op": "done"})
    return out


def _timed(post, cq, timeout_s):
    def run() -> float:
        t0 = time.perf_counter()
        post()
        poll(cq, 1, timeout_s)
        return time.perf_counter() - t0
    return run


def _check_cm(peer_ip, port, cm_port, size, timeout_s, src_ip, secret) -> dict:
    from rdmabench.verbs.cm import CMClient

    with Channel.connect(peer_ip, port, SERVICE, timeout=timeout_s, secret=secret, mode="cm", cm_port=cm_port) as chan, \
            CMClient(peer_ip, chan.recv(timeout_s, "listening")["cm_port"], size, timeout_s=timeout_s, src_ip=src_ip,
                     buffers=2) as cl:
        remote = cl.remote
        auth.client_handshake(lambda m: cl.send_ctrl(m, timeout_s), lambda: cl.recv_ctrl(auth.WAIT_S + timeout_s),
                              secret, cl.where)

        def request(msg):
            cl.send_ctrl(msg, timeout_s)
            return cl.recv_ctrl(timeout_s)

        out = _verify_sequence(
            size,
            _timed(lambda: cl.post_write(remote, size, buf=0), cl.send_cq, timeout_s),
            _timed(lambda: cl.post_read(remote, size, buf=1), cl.send_cq, timeout_s),
            lambda n, buf: cl.read(n, buf=buf),
            lambda data, buf: cl.write(data, buf=buf),
            request)
        out["device"] = cl.device_name
        cl.disconnect()
    return out


def _check_oob(peer_ip, port, size, device, gid_index, timeout_s, secret) -> dict:
    with Channel.connect(peer_ip, port, SERVICE, timeout=timeout_s, secret=secret, mode="oob") as chan:
        if device is None or gid_index is None:
            local_ip = chan.sock.getsockname()[0]
            found_dev, found_idx = find_gid_for_ip(local_ip)
            device = device or found_dev
            gid_index = found_idx if gid_index is None else gid_index
        with Device(device, gid_index=gid_index) as dev:
            dev.check_size(size)
            with RCEndpoint(dev, size) as a, RCEndpoint(dev, size) as b:
                # ``a`` is connected to the server; ``b`` only lends its buffer as the READ target
                chan.send_msg({"op": "connect", "size": size, "info": a.info().to_dict()})
                reply = chan.recv(timeout_s)
                if reply.get("op") != "accept":
                    raise VerbsError(f"{peer_ip}:{port} refused: {reply.get('error', reply)}")
                remote = PeerInfo.from_dict(reply["info"])
                a.connect(remote)
                bufs = (a.buffer, b.buffer)

                def request(msg):
                    chan.send_msg(msg)
                    return chan.recv(timeout_s)

                out = _verify_sequence(
                    size,
                    _timed(lambda: a.qp.post_write(a.buffer, remote, size), a.cq, timeout_s),
                    _timed(lambda: a.qp.post_read(b.buffer, remote, size), a.cq, timeout_s),
                    lambda n, buf: bufs[buf].read(n),
                    lambda data, buf: bufs[buf].write(data),
                    request)
                out["device"] = device
                out["gid_index"] = gid_index
                out["active_mtu"] = dev.active_mtu
    return out


def check(peer_ip: str, port: int = DEFAULT_PORT, size: int = 65536, mode: str = "cm", device: str | None = None,
          gid_index: int | None = None, timeout_s: float = 10.0, wait_s: float = 0.0,
          src_ip: str | None = None, cm_port: int = DEFAULT_CM_PORT) -> dict:
    """Open the "verbs-peer" service of `rdmabench serve` at ``peer_ip:port``, move bytes both ways,
    verify on both ends (``mode="cm"``: over an rdma_cm connection to ``cm_port``).

    ``wait_s`` > 0 retries while the peer is not there yet (PeerUnavailable), for guests that
    boot concurrently. Returns {"mode", "peer", "size", "device", "ok", "write_verified",
    "server_verified", "readback_verified", "read_verified", "write_us", "read_us", ...}.
    """
    if mode not in ("cm", "oob"):
        raise RdmabenchError(f"mode must be cm or oob, not {mode!r}")
    if size <= 0:
        raise SizeError(f"size must be at least 1 byte, got {size}")
    secret = auth.load_secret()
    deadline = time.monotonic() + wait_s
    while True:
        try:
            if mode == "cm":
                out = _check_cm(peer_ip, port, cm_port, size, timeout_s, src_ip, secret)
            else:
                out = _check_oob(peer_ip, port, size, device, gid_index, timeout_s, secret)
            break
        except PeerUnavailable:
            if time.monotonic() + 1.0 >= deadline:
                raise
            time.sleep(1.0)
    out.update(mode=mode, peer=f"{peer_ip}:{port}", size=size)
    out["ok"] = bool(out["write_verified"] and out["server_verified"] and out["read_verified"])
    return out


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rdmabench.verbs.peer", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("check", help="connect to `rdmabench serve`, move bytes both ways, verify (worker side)")
    k.add_argument("--peer", required=True)
    k.add_argument("--port", type=int, default=DEFAULT_PORT, help="rdmabench serve's port")
    k.add_argument("--mode", choices=("cm", "oob"), default="cm")
    k.add_argument("--cm-port", type=int, default=DEFAULT_CM_PORT, help="rdma_cm port the server opens for us")
    k.add_argument("--size", type=int, default=65536)
    k.add_argument("--device", default=None)
    k.add_argument("--gid-index", type=int, default=None)
    k.add_argument("--timeout", type=float, default=10.0)
    k.add_argument("--wait", type=float, default=0.0, help="seconds to keep retrying an absent peer")
    args = ap.parse_args(argv)
    try:
        out = check(args.peer, args.port, args.size, args.mode, args.device, args.gid_index, args.timeout,
                    args.wait, cm_port=args.cm_port)
        print(json.dumps(out, sort_keys=True), flush=True)
        return 0 if out["ok"] else 1
    except RdmabenchError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
