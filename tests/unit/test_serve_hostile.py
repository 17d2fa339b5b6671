"""`rdmabench serve` under attack, on the host (no RDMA device needed: it serves sector transfers).

One real server process takes every attack in turn: connections without the secret, with the
wrong one, that never speak, that send random bytes, broken JSON, a 100 MB line, messages with
missing, extra and wrong-typed fields, unknown types and operations, and path traversal in every
field of every transfer operation (``../``, absolute paths, NUL, a symlink planted in its root).
After each, a good client must still be served; at the end nothing outside the server's root may
have changed (a canary tree hashed before and after) and the server process must still be alive.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from rdmabench import auth
from rdmabench.wire import Channel, WireError as ControlError

SECRET = lambda: os.environ["RDMABENCH_SECRET"].encode()  # noqa: E731  (tests/conftest.py sets it)
GOOD_DESC = {"kind": "file", "lotus_type": "sealed", "sector_id": "s-t01000-1", "size": 10, "digest": None,
             "sector_size": 2048, "files": 1}


def tree_digest(root: Path) -> str:
    """Names, kinds, modes, link targets and contents of everything under ``root``."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            st_ = p.lstat()
            h.update(f"{p.relative_to(root)}|{st_.st_mode}|".encode())
            if p.is_symlink():
                h.update(os.readlink(p).encode())
            elif p.is_file():
                h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A canary tree outside the root, a server rooted beside it, symlinks planted in its root."""
    base = tmp_path_factory.mktemp("hostile")
    canary = base / "canary"
    for rel in ("sealed/s-t01000-1", "cache/s-t01000-1/p_aux", "victim/keep.txt", "etc/passwd"):
        (canary / rel).parent.mkdir(parents=True, exist_ok=True)
        (canary / rel).write_text(f"canary {rel}\n")
    root = base / "serve"
    (root / "work").mkdir(parents=True)
    (root / "storage").mkdir(parents=True)
    (root / "work" / "cache").symlink_to(canary / "cache")          # a planted link out of the work root
    (root / "storage" / "sealed").symlink_to(canary / "sealed")     # and out of the storage root
    (root / "work" / "unsealed").mkdir()
    (root / "work" / "unsealed" / "s-t01000-9").write_text("was here before the run\n")  # not this run's
    before = tree_digest(canary)
    proc = subprocess.Popen([sys.executable, "-m", "rdmabench.cli", "serve", "--bind", "127.0.0.1", "--port", "0",
                             "--root", str(root)], stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    # keep reading its log: a full pipe would block the server's next log line, and with it that client
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    port = int(line.split("listening on 127.0.0.1:")[1].split(",")[0])
    yield {"port": port, "root": root, "canary": canary, "before": before, "proc": proc, "base": base}
    proc.kill()
    proc.wait(10)


def good_client_works(port: int) -> None:
    """An honest client is served: authenticated, hello answered, a harmless transfer op done."""
    chan = Channel.connect("127.0.0.1", port, "transfer", timeout=5)
    try:
        assert chan.greeting["context"] and chan.greeting["service"] == "transfer"
        chan.send("xfer", op="meter_start", args={}, token="t" * 16)
        assert chan.recv(15, "xfer_result")["value"] is None
        chan.send("bye")
    finally:
        chan.close()


def raw(port: int, timeout: float = 15) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def read_all(sock: socket.socket) -> list[dict | bytes]:
    """Every line the server sends until it closes (the test fails if it never does)."""
    out, buf = [], b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        buf += chunk
    for line in buf.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            out.append(line)
    sock.close()
    return out


def authed(port: int, service: str = "transfer") -> Channel:
    return Channel.connect("127.0.0.1", port, service, timeout=15)


def send_raw_after_auth(port: int, data: bytes) -> list:
    """``data`` sent to the service its message type belongs to (the transfer service for anything else)."""
    chan = authed(port, "verbs" if b'"setup"' in data or b'"perftest"' in data else "transfer")
    try:
        chan.sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass
    return read_all(chan.sock)


def last_error(lines: list) -> str:
    errors = [m["message"] for m in lines if isinstance(m, dict) and m.get("type") == "error"]
    assert errors, f"no error reply in {lines!r}"
    return errors[-1]


# ---- authentication ------------------------------------------------------------------------------

def test_a_client_without_the_secret_is_refused_with_a_reason(world):
    s = raw(world["port"])
    challenge = json.loads(s.makefile().readline())
    assert challenge["type"] == "auth_challenge" and "secret" not in json.dumps(challenge)
    s.sendall(b'{"v": 1, "type": "hello", "tool": "rdmabench"}\n')
    assert "must be 'auth'" in last_error(read_all(s))
    good_client_works(world["port"])


def test_the_wrong_secret_is_refused_at_both_ends(world):
    with pytest.raises(ControlError, match="authentication failed"):
        Channel.connect("127.0.0.1", world["port"], "transfer", timeout=5, secret=b"not-the-secret-" * 3)
    good_client_works(world["port"])


def test_a_forged_proof_is_refused(world):
    s = raw(world["port"])
    f = s.makefile()
    json.loads(f.readline())
    s.sendall(json.dumps({"v": 1, "type": "auth", "nonce": "0" * 32, "proof": "f" * 64}).encode() + b"\n")
    assert "authentication failed" in last_error(read_all(s))
    for proof in (None, 7, "é" * 64, "0" * 63, ["x"]):  # wrong types never reach the comparison
        s = raw(world["port"])
        s.makefile().readline()
        s.sendall(json.dumps({"v": 1, "type": "auth", "nonce": "0" * 32, "proof": proof}).encode() + b"\n")
        assert "authentication failed" in last_error(read_all(s))


def test_the_server_proves_itself_to_the_client(world):
    """A client pointed at an impostor that replays a challenge but cannot answer it is told so."""
    impostor = socket.create_server(("127.0.0.1", 0))

    def serve_once():
        conn, _ = impostor.accept()
        f = conn.makefile("rwb")
        f.write(b'{"v": 1, "type": "auth_challenge", "scheme": "' + auth.SCHEME.encode() + b'", "nonce": "' +
                b"1" * 32 + b'"}\n')
        f.flush()
        f.readline()
        f.write(b'{"v": 1, "type": "auth_ok", "proof": "' + b"2" * 64 + b'"}\n')
        f.flush()
        conn.close()

    threading.Thread(target=serve_once, daemon=True).start()
    with pytest.raises(auth.AuthError, match="could not prove it holds our shared secret"):
        Channel.connect("127.0.0.1", impostor.getsockname()[1], "transfer", timeout=5)
    impostor.close()


@pytest.mark.slow
def test_a_client_that_connects_and_never_speaks_delays_nobody(world):
    idle = [raw(world["port"]) for _ in range(5)]
    t0 = time.monotonic()
    good_client_works(world["port"])
    assert time.monotonic() - t0 < auth.WAIT_S  # the idle ones are waited for in their own threads
    for s in idle:  # and each is dropped once its time to prove itself is over
        assert "auth" in json.dumps(read_all(s))


def test_a_hello_must_name_a_service_this_server_offers(world):
    for hello in ({"tool": "rdmabench"}, {"service": "shell"}, {"service": ["transfer"]}, {"service": "../verbs"}):
        with pytest.raises(ControlError, match="unknown service.*offers doctor, rdma-read, rdma-write, transfer, verbs, "
                                               "verbs-peer"):
            Channel.connect("127.0.0.1", world["port"], hello.pop("service", None), timeout=5, **hello)
    chan = Channel(raw(world["port"]), "serve")  # authenticated, then a request before any hello
    auth.client_handshake(chan.send_msg, lambda: chan.recv(15), SECRET(), chan.peer)
    chan.send("xfer", op="meter_start", args={})
    with pytest.raises(ControlError, match="'xfer' where hello was expected"):
        chan.recv(15)
    chan.close()
    good_client_works(world["port"])


def test_the_rdma_services_of_a_host_without_a_device_say_so(world):
    for service in ("rdma-write", "rdma-read", "verbs-peer"):
        chan = authed(world["port"], service)
        with pytest.raises(ControlError, match="no RDMA device"):
            chan.recv(15)
        chan.close()
    good_client_works(world["port"])


# ---- malformed messages --------------------------------------------------------------------------

@pytest.mark.parametrize("data, reason", [
    (b"\x00\xff\xfe garbage \x80\n", "not an rdmabench control message"),
    (b"{not json\n", "not an rdmabench control message"),
    (b"[1, 2, 3]\n", "protocol version"),
    (b'{"v": 2, "type": "bye"}\n', "protocol version 2"),
    (b'{"v": 1, "type": "format_disk"}\n', "'format_disk' where"),
    (b'{"v": 1}\n', "None where"),
    (b"[" * 100_000 + b"\n", "not an rdmabench control message"),
    (b'{"v": 1, "type": "setup", "test": "write_bw"}\n', "is missing"),
    (b'{"v": 1, "type": "perftest", "test": "write_bw", "size": "big", "iters": 5}\n', "must be an integer"),
    (b'{"v": 1, "type": "perftest", "test": "write_bw", "size": 1e999, "iters": 5}\n', "must be an integer"),
    (b'{"v": 1, "type": "perftest", "test": "atomic_bw", "size": 8, "iters": 5, "atomic": "FETCH_AND_ADD -R"}\n',
     "not one of fetch_add, cmp_swap"),
    (b'{"v": 1, "type": "perftest", "test": "atomic_lat", "size": 8, "iters": 5, "atomic": ["cmp_swap"]}\n',
     "must be a string"),
    (b'{"v": 1, "type": "xfer"}\n', "'op' is missing"),
    (b'{"v": 1, "type": "xfer", "op": "rm_rf", "args": {}}\n', "unknown transfer operation"),
    (b'{"v": 1, "type": "xfer", "op": "cleanup", "args": {"descs": [{"lotus_type": "sealed"}]}}\n', "is missing"),
    (b'{"v": 1, "type": "xfer", "op": "meter_stop", "args": {"nbytes": "7"}}\n', "must be an integer"),
    (b'{"v": 1, "type": "xfer", "op": "meter_stop", "args": {"nbytes": 7, "evil": 1}}\n', "unknown field 'evil'"),
    (b'{"v": 1, "type": "xfer", "op": "meter_start", "args": []}\n', "must be an object"),
])
def test_a_malformed_message_gets_an_error_and_its_connection_is_closed(world, data, reason):
    lines = send_raw_after_auth(world["port"], data)
    assert reason in last_error(lines), lines
    good_client_works(world["port"])


def test_a_100_mb_line_is_refused_without_reading_it_all(world):
    lines = send_raw_after_auth(world["port"], b'{"v": 1, "type": "hello", "pad": "' + b"x" * (100 << 20))
    assert "over 1048576 bytes" in last_error(lines)
    s = raw(world["port"])  # before authentication too
    s.makefile().readline()
    try:
        s.sendall(b"y" * (100 << 20))
    except (BrokenPipeError, ConnectionResetError):
        pass
    read_all(s)
    good_client_works(world["port"])


# ---- confinement ---------------------------------------------------------------------------------

TRAVERSALS = ["../../../../../tmp/victim", "/etc", "..", ".", "", "s-t01000-1/../../x", "a\x00b", "sealed/../..",
              "s-t01000-1\x00", "../canary"]


def xfer(port: int, op: str, args: dict) -> dict:
    chan = authed(port)
    try:
        chan.send("xfer", op=op, args=args, token="t" * 16)
        return chan.recv(60, "xfer_result")
    finally:
        chan.close()


@pytest.mark.parametrize("op", ["move", "cleanup", "expect"])
@pytest.mark.parametrize("field", ["lotus_type", "sector_id", "kind"])
@pytest.mark.parametrize("bad", TRAVERSALS)
def test_traversal_in_every_item_field_of_every_op(world, op, field, bad):
    desc = {**GOOD_DESC, field: bad}
    args = {"descs": [desc]}
    if op == "move":
        args.update(transport="shared", peer_info=None, options=None)
    with pytest.raises(ControlError, match=field):
        xfer(world["port"], op, args)


@pytest.mark.parametrize("args, reason", [
    ({"sector_size": 2048, "stage": "../../x", "scale": "1", "miner": 1000, "number": 1}, "unknown stage"),
    ({"sector_size": 2048, "stage": "pc1", "scale": "../1", "miner": 1000, "number": 1}, "scale"),
    ({"sector_size": 2048, "stage": "pc1", "scale": "1", "miner": -1, "number": 1}, "outside"),
    ({"sector_size": 3, "stage": "pc1", "scale": "1", "miner": 1000, "number": 1}, "not one Lotus seals"),
    ({"sector_size": 2048, "stage": None, "scale": "1", "miner": 1000, "number": 1, "root": "/"}, "unknown field"),
])
def test_generate_refuses_what_it_cannot_make(world, args, reason):
    with pytest.raises(ControlError, match=reason):
        xfer(world["port"], "generate", args)


def test_generate_refuses_a_size_above_the_free_space(world):
    with pytest.raises(ControlError, match="free"):
        xfer(world["port"], "generate", {"sector_size": 64 << 30, "stage": "pc2", "scale": "1", "miner": 1000,
                                         "number": 77})
    assert not list((world["root"] / "storage").glob("cache/s-t01000-77*"))


@pytest.mark.parametrize("args, reason", [
    ({"transport": "../../bin/sh", "kind": "file", "options": None}, "unknown transport"),
    ({"transport": "nfs-tcp", "kind": "file", "options": None}, "runs only on the worker"),
    ({"transport": "http", "kind": "file", "options": {"export": "/"}}, "unknown field 'export'"),
    ({"transport": "http", "kind": "file", "options": {"device": "mlx5_9"}}, "unknown field 'device'"),
    ({"transport": "http", "kind": "../file", "options": None}, "kind"),
])
def test_start_passive_takes_only_known_transports_and_tuning_options(world, args, reason):
    with pytest.raises(ControlError, match=reason):
        xfer(world["port"], "start_passive", args)


def test_a_symlink_planted_in_the_root_is_not_followed_out(world):
    # work/cache -> canary/cache: cleaning cache/s-t01000-1 would delete the canary's directory
    for op in ("expect", "cleanup"):
        with pytest.raises(ControlError, match="leads out of"):
            xfer(world["port"], op, {"descs": [{**GOOD_DESC, "kind": "dir", "lotus_type": "cache"}]})
    # storage/sealed -> canary/sealed: a "shared" move would read the canary's file and report its digest
    with pytest.raises(ControlError, match="leads out of"):
        xfer(world["port"], "move", {"transport": "shared", "descs": [GOOD_DESC], "peer_info": None, "options": None})


def test_cleanup_touches_only_what_this_run_created(world):
    before = world["root"] / "work" / "unsealed" / "s-t01000-9"
    with pytest.raises(ControlError, match="not created by this run"):
        xfer(world["port"], "cleanup", {"descs": [{**GOOD_DESC, "lotus_type": "unsealed", "sector_id": "s-t01000-9"}]})
    assert before.read_text() == "was here before the run\n"


# ---- fuzzing -------------------------------------------------------------------------------------

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                    max_leaves=12)
TYPES = st.sampled_from(["hello", "setup", "perftest", "xfer", "connect", "go", "bye", "error", "zzz"])
OPS = st.sampled_from(["generate", "start_passive", "stop_passive", "move", "meter_start", "meter_stop", "expect",
                       "cleanup", "nope"])
FIELD_NAMES = st.sampled_from(["kind", "lotus_type", "sector_id", "size", "digest", "descs", "transport", "options",
                               "peer_info", "test", "nbytes", "stage", "x"])
MESSAGES = st.fixed_dictionaries(
    {"v": st.sampled_from([1, 1, 1, 0, "1"]), "type": TYPES},
    optional={"op": OPS, "args": st.dictionaries(FIELD_NAMES, JSON, max_size=4) | JSON,
              "test": JSON, "size": JSON, "iters": JSON})


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(msgs=st.lists(MESSAGES, min_size=1, max_size=3))
def test_fuzzed_messages_never_stop_the_server(world, msgs):
    chan = authed(world["port"])
    try:
        for m in msgs + [{"v": 1, "type": "bye"}]:
            chan.sock.sendall(json.dumps(m).encode() + b"\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # it hung up on an earlier message: allowed, and the next client must still be served
    read_all(chan.sock)  # whatever it answered, it closes this connection (a hang fails the test)
    chan.close()
    assert world["proc"].poll() is None
    good_client_works(world["port"])


# ---- last: nothing outside the root changed, and the server is still there -----------------------

def test_zz_after_every_attack_the_server_serves_and_nothing_outside_changed(world):
    good_client_works(world["port"])
    assert world["proc"].poll() is None
    assert tree_digest(world["canary"]) == world["before"]
    assert (world["canary"] / "victim" / "keep.txt").exists()
