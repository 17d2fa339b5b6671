"""The per-file routes of our http server (rdmabench's extension, transports/http_files.py) under attack:
traversal in every spelling, names that are not plain, symlinks (out of the root and inside it),
subdirectories, a FIFO, a file item asked for its files, no token or the wrong one, and a fuzzer.
Nothing outside the storage root may ever come back, and the server must keep serving."""

import json
import os
import socket
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from rdmabench.transports import http_server
from rdmabench.workloads import sector

TOKEN = "s3cret-token"
SECRET = b"TOP-SECRET-BYTES"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A pc1 sector (7 MiB, 12 cache files, p_aux added), a secret beside the root, planted links, a dir, a FIFO."""
    base = tmp_path_factory.mktemp("files")
    gen = sector.generate(sector.shape("32GiB", "pc1", scale="1/65536"), base / "storage")
    (base / "secret").write_bytes(SECRET)
    cache = gen.cache_path
    (cache / "p_aux").write_bytes(bytes(range(64)))                     # a pc1 cache has none: Lotus's name, real size
    os.symlink(base / "secret", cache / "sc-02-data-tree-c.dat")       # out of the root
    os.symlink(cache / "p_aux", cache / "t_aux")                        # inside the directory itself
    (cache / "sc-02-data-layer-99.dat").mkdir()                         # a directory where a file would be
    os.mkfifo(cache / "sc-02-data-tree-r-last.dat")                     # a reader of it would block forever
    os.symlink(base, gen.root / "cache" / "s-t01000-7")                 # a whole item pointing out of the root
    h = http_server.serve(gen.root, "127.0.0.1", 0, TOKEN)
    yield {"h": h, "gen": gen, "sid": gen.shape.sector_id, "base": base}
    h.stop()


def get(h, path, token=TOKEN, method="GET", extra="", timeout=10):
    """A raw request, the path sent exactly as written; (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", h.port), timeout=timeout) as s:
        auth = f"Authorization: Bearer {token}\r\n" if token is not None else ""
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}{extra}Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(1 << 16):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def test_listing_is_the_regular_files_only(world):
    st_, hd, body = get(world["h"], f"/remote/cache/{world['sid']}/")
    assert st_ == 200 and hd["content-type"] == "application/json"
    files = json.loads(body)["files"]
    names = [f["name"] for f in files]
    # the links, the subdirectory and the FIFO are not files of the item; p_aux and the layers are
    expected = sorted([f.name for f in world["gen"].shape.cache_files] + ["p_aux"])
    assert names == expected
    for f in files:
        assert f["size"] == (world["gen"].cache_path / f["name"]).stat().st_size


def test_one_file_whole_and_ranged(world):
    h, sid, cache = world["h"], world["sid"], world["gen"].cache_path
    data = (cache / "sc-02-data-layer-1.dat").read_bytes()
    st_, hd, body = get(h, f"/remote/cache/{sid}/sc-02-data-layer-1.dat")
    assert st_ == 200 and body == data and int(hd["content-length"]) == len(data)
    st_, hd, body = get(h, f"/remote/cache/{sid}/sc-02-data-layer-1.dat", extra="Range: bytes=10-19\r\n")
    assert st_ == 206 and body == data[10:20] and hd["content-range"] == f"bytes 10-19/{len(data)}"
    st_, hd, body = get(h, f"/remote/cache/{sid}/p_aux", method="HEAD")
    assert st_ == 200 and body == b"" and hd["content-length"] == "64"


@pytest.mark.parametrize("tail,status", [
    ("..", 400), (".", 400), ("%2e%2e", 400), ("..%2fsecret", 400), ("%2e%2e%2fsecret", 400),
    ("..%2F..%2Fsecret", 400), ("%2Fetc%2Fpasswd", 400), ("p_aux%00", 400), ("p_aux%2f", 400),
    (".hidden", 400), ("-dash", 400), ("p_aux/", 400), ("p_aux/x", 400), ("/p_aux", 400), ("../secret", 400),
    ("../../secret", 400), ("a" * 256, 400), ("p%5faux", 400), ("p_aux;x", 400), ("p_aux%0a", 400),
    ("sc-02-data-tree-c.dat", 400),       # a symlink out of the root
    ("t_aux", 400),                       # a symlink to a file of the same directory: refused all the same
    ("sc-02-data-layer-99.dat", 400),     # a directory
    ("sc-02-data-tree-r-last.dat", 400),  # a FIFO: refused, never opened for a blocking read
    ("nosuch.dat", 404), ("P_AUX", 404),
])
def test_hostile_names(world, tail, status):
    st_, _, body = get(world["h"], f"/remote/cache/{world['sid']}/{tail}")
    assert st_ == status
    assert SECRET not in body
    assert get(world["h"], f"/remote/cache/{world['sid']}/p_aux")[0] == 200  # still serving


