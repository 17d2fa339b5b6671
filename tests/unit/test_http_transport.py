"""Lotus's fetch over real sockets on 127.0.0.1: bytes intact, auth, traversal, tar, interruptions, Range."""

import os
import signal
import socket
import subprocess
import sys
import tarfile

import pytest
import raw_http

from rdmabench import integrity, transports
from rdmabench.transfer.measure import timed_move
from rdmabench.transports import http_client, http_server, jsonrpc
from rdmabench.transports.http import HttpTransport
from rdmabench.workloads import c1, sector

TOKEN = "s3cret-token"


@pytest.fixture
def sealed_sector(tmp_path):
    """A 32 GiB-shaped sector at pc1, scaled to ~7 MiB (12 cache files, layout as Lotus)."""
    gen = sector.generate(sector.shape("32GiB", "pc1", scale="1/65536"), tmp_path / "storage")
    return gen


@pytest.fixture
def server(sealed_sector):
    h = http_server.serve(sealed_sector.root, "127.0.0.1", 0, TOKEN)
    yield h
    h.stop()


def _get(h, path, token=TOKEN, extra=""):
    """A raw request (paths sent exactly as written, never normalised); returns (status, headers, body)."""
    auth = f"Authorization: Bearer {token}\r\n" if token is not None else ""
    return raw_http.ask(h.port, "GET", path, auth + extra)


def test_file_and_cache_dir_intact(server, sealed_sector, tmp_path):
    sid = sealed_sector.shape.sector_id
    dest = tmp_path / "worker"
    rec = http_client.fetch(server.url, TOKEN, "sealed", sid, dest, expected=sealed_sector.sealed_digest)
    assert rec.verified and rec.bytes == sealed_sector.shape.sealed_bytes
    assert (dest / "sealed" / sid).read_bytes() == sealed_sector.sealed_path.read_bytes()
    rec = http_client.fetch(server.url, TOKEN, "cache", sid, dest, expected=sealed_sector.cache_digest)
    assert rec.verified and rec.bytes == sealed_sector.shape.cache_bytes
    assert rec.extra["kind"] == "dir" and rec.wire_bytes > rec.bytes
    got = sorted(os.listdir(dest / "cache" / sid))
    assert got == sorted(f.name for f in sealed_sector.shape.cache_files)
    for name in got:
        assert (dest / "cache" / sid / name).read_bytes() == (sealed_sector.cache_path / name).read_bytes()
    assert not (dest / "cache" / "fetching").exists() and not (dest / "sealed" / "fetching").exists()


def test_headers_file_and_dir(server, sealed_sector):
    sid = sealed_sector.shape.sector_id
    st, hd, body = _get(server, f"/remote/sealed/{sid}")
    assert st == 200 and hd["content-type"] == "application/octet-stream"
    assert int(hd["content-length"]) == len(body) == sealed_sector.shape.sealed_bytes
    st, hd, body = _get(server, f"/remote/cache/{sid}")
    assert st == 200 and hd["content-type"] == "application/x-tar" and hd["transfer-encoding"] == "chunked"
    tar = raw_http.dechunk(body)
    assert tar[-1024:] != bytes(1024)  # no end-of-archive blocks, as Lotus
    st, hd, body = _get(server, f"/remote/cache/{sid}", extra="Range: bytes=0-9\r\n")
    assert st == 500  # Lotus refuses Range on a directory


def test_head(server, sealed_sector):
    sid = sealed_sector.shape.sector_id
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(f"HEAD /remote/sealed/{sid} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                  "Connection: close\r\n\r\n".encode())
        data = b""
        while c := s.recv(65536):
            data += c
    head, _, body = data.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0] and body == b""
    assert f"Content-Length: {sealed_sector.shape.sealed_bytes}".encode() in head


@pytest.mark.parametrize("token", [None, "wrong", "", TOKEN + "x"])
def test_unauthorized(server, sealed_sector, token, tmp_path):
    st, _, _ = _get(server, f"/remote/sealed/{sealed_sector.shape.sector_id}", token=token)
    assert st == 401
    if token:
        with pytest.raises(http_client.FetchError, match="401, the token was refused"):
            http_client.fetch(server.url, token, "sealed", sealed_sector.shape.sector_id, tmp_path / "w")
        assert not (tmp_path / "w" / "sealed" / sealed_sector.shape.sector_id).exists()


