"""A tiny cross-host check for the two-guest lab.

The storage side serves::

    python -m rdmabench.verbs.peer serve --bind 10.77.2.1 --port 7471 --mode both --connections 2

(``--mode cm``: rdma_cm on --port; ``--mode oob``: TCP on --port; ``--mode both``: rdma_cm
on --port and TCP on --oob-port, default --port + 1). For each client it registers a buffer
of the size the client asks for and answers control requests:

- ``verify {size, sha256}``: hash what is in its buffer, say whether it matches;
- ``fill {size, seed}``: write ``pattern(size, seed)`` into its buffer (for the client to READ);
- ``done``: goodbye.

The worker side calls ``check(peer_ip, port, size, mode, device, gid_index)``: it connects,
RDMA WRITEs a pattern into the server's buffer, has the server confirm the bytes, RDMA READs
them back into a second buffer and compares, then has the server fill its buffer with a
second pattern and RDMA READs and compares that too (bytes produced on each side).
Control messages travel over SEND/RECV (cm) or the TCP socket (oob). Each connection opens with
the shared-secret handshake (rdmabench.auth), the server challenging: a client without the secret
is refused before any request of its is answered.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import select
import sys
import time

from rdmabench import auth
from rdmabench.errors import RdmabenchError, VerbsError
from rdmabench.verbs.oob import Channel, Listener, PeerUnavailable, connect as oob_connect
from rdmabench.verbs.resources import (Device, PeerInfo, RCEndpoint, SizeError, find_gid_for_ip, first_mismatch,
                                       pattern, poll)

WRITE_SEED = 11
FILL_SEED = 23
DEFAULT_MAX_SIZE = 64 << 20


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
    from rdmabench.verbs.cm import CMServerConnection  # noqa: F401  (type only)

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


def _serve_oob_one(chan: Channel, device: Device, max_size: int, op_timeout_s: float, secret: bytes) -> dict | None:
    """One TCP client. Returns None for a readiness ping (not counted as a connection)."""
    with chan:
        auth.serve_handshake(chan.send, lambda: chan.recv(auth.WAIT_S), secret, chan.peer)
        msg = chan.recv(op_timeout_s)
        if msg.get("op") == "ping":
            chan.send({"op": "pong"})
            return None
        if msg.get("op") != "connect":
            raise VerbsError(f"{chan.peer} opened with {msg.get('op')!r}, expected 'connect' or 'ping'")
        size = int(msg.get("size", 0))
        if not 0 < size <= max_size:
            chan.send({"op": "error", "error": f"size {size} is outside 1..{max_size} B"})
            raise SizeError(f"{chan.peer} asked for {size} B (max {max_size})")
        remote = PeerInfo.from_dict(msg.get("info") or {})
        record = {"mode": "oob", "size": size, "device": device.name, "requests": []}
        with RCEndpoint(device, size) as ep:
            ep.connect(remote)  # to RTS before the client may send
            chan.send({"op": "accept", "info": ep.info().to_dict()})
            while True:
                msg = chan.recv(op_timeout_s)
                reply, finished = _answer(msg, lambda n: ep.buffer.read(n), lambda d: ep.buffer.write(d), size)
                record["requests"].append({"op": msg.get("op"), **{k: v for k, v in reply.items() if k != "op"}})
                chan.send(reply)
                if finished:
                    break
        return record


def serve(bind_ip: str, port: int, connections: int = 1, mode: str = "cm", timeout_s: float = 120.0,
          device: str | None = None, gid_index: int | None = None, oob_port: int | None = None,
          max_size: int = DEFAULT_MAX_SIZE, op_timeout_s: float = 15.0, log=None) -> list[dict]:
    """Serve ``connections`` clients in total (0: until ``timeout_s`` passes with no client).

    ``timeout_s`` bounds the wait for each next client. Returns one record per connection;
    a failed connection is recorded with ``"ok": False`` and the server carries on.
    """
    if mode not in ("cm", "oob", "both"):
        raise RdmabenchError(f"mode must be cm, oob or both, not {mode!r}")
    log = log or (lambda rec: None)
    secret = auth.load_secret()
    with contextlib.ExitStack() as stack:
        cm_listener = tcp_listener = dev = None
        if mode in ("cm", "both"):
            from rdmabench.verbs.cm import CMListener

            cm_listener = stack.enter_context(CMListener(bind_ip, port))
        if mode in ("oob", "both"):
            tcp_port = port if mode == "oob" else (oob_port or port + 1)
            if device is None or gid_index is None:
                found_dev, found_idx = find_gid_for_ip(bind_ip)
                device = device or found_dev
                gid_index = found_idx if gid_index is None else gid_index
            dev = stack.enter_context(Device(device, gid_index=gid_index))
            tcp_listener = stack.enter_context(Listener(bind_ip, tcp_port))
        log({"event": "listening", "bind": bind_ip, "cm_port": port if cm_listener else None,
             "oob_port": tcp_listener.port if tcp_listener else None})

        served: list[dict] = []
        while connections == 0 or len(served) < connections:
            waitables = [w for w in (cm_listener, tcp_listener) if w is not None]
            if cm_listener is not None and cm_listener.has_pending():
                ready = [cm_listener]
            else:
                ready, _, _ = select.select(waitables, [], [], timeout_s)
            if not ready:
                if connections == 0:
                    break
                raise VerbsError(f"served {len(served)} of {connections} connections; no client came "
                                 f"within {timeout_s:g} s")
            for w in ready:
                t0 = time.monotonic()
                try:
                    if w is cm_listener:
                        rec = _serve_cm_one(cm_listener, max_size, op_timeout_s, secret)
                    else:
                        rec = _serve_oob_one(tcp_listener.accept(op_timeout_s, op_timeout_s), dev, max_size,
                                             op_timeout_s, secret)
                        if rec is None:
                            continue
                    rec["ok"] = all(r.get("ok", True) for r in rec["requests"]) and \
                        not any(r["op"] == "error" for r in rec["requests"])
                except (RdmabenchError, ValueError, TypeError, KeyError) as exc:  # one client never stops it
                    rec = {"mode": "cm" if w is cm_listener else "oob", "ok": False, "error": str(exc)}
                rec["seconds"] = round(time.monotonic() - t0, 3)
                served.append(rec)
                log(rec)
        return served


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


def _check_cm(peer_ip, port, size, timeout_s, src_ip, secret) -> dict:
    from rdmabench.verbs.cm import CMClient

    with CMClient(peer_ip, port, size, timeout_s=timeout_s, src_ip=src_ip, buffers=2) as cl:
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
    with oob_connect(peer_ip, port, timeout_s) as chan:
        auth.client_handshake(chan.send, lambda: chan.recv(auth.WAIT_S + timeout_s), secret, chan.peer)
        if device is None or gid_index is None:
            local_ip = chan.sock.getsockname()[0]
            found_dev, found_idx = find_gid_for_ip(local_ip)
            device = device or found_dev
            gid_index = found_idx if gid_index is None else gid_index
        with Device(device, gid_index=gid_index) as dev:
            dev.check_size(size)
            with RCEndpoint(dev, size) as a, RCEndpoint(dev, size) as b:
                # ``a`` is connected to the server; ``b`` only lends its buffer as the READ target
                chan.send({"op": "connect", "size": size, "info": a.info().to_dict()})
                reply = chan.recv(timeout_s)
                if reply.get("op") != "accept":
                    raise VerbsError(f"{peer_ip}:{port} refused: {reply.get('error', reply)}")
                remote = PeerInfo.from_dict(reply["info"])
                a.connect(remote)
                bufs = (a.buffer, b.buffer)

                def request(msg):
                    return chan.request(msg, timeout_s)

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


def check(peer_ip: str, port: int, size: int = 65536, mode: str = "cm", device: str | None = None,
          gid_index: int | None = None, timeout_s: float = 10.0, wait_s: float = 0.0,
          src_ip: str | None = None) -> dict:
    """Connect to a ``serve``-ing peer, move bytes both ways, verify on both ends.

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
                out = _check_cm(peer_ip, port, size, timeout_s, src_ip, secret)
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