@pytest.mark.parametrize("path,status", [
    ("/remote/sealed/{sid}/", 400),              # a file item has no listing
    ("/remote/sealed/{sid}/p_aux", 400),         # nor files
    ("/remote/cache/s-t01000-99/", 404),
    ("/remote/cache/s-t01000-99/p_aux", 404),
    ("/remote/cache/s-t01000-7/", 400),          # an item that is a symlink out of the root
    ("/remote/cache/s-t01000-7/secret", 400),
    ("/remote/cache/..%2f..%2fsecret/", 400),
    ("/remote/cache/../p_aux", 400),
    ("/remote/%2e%2e/{sid}/p_aux", 400),
    ("/remote/cache/{sid}%2f/p_aux", 400),
    ("/remote/cache//{sid}/p_aux", 400),
    ("/remote/cache/{sid}//p_aux", 400),
    ("/remote/cache/{sid}/p_aux/", 400),
    ("/remote/secret/{sid}/", 400),
])
def test_hostile_items(world, path, status):
    st_, _, body = get(world["h"], path.format(sid=world["sid"]))
    assert st_ == status
    assert SECRET not in body


@pytest.mark.parametrize("token", [None, "", "wrong", TOKEN + "x", TOKEN[:-1]])
@pytest.mark.parametrize("tail", ["", "p_aux", "sc-02-data-layer-1.dat"])
def test_token_required(world, token, tail):
    st_, _, body = get(world["h"], f"/remote/cache/{world['sid']}/{tail}", token=token)
    assert st_ == 401 and b"p_aux" not in body and b"layer" not in body


def test_fifo_does_not_stall_the_server(world):
    """Several requests for the FIFO at once, then a real one: all answered promptly."""
    for _ in range(3):
        assert get(world["h"], f"/remote/cache/{world['sid']}/sc-02-data-tree-r-last.dat", timeout=5)[0] == 400
    assert get(world["h"], f"/remote/cache/{world['sid']}/", timeout=5)[0] == 200


_CHARS = st.sampled_from(list("abcp_-.%/2eEfF0:;?#&=~+") + ["..", "%2e", "%2f", "%00", "p_aux", "layer"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tail=st.lists(_CHARS, max_size=12).map("".join))
def test_fuzzed_names_never_escape(world, tail):
    listed = {f.name for f in world["gen"].shape.cache_files} | {"p_aux"}
    st_, _, body = get(world["h"], f"/remote/cache/{world['sid']}/{tail}")
    name = tail.split("?", 1)[0].split("#", 1)[0]
    assert SECRET not in body
    if st_ == 200:
        assert name == "" or name in listed  # the listing, or a file that is in it
    else:
        assert st_ in (400, 404), (tail, st_)


def test_keep_alive_after_head_of_a_directory(world):
    """HEAD of a directory has no body (not even the last chunk), so the next answer on the connection is clean."""
    sid = world["sid"]
    with socket.create_connection(("127.0.0.1", world["h"].port), timeout=10) as s:
        s.sendall(f"HEAD /remote/cache/{sid} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
                  f"GET /remote/cache/{sid}/p_aux HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                  "Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(1 << 16):
            data += chunk
    first, _, rest = data.partition(b"\r\n\r\n")
    assert b"application/x-tar" in first
    assert rest.startswith(b"HTTP/1.1 200 "), rest[:40]
    assert rest.endswith(bytes(range(64)))


def test_a_silent_peer_is_dropped(world, tmp_path):
    """Connections that never send a request, or stop after one, are closed after the idle timeout; a client
    that asks in the meantime is served at once."""
    with http_server.serve(world["gen"].root, "127.0.0.1", 0, TOKEN, idle_timeout=1) as h:
        silent = [socket.create_connection(("127.0.0.1", h.port), timeout=15) for _ in range(20)]
        kept = socket.create_connection(("127.0.0.1", h.port), timeout=15)
        kept.sendall(f"HEAD /remote/cache/{world['sid']}/p_aux HTTP/1.1\r\nHost: x\r\n"
                     f"Authorization: Bearer {TOKEN}\r\n\r\n".encode())
        assert kept.recv(65536).startswith(b"HTTP/1.1 200 ")
        t0 = time.monotonic()
        assert get(h, f"/remote/cache/{world['sid']}/p_aux", timeout=5)[0] == 200
        for s in silent + [kept]:
            assert s.recv(1) == b""  # closed by the server, not by our 15 s timeout
            s.close()
        assert time.monotonic() - t0 < 10