@pytest.mark.parametrize("path,status", [
    ("/remote/sealed/..", 400),
    ("/remote/sealed/../../secret", 400),
    ("/remote/sealed/%2e%2e", 400),
    ("/remote/sealed/%2e%2e%2fsecret", 400),
    ("/remote/sealed/s-t01000-1%2f..", 400),
    ("/remote/sealed//etc/passwd", 400),
    ("/remote/sealed/%2Fetc%2Fpasswd", 400),
    ("/remote/..%2fsecret/s-t01000-1", 400),
    ("/remote/secret/s-t01000-1", 400),
    ("/remote/sealed/secret", 400),
    ("/remote/sealed/s-t01000-", 400),
    ("/remote/sealed/s-t01000-1/x", 400),
    ("/remote/sealed/s-t01000-99", 404),
    ("/remote/unsealed/s-t01000-1", 404),
    ("/secret", 404),
])
def test_traversal_refused(server, sealed_sector, tmp_path, path, status):
    secret = tmp_path / "secret"
    secret.write_bytes(b"TOP-SECRET")
    # the secret sits beside the storage root (tmp_path/storage): one "../" away from it
    st, _, body = _get(server, path)
    assert st == status
    assert b"TOP-SECRET" not in body


def test_symlink_out_of_root_refused(server, sealed_sector, tmp_path):
    (tmp_path / "outside").write_bytes(b"TOP-SECRET")
    os.symlink(tmp_path / "outside", sealed_sector.root / "sealed" / "s-t01000-5")
    st, _, body = _get(server, "/remote/sealed/s-t01000-5")
    assert st == 400 and b"TOP-SECRET" not in body


def test_cache_tar_readable_by_gnu_tar(server, sealed_sector, tmp_path):
    sid = sealed_sector.shape.sector_id
    st, _, body = _get(server, f"/remote/cache/{sid}")
    tar = tmp_path / "cache.tar"
    tar.write_bytes(raw_http.dechunk(body))
    listing = subprocess.run(["tar", "-tvf", str(tar)], capture_output=True, text=True)
    assert listing.returncode == 0, listing.stderr
    names = [line.split()[-1] for line in listing.stdout.splitlines()]
    assert names == sorted(f.name for f in sealed_sector.shape.cache_files)
    out = tmp_path / "x"
    out.mkdir()
    ext = subprocess.run(["tar", "-xf", str(tar), "-C", str(out)], capture_output=True, text=True)
    assert ext.returncode == 0, ext.stderr
    assert integrity.digest(out) == sealed_sector.cache_digest
    with tarfile.open(tar) as tf:  # Python's reader agrees
        assert tf.getnames() == names


def test_range(server, sealed_sector):
    sid = sealed_sector.shape.sector_id
    data = sealed_sector.sealed_path.read_bytes()
    st, hd, body = _get(server, f"/remote/sealed/{sid}", extra="Range: bytes=100-199\r\n")
    assert st == 206 and body == data[100:200] and hd["content-range"] == f"bytes 100-199/{len(data)}"
    st, hd, body = _get(server, f"/remote/sealed/{sid}", extra="Range: bytes=-10\r\n")
    assert st == 206 and body == data[-10:]
    st, hd, body = _get(server, f"/remote/sealed/{sid}", extra=f"Range: bytes={len(data) - 5}-\r\n")
    assert st == 206 and body == data[-5:]
    st, hd, _ = _get(server, f"/remote/sealed/{sid}", extra=f"Range: bytes={len(data)}-\r\n")
    assert st == 416


@pytest.mark.parametrize("lotus_type,abort_after", [("sealed", 100_000), ("cache", 5 << 20), ("cache", 700),
                                                     ("cache", 0)])
def test_server_closing_early_leaves_nothing(sealed_sector, tmp_path, lotus_type, abort_after):
    before = integrity.digest(sealed_sector.root / lotus_type / sealed_sector.shape.sector_id)
    with http_server.serve(sealed_sector.root, "127.0.0.1", 0, TOKEN, abort_after=abort_after) as h:
        with pytest.raises(http_client.IncompleteTransfer):
            http_client.fetch(h.url, TOKEN, lotus_type, sealed_sector.shape.sector_id, tmp_path / "w")
    assert not (tmp_path / "w" / lotus_type / sealed_sector.shape.sector_id).exists()
    assert os.listdir(tmp_path / "w" / lotus_type) == []  # fetching/ too
    assert integrity.digest(sealed_sector.root / lotus_type / sealed_sector.shape.sector_id) == before