def ping(peer_ip: str, oob_port: int, timeout_s: float = 2.0) -> bool:
    """True if an oob server answers on ``oob_port`` (does not count as a connection)."""
    try:
        with oob_connect(peer_ip, oob_port, timeout_s) as chan:
            auth.client_handshake(chan.send, lambda: chan.recv(auth.WAIT_S + timeout_s), auth.load_secret(), chan.peer)
            return chan.request({"op": "ping"}, timeout_s).get("op") == "pong"
    except VerbsError:
        return False


def wait_ready(peer_ip: str, oob_port: int, wait_s: float = 60.0) -> None:
    """Wait (bounded) until the peer's oob server answers a ping."""
    deadline = time.monotonic() + wait_s
    while not ping(peer_ip, oob_port):
        if time.monotonic() >= deadline:
            raise PeerUnavailable(f"no rdmabench peer answered on {peer_ip}:{oob_port} within {wait_s:g} s")
        time.sleep(1.0)


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rdmabench.verbs.peer", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="register buffers and answer clients (storage side)")
    s.add_argument("--bind", required=True, help="IP address to listen on (also picks the RDMA device)")
    s.add_argument("--port", type=int, default=7471)
    s.add_argument("--mode", choices=("cm", "oob", "both"), default="cm")
    s.add_argument("--oob-port", type=int, default=None, help="TCP port in --mode both (default --port + 1)")
    s.add_argument("--connections", type=int, default=1, help="clients to serve, 0 = until --timeout idle")
    s.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for each next client")
    s.add_argument("--device", default=None)
    s.add_argument("--gid-index", type=int, default=None)
    s.add_argument("--max-size", type=int, default=DEFAULT_MAX_SIZE)
    k = sub.add_parser("check", help="connect, move bytes both ways, verify (worker side)")
    k.add_argument("--peer", required=True)
    k.add_argument("--port", type=int, default=7471)
    k.add_argument("--mode", choices=("cm", "oob"), default="cm")
    k.add_argument("--size", type=int, default=65536)
    k.add_argument("--device", default=None)
    k.add_argument("--gid-index", type=int, default=None)
    k.add_argument("--timeout", type=float, default=10.0)
    k.add_argument("--wait", type=float, default=0.0, help="seconds to keep retrying an absent peer")
    args = ap.parse_args(argv)

    def emit(rec):
        print(json.dumps(rec, sort_keys=True), flush=True)

    try:
        if args.cmd == "serve":
            served = serve(args.bind, args.port, args.connections, args.mode, args.timeout, args.device,
                           args.gid_index, args.oob_port, args.max_size, log=emit)
            return 0 if all(r.get("ok") for r in served) else 1
        out = check(args.peer, args.port, args.size, args.mode, args.device, args.gid_index, args.timeout,
                    args.wait)
        emit(out)
        return 0 if out["ok"] else 1
    except RdmabenchError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