def test_server_killed_mid_stream(tmp_path):
    """A server process killed with SIGKILL while a 64 MiB file is on its way."""
    gen = sector.generate(sector.shape("32GiB", "finalized", scale="1/512"), tmp_path / "storage")
    proc = subprocess.Popen([sys.executable, "-m", "rdmabench.transports.http_server", "--root", str(gen.root),
                             "--bind", "127.0.0.1", "--port", "0", "--token", TOKEN],
                            stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().split()[-1]
        killed = []

        def kill(done):
            if not killed:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                killed.append(done)

        with pytest.raises(http_client.IncompleteTransfer):
            http_client.fetch(url, TOKEN, "sealed", gen.shape.sector_id, tmp_path / "w", progress=kill, bufsize=1 << 16)
        assert killed
    finally:
        proc.kill()
        proc.wait()
    assert os.listdir(tmp_path / "w" / "sealed") == []
    assert integrity.digest(gen.sealed_path) == gen.sealed_digest


def test_digest_mismatch_leaves_nothing(server, sealed_sector, tmp_path):
    with pytest.raises(integrity.IntegrityError):
        http_client.fetch(server.url, TOKEN, "cache", sealed_sector.shape.sector_id, tmp_path / "w", expected="0" * 32)
    assert os.listdir(tmp_path / "w" / "cache") == []


def test_unknown_cache_name_refused(tmp_path):
    root = tmp_path / "storage"
    (root / "cache" / "s-t01000-1").mkdir(parents=True)
    (root / "cache" / "s-t01000-1" / "evil.sh").write_bytes(b"#!/bin/sh\n")
    with http_server.serve(root, "127.0.0.1", 0, TOKEN) as h:
        with pytest.raises(http_client.FetchError, match="not a cache file name Lotus accepts"):
            http_client.fetch(h.url, TOKEN, "cache", "s-t01000-1", tmp_path / "w")
        rec = http_client.fetch(h.url, TOKEN, "cache", "s-t01000-1", tmp_path / "w2", lotus_names=False)
        assert rec.bytes == 10
    assert not (tmp_path / "w" / "cache" / "s-t01000-1").exists()


def test_end_blocks_option(sealed_sector, tmp_path):
    with http_server.serve(sealed_sector.root, "127.0.0.1", 0, TOKEN, end_blocks=True) as h:
        _, _, body = _get(h, f"/remote/cache/{sealed_sector.shape.sector_id}")
        assert raw_http.dechunk(body)[-1024:] == bytes(1024)
        rec = http_client.fetch(h.url, TOKEN, "cache", sealed_sector.shape.sector_id, tmp_path / "w",
                                expected=sealed_sector.cache_digest)
        assert rec.verified


def test_binds_only_given_address(sealed_sector):
    with http_server.serve(sealed_sector.root, "127.0.0.1", 0, TOKEN) as h:
        assert h._server.socket.getsockname()[0] == "127.0.0.1"
        # another loopback address is not served
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.2", h.port), timeout=2).close()
    with pytest.raises(http_server.ServerError, match="never picks 0.0.0.0"):
        http_server.serve(sealed_sector.root, "", 0, TOKEN)
    with pytest.raises(http_server.ServerError, match="needs a token"):
        http_server.serve(sealed_sector.root, "127.0.0.1", 0, "")


def test_stop_is_clean_and_frees_port(sealed_sector):
    h = http_server.serve(sealed_sector.root, "127.0.0.1", 0, TOKEN)
    port = h.port
    h.stop()
    h.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    http_server.serve(sealed_sector.root, "127.0.0.1", port, TOKEN).stop()  # rebinds


def test_transport_interface(sealed_sector, tmp_path):
    t = transports.get("http")
    assert isinstance(t, HttpTransport) and {"file", "dir", "blob"} <= t.capabilities.kinds
    t.prepare(transports.Context(storage_root=sealed_sector.root, work_root=tmp_path / "w", token=TOKEN))
    try:
        for item in sector.items(sealed_sector, tmp_path / "w"):
            rec = timed_move(t, item)  # the runner's way: ready(), then move() inside its clock
            assert rec["verified"] and rec["bytes"] == item.size and item.destination.exists()
            assert rec["seconds"] > 0 and rec["item"] == item.label
        blob = c1.c1_output("8MiB")
        d = integrity.new_hasher()
        d.update(blob)
        rec = timed_move(t, transports.Item(kind="blob", lotus_type="c1", sector_id="s-t01000-1", source=None,
                                            destination=None, size=len(blob), digest=d.hexdigest(), data=blob))
        assert rec["verified"] and rec["bytes"] == 211_000 and rec["extra"]["base64_bytes"] == 281_336
        assert rec["wire_bytes"] > rec["extra"]["base64_bytes"]
    finally:
        t.teardown()


def test_shared_transport_reads_in_place(sealed_sector):
    t = transports.get("shared")
    t.prepare(transports.Context(storage_root=sealed_sector.root, work_root=sealed_sector.root,
                                 options={"cold": True}))
    for item in sector.items(sealed_sector, sealed_sector.root):
        rec = t.move(item)
        assert rec.verified and rec.bytes == item.size and rec.wire_bytes == 0
    t.teardown()


def test_jsonrpc_auth_and_bad_params():
    with jsonrpc.serve_rpc("127.0.0.1", 0, TOKEN) as h:
        with pytest.raises(jsonrpc.RpcError, match="401"):
            jsonrpc.send_c1(h.url, "nope", b"{}")
        with pytest.raises(jsonrpc.RpcError, match="invalid params"):
            jsonrpc.send_c1(h.url, TOKEN, b"not json")
        rec = jsonrpc.send_c1(h.url, TOKEN, c1.c1_output("2KiB"), miner=1000, number=9)
        assert rec.verified and h.received[-1]["bytes"] == 100_000
        assert h.received[-1]["sector"] == {"ID": {"Miner": 1000, "Number": 9}, "ProofType": 8}


def test_registry_names():
    assert transports.names()[:2] == ["http", "shared"]
    with pytest.raises(transports.TransportError, match="known: http, shared, rdma-write"):
        transports.get("htp")


def test_baseline_runs_small(tmp_path):  # nginx and curl come from scripts/install-debian-packages.sh
    from rdmabench import baseline
    out = baseline.run_baseline(4 << 20, 1, tmp_path)
    assert out["size"] == 4 << 20 and len(out["nginx_curl"]["seconds"]) == 1 == len(out["rdmabench_http"]["seconds"])
    assert out["ratio"] > 0 and out["target"] == 0.9
    assert os.listdir(tmp_path) == []  # temp config, files and destination removed


def test_free_space_checked_before_writing(server, sealed_sector, tmp_path):
    free, _ = integrity.free_bytes(tmp_path)
    with pytest.raises(integrity.InsufficientSpace, match="need .* free on"):
        http_client.fetch(server.url, TOKEN, "cache", sealed_sector.shape.sector_id, tmp_path / "w",
                          need=free + (1 << 40))
    assert not (tmp_path / "w" / "cache").exists()


def test_big_member_header_is_pax_and_parsed():
    """A 32 GiB layer needs more than ustar's 8 GiB: PAX, as Go's archive/tar writes it; our client reads it."""
    hdr = http_server.tar_header("sc-02-data-layer-1.dat", 32 << 30, 0)
    first = tarfile.TarInfo.frombuf(hdr[:512], "utf-8", "surrogateescape")
    assert first.type == tarfile.XHDTYPE
    records = http_client._pax_records(hdr[512:512 + first.size])
    assert int(records["size"]) == 32 << 30
    assert http_client.cache_name_allowed("sc-02-data-layer-1.dat", 32 << 30) is None
    assert "cap" in http_client.cache_name_allowed("p_aux", 65)


@pytest.mark.parametrize("verbose", [False, True])
def test_a_client_that_hangs_up_mid_answer_is_one_line_at_most_not_a_traceback(sealed_sector, capfd, verbose):
    """A worker killed mid-fetch (the cluster's fault test) made the server print a BrokenPipeError traceback."""
    import time

    h = http_server.serve(sealed_sector.root, "127.0.0.1", 0, TOKEN, verbose=verbose)
    try:
        sid = sealed_sector.shape.sector_id
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", h.port))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(f"GET /remote/sealed/{sid} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
            s.recv(1024)  # the answer has started; hang up with megabytes still to come
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
            s.close()
        time.sleep(1.0)
        # the server still answers a well-behaved client afterwards
        rec = http_client.fetch(h.url, TOKEN, "sealed", sid, sealed_sector.root.parent / "after",
                                expected=sealed_sector.sealed_digest)
        assert rec.verified
    finally:
        h.stop()
    err = capfd.readouterr().err
    assert "Traceback" not in err, err
    if verbose:
        assert "went away" in err
