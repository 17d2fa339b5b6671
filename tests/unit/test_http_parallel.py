"""The parallel fetch (parallel files, streams per file) over real sockets on 127.0.0.1: bytes intact with
the generator's digests, every record saying how it was moved, corruption and truncation caught with
nothing left behind, a dead or frozen server reported within a bound, one failing file cancelling
the others, memory bounded whatever the file's size, and a hostile server's listing refused."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import tracemalloc

import pytest

from rdmabench import integrity, transports
from rdmabench.transfer.measure import timed_move
from rdmabench.transports import http_client, http_conn, http_parallel, http_pieces, http_server
from rdmabench.workloads import c1, sector

TOKEN = "s3cret-token"
CHUNK = 64 << 10  # a 1/65536 sector's layers are 512 KiB: 8 pieces each, tree-d's last one ragged


@pytest.fixture
def gen(tmp_path):
    """A 32 GiB-shaped sector after PC2 (layers, tree-d, tree-c, tree-r-last, p_aux, t_aux), scaled to ~14 MiB."""
    return sector.generate(sector.shape("32GiB", "pc2", scale="1/65536"), tmp_path / "storage")


@pytest.fixture
def server(gen):
    with http_server.serve(gen.root, "127.0.0.1", 0, TOKEN) as h:
        yield h


def left_behind(dest, lotus_type):
    return os.listdir(dest / lotus_type) if (dest / lotus_type).exists() else []


@pytest.mark.parametrize("streams,parallel", [(1, 3), (2, 1), (2, 3), (3, 2), (4, 64)])
def test_file_and_dir_intact(server, gen, tmp_path, streams, parallel):
    sid, dest = gen.shape.sector_id, tmp_path / "w"
    rec = http_parallel.fetch(server.url, TOKEN, "sealed", sid, dest, expected=gen.sealed_digest, streams=streams,
                              parallel=parallel, chunk=CHUNK)
    assert rec.verified and rec.digest == gen.sealed_digest and rec.bytes == gen.shape.sealed_bytes
    assert (dest / "sealed" / sid).read_bytes() == gen.sealed_path.read_bytes()
    rec = http_parallel.fetch(server.url, TOKEN, "cache", sid, dest, expected=gen.cache_digest, streams=streams,
                              parallel=parallel, chunk=CHUNK)
    assert rec.verified and rec.digest == gen.cache_digest and rec.bytes == gen.shape.cache_bytes
    assert rec.extra == {"kind": "dir", "destination": str(dest / "cache" / sid), "protocol": "rdmabench-parallel",
                         "streams": streams, "parallel": parallel, "chunk": CHUNK, "files": len(gen.shape.cache_files)}
    assert rec.wire_bytes > rec.bytes  # headers on top of every byte
    names = sorted(os.listdir(dest / "cache" / sid))
    assert names == sorted(f.name for f in gen.shape.cache_files)
    for name in names:
        assert (dest / "cache" / sid / name).read_bytes() == (gen.cache_path / name).read_bytes()
    assert integrity.digest(dest / "cache" / sid) == gen.cache_digest  # composed == read back
    assert sorted(os.listdir(dest / "cache")) == [sid] and sorted(os.listdir(dest / "sealed")) == [sid]


def test_odd_sizes_and_empty_file(tmp_path):
    """Pieces that do not divide the file, a file smaller than one piece, an empty file."""
    root = tmp_path / "storage"
    d = root / "cache" / "s-t01000-3"
    d.mkdir(parents=True)
    sizes = {"sc-02-data-layer-1.dat": 5 * CHUNK + 17, "sc-02-data-layer-2.dat": CHUNK - 1, "p_aux": 0,
             "t_aux": 1, "sc-02-data-tree-d.dat": 3 * CHUNK}
    for name, size in sizes.items():
        (d / name).write_bytes(os.urandom(size))
    want = integrity.digest(d)
    with http_server.serve(root, "127.0.0.1", 0, TOKEN) as h:
        for streams, parallel in ((3, 2), (2, 5), (7, 1)):
            rec = http_parallel.fetch(h.url, TOKEN, "cache", "s-t01000-3", tmp_path / f"w{streams}", expected=want,
                                      streams=streams, parallel=parallel, chunk=CHUNK)
            assert rec.verified and rec.bytes == sum(sizes.values())
            assert integrity.digest(tmp_path / f"w{streams}" / "cache" / "s-t01000-3") == want


def test_transport_records_how_it_moved(gen, tmp_path):
    """Defaults: Lotus's fetch (one tar stream); parallel/streams: the extension; both say so in every record."""
    for options, protocol in (({}, "lotus"), ({"streams": 1, "parallel": 1}, "lotus"),
                              ({"streams": 2, "parallel": 3, "chunk": CHUNK}, "rdmabench-parallel"),
                              ({"streams": 1, "parallel": 4}, None)):
        work = tmp_path / f"w-{len(os.listdir(tmp_path))}"
        t = transports.get("http")
        t.prepare(transports.Context(storage_root=gen.root, work_root=work, token=TOKEN, options=options))
        try:
            recs = [timed_move(t, item) for item in sector.items(gen, work)]
            blob = c1.c1_output("2KiB")
            h = integrity.new_hasher()
            h.update(blob)
            recs.append(timed_move(t, transports.Item(kind="blob", lotus_type="c1", sector_id=gen.shape.sector_id,
                                                      source=None, destination=None, size=len(blob),
                                                      digest=h.hexdigest(), data=blob)))
        finally:
            t.teardown()
        assert all(r["verified"] for r in recs)
        for r in recs:
            assert r["extra"]["streams"] == options.get("streams", 1)
            assert r["extra"]["parallel"] == options.get("parallel", 1)
        sealed, cache, blob_rec = recs
        assert blob_rec["extra"]["protocol"] == "lotus"  # the C1 output: one JSON-RPC POST, always
        if protocol:
            assert sealed["extra"]["protocol"] == cache["extra"]["protocol"] == protocol
        else:  # parallel alone: a single file is one Lotus stream, a directory's files go in parallel
            assert sealed["extra"]["protocol"] == "lotus" and cache["extra"]["protocol"] == "rdmabench-parallel"
        assert integrity.digest(work / "cache" / gen.shape.sector_id) == gen.cache_digest


def _flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x55]))


@pytest.mark.parametrize("lotus_type,streams,parallel", [("sealed", 2, 1), ("cache", 1, 3), ("cache", 2, 3)])
def test_corrupted_piece_detected_nothing_left(server, gen, tmp_path, lotus_type, streams, parallel):
    """One byte changed at the source after its digest was taken (in piece 3: connection 1 of 2)."""
    expected = gen.sealed_digest if lotus_type == "sealed" else gen.cache_digest
    victim = gen.sealed_path if lotus_type == "sealed" else gen.cache_path / "sc-02-data-layer-5.dat"
    _flip(victim, 3 * CHUNK + 1000)
    with pytest.raises(integrity.IntegrityError, match="nothing was put in place"):
        http_parallel.fetch(server.url, TOKEN, lotus_type, gen.shape.sector_id, tmp_path / "w", expected=expected,
                            streams=streams, parallel=parallel, chunk=CHUNK)
    assert left_behind(tmp_path / "w", lotus_type) == []  # no item, no fetching/


@pytest.mark.parametrize("lotus_type,abort_after", [("sealed", 1000), ("sealed", CHUNK - 1), ("cache", 0),
                                                     ("cache", 5000)])
def test_truncated_piece_detected_nothing_left(gen, tmp_path, lotus_type, abort_after):
    """The server drops each connection after ``abort_after`` bytes of a response's body."""
    with http_server.serve(gen.root, "127.0.0.1", 0, TOKEN, abort_after=abort_after) as h:
        with pytest.raises(http_client.IncompleteTransfer):
            http_parallel.fetch(h.url, TOKEN, lotus_type, gen.shape.sector_id, tmp_path / "w", streams=2,
                                parallel=3, chunk=CHUNK)
    assert left_behind(tmp_path / "w", lotus_type) == []
    assert integrity.digest(gen.root / lotus_type / gen.shape.sector_id) == (
        gen.sealed_digest if lotus_type == "sealed" else gen.cache_digest)  # the source untouched


def _server_process(root, *args):
    proc = subprocess.Popen([sys.executable, "-m", "rdmabench.transports.http_server", "--root", str(root), "--bind",
                             "127.0.0.1", "--port", "0", "--token", TOKEN, *args], stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().split()[-1]


@pytest.fixture
def big(tmp_path):
    """A cache directory with a 64 MiB layer among small files, on its own server process."""
    gen = sector.generate(sector.shape("32GiB", "pc1", scale="1/512"), tmp_path / "storage")
    return gen


def test_server_killed_mid_transfer(big, tmp_path):
    proc, url = _server_process(big.root)
    killed = []

    def kill(total):
        if total >= 8 << 20 and not killed:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed.append(time.monotonic())

    try:
        # what the first thread to notice saw: a connection that ended, or (opening one more) no server at all
        with pytest.raises(http_client.FetchError, match="closed the connection|connection lost|cannot connect"):
            http_parallel.fetch(url, TOKEN, "cache", big.shape.sector_id, tmp_path / "w", expected=big.cache_digest,
                                streams=2, parallel=3, chunk=1 << 20, progress=kill, timeout=60)
        assert killed and time.monotonic() - killed[0] < 10  # at once, not after the 60 s timeout
    finally:
        proc.kill()
        proc.wait()
    assert left_behind(tmp_path / "w", "cache") == []
    assert [t.name for t in threading.enumerate() if t.name.startswith("http-")] == []  # every thread joined


def test_frozen_server_times_out(big, tmp_path):
    """A server that stops answering (SIGSTOP) mid-transfer: an error after the timeout, not a hang."""
    proc, url = _server_process(big.root)
    stopped = []

    def freeze(total):
        if total >= 4 << 20 and not stopped:
            proc.send_signal(signal.SIGSTOP)
            stopped.append(time.monotonic())

    try:
        with pytest.raises(http_client.IncompleteTransfer, match="within the timeout"):
            http_parallel.fetch(url, TOKEN, "sealed", big.shape.sector_id, tmp_path / "w", streams=3, chunk=256 << 10,
                                progress=freeze, timeout=2)
        assert stopped and time.monotonic() - stopped[0] < 20
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
        proc.wait()
    assert left_behind(tmp_path / "w", "sealed") == []


def test_one_failing_file_cancels_the_others(tmp_path):
    """p_aux changes size between the listing and its GET while a big layer is on its way: the whole fetch
    fails at once, naming p_aux, long before the layer could have arrived, and leaves nothing."""
    root = tmp_path / "storage"
    d = root / "cache" / "s-t01000-4"
    d.mkdir(parents=True)
    with open(d / "sc-02-data-layer-1.dat", "wb") as f:
        f.truncate(1 << 30)  # sparse: cheap to make, 1 GiB to send
    (d / "sc-02-data-tree-d.dat").write_bytes(os.urandom(4 << 20))
    (d / "p_aux").write_bytes(bytes(64))
    seen = []

    def slow(total):  # >= 10 ms per MiB delivered: the layer alone would take more than 10 s
        if not seen:
            (d / "p_aux").write_bytes(bytes(10))
        seen.append(total)
        time.sleep(0.01)

    with http_server.serve(root, "127.0.0.1", 0, TOKEN) as h:
        t0 = time.monotonic()
        with pytest.raises(http_client.FetchError, match="p_aux: the server sends '10' bytes, 64 were announced"):
            http_parallel.fetch(h.url, TOKEN, "cache", "s-t01000-4", tmp_path / "w", parallel=2, progress=slow)
        assert time.monotonic() - t0 < 5
    assert seen and seen[-1] < 1 << 30
    assert left_behind(tmp_path / "w", "cache") == []
    assert [t.name for t in threading.enumerate() if t.name.startswith("http-")] == []


def test_memory_bounded_by_streams_and_chunk(tmp_path):
    """A 64 MiB file over 4 streams of 256 KiB pieces holds a few pieces per stream, not the file."""
    gen = sector.generate(sector.shape("32GiB", "finalized", scale="1/512"), tmp_path / "storage")
    assert gen.shape.sealed_bytes == 64 << 20
    with http_server.serve(gen.root, "127.0.0.1", 0, TOKEN) as h:
        tracemalloc.start()
        try:
            rec = http_parallel.fetch(h.url, TOKEN, "sealed", gen.shape.sector_id, tmp_path / "w",
                                      expected=gen.sealed_digest, streams=4, chunk=256 << 10)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert rec.verified
    bound = http_pieces.WINDOW * 4 * (256 << 10) + 4 * http_conn.HEADER_BUFFER
    assert peak <= bound + (1 << 20), (peak, bound)  # the rest: headers, threads' frames, the server's


def test_bad_options_refused(server, gen, tmp_path):
    with pytest.raises(ValueError):
        http_parallel.fetch(server.url, TOKEN, "cache", gen.shape.sector_id, tmp_path / "w", streams=0)


def test_errors_from_the_server(server, gen, tmp_path):
    with pytest.raises(http_client.FetchError, match="401, the token was refused"):
        http_parallel.fetch(server.url, "nope", "cache", gen.shape.sector_id, tmp_path / "w", parallel=2)
    with pytest.raises(http_client.FetchError, match="404, the server has no cache for s-t01000-77"):
        http_parallel.fetch(server.url, TOKEN, "cache", "s-t01000-77", tmp_path / "w", parallel=2)
    assert left_behind(tmp_path / "w", "cache") == []


DIR_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n")


class HostileServer:
    """A server that answers HEAD with ``head`` (by default: the item is a directory) and every GET with ``answer``."""

    def __init__(self, answer: bytes, head: bytes = DIR_HEAD):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.answer, self.head = answer, head
        threading.Thread(target=self._run, daemon=True).start()

    @classmethod
    def listing(cls, body: bytes):
        return cls(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                   b"Connection: close\r\n\r\n%s" % (len(body), body))

    def _run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn, contextlib.suppress(OSError):  # a client that gave up early: next one
                req = conn.recv(65536)
                conn.sendall(self.head if req.startswith(b"HEAD") else self.answer)

    def close(self):
        self.sock.close()


@pytest.mark.parametrize("files,why", [
    ([{"name": "../../etc/passwd", "size": 1}], "not a plain file name"),
    ([{"name": "sub/p_aux", "size": 1}], "not a plain file name"),
    ([{"name": "..", "size": 1}], "not a plain file name"),
    ([{"name": ".bashrc", "size": 1}], "not a plain file name"),
    ([{"name": "/etc/passwd", "size": 1}], "not a plain file name"),
    ([{"name": "p_aux\n", "size": 1}], "not a plain file name"),
    ([{"name": "p_aux", "size": 1}, {"name": "p_aux", "size": 1}], "twice"),
    ([{"name": "evil.sh", "size": 1}], "not a cache file name Lotus accepts"),
    ([{"name": "p_aux", "size": 65}], "over Lotus's cap"),
    ([{"name": "p_aux", "size": -1}], "not a listing"),
    ([{"name": "p_aux", "size": "64"}], "not a listing"),
    ([{"name": 7, "size": 1}], "not a listing"),
    ({"p_aux": 64}, "not a listing"),
    (None, "not a listing"),
])
def test_hostile_listing_refused(tmp_path, files, why):
    srv = HostileServer.listing(b"not json" if files is None else json.dumps({"files": files}).encode())
    try:
        with pytest.raises(http_client.FetchError, match=why):
            http_parallel.fetch(srv.url, TOKEN, "cache", "s-t01000-1", tmp_path / "w", parallel=2)
    finally:
        srv.close()
    assert left_behind(tmp_path / "w", "cache") == []
    assert not (tmp_path / "etc").exists() and not (tmp_path / "w" / "etc").exists()


def test_a_server_without_the_extension(tmp_path):
    """Lotus's server has no listing route (404): the error says to use parallel = 1, streams = 1 with it."""
    srv = HostileServer(b"HTTP/1.1 404 Not Found\r\nContent-Length: 19\r\nConnection: close\r\n\r\n"
                        b"404 page not found\n")
    try:
        with pytest.raises(http_client.FetchError, match="use parallel = 1 and streams = 1"):
            http_parallel.fetch(srv.url, TOKEN, "cache", "s-t01000-1", tmp_path / "w", parallel=3)
    finally:
        srv.close()
    assert left_behind(tmp_path / "w", "cache") == []


FILE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 200000\r\n\r\n"


@pytest.mark.parametrize("answer,why", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n" + bytes(200000), "the server ignored Range"),
    (b"HTTP/1.1 206 Partial\r\nContent-Range: bytes 0-65535/300000\r\nContent-Length: 65536\r\n\r\n" + bytes(65536),
     "did the file change"),
    (b"HTTP/1.1 206 Partial\r\nContent-Range: bytes 1-65536/200000\r\nContent-Length: 65536\r\n\r\n" + bytes(65536),
     "did the file change"),
])
def test_pieces_must_be_exactly_what_was_asked(tmp_path, answer, why):
    """A server that ignores Range, answers another range or size, or stops short: refused, nothing left."""
    srv = HostileServer(answer, head=FILE_HEAD)
    try:
        with pytest.raises(http_client.FetchError, match=why):
            http_parallel.fetch(srv.url, TOKEN, "sealed", "s-t01000-1", tmp_path / "w", streams=2, chunk=CHUNK,
                                timeout=10)
    finally:
        srv.close()
    assert left_behind(tmp_path / "w", "sealed") == []


class OneRequestServer(HostileServer):
    """Answers one request per connection, then closes it without a word (as a server whose idle timeout is
    zero would): HEAD with the size, GET with the Range asked for."""

    def __init__(self, data: bytes, short: int | None = None):
        self.data, self.short = data, short
        super().__init__(b"", head=b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                                   b"Content-Length: %d\r\n\r\n" % len(data))
        self.connections = 0

    def _run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn, contextlib.suppress(OSError, IndexError):  # a client that left before asking: next one
                req = conn.recv(65536).decode()
                if req.startswith("HEAD"):
                    conn.sendall(self.head)
                    continue
                a, b = map(int, req.split("Range: bytes=")[1].split("\r\n")[0].split("-"))
                conn.sendall(b"HTTP/1.1 206 Partial\r\nContent-Range: bytes %d-%d/%d\r\nContent-Length: %d\r\n\r\n%s"
                             % (a, b, len(self.data), b - a + 1, self.data[a:b + 1][:self.short]))


def test_a_connection_closed_while_idle_is_replaced_once(tmp_path):
    """The HEAD's connection, kept for the first piece, was closed by the server: that piece's request goes
    again on a new connection (nothing of an answer had come), and the file arrives intact."""
    data = os.urandom(2 * CHUNK - 5)
    h = integrity.new_hasher()
    h.update(data)
    srv = OneRequestServer(data)
    try:
        rec = http_parallel.fetch(srv.url, TOKEN, "sealed", "s-t01000-1", tmp_path / "w", expected=h.hexdigest(),
                                  streams=2, chunk=CHUNK, timeout=10)
    finally:
        srv.close()
    assert rec.verified and (tmp_path / "w" / "sealed" / "s-t01000-1").read_bytes() == data
    assert srv.connections == 3  # HEAD, then one per piece (the HEAD's one replaced)


def test_a_short_piece_is_refused(tmp_path):
    """Every piece answered with the right head and 100 bytes of its body, then the connection closed."""
    srv = OneRequestServer(os.urandom(4 * CHUNK), short=100)
    try:
        with pytest.raises(http_client.IncompleteTransfer, match=f"closed the connection after 100 of {CHUNK} bytes"):
            http_parallel.fetch(srv.url, TOKEN, "sealed", "s-t01000-1", tmp_path / "w", streams=2, chunk=CHUNK,
                                timeout=10)
    finally:
        srv.close()
    assert left_behind(tmp_path / "w", "sealed") == []


RUN_CONFIG = """
name = "par"
handoffs = ["pc1-pc2", "finalize"]
transports = ["http"]
repetitions = 1
storage_dir = "{tmp}/storage"
work_dir = "{tmp}/work"
[transfer]
parallel = 3
streams = 2
chunk = "64KiB"
[[shapes]]
sector_size = "32GiB"
scale = "1/65536"
"""


def test_run_config_through_serve_carries_streams_and_parallel(tmp_path):
    """`run --config` against `rdmabench serve` on loopback: pc1-pc2 is pulled by this host, finalize by the
    serve host (the options cross the control channel); every item moved the parallel way, verified."""
    from click.testing import CliRunner

    from rdmabench.cli import cli

    server = subprocess.Popen([sys.executable, "-m", "rdmabench.cli", "serve", "--bind", "127.0.0.1", "--port", "0",
                               "--root", str(tmp_path / "serve"), "--clients", "1"], stderr=subprocess.PIPE, text=True)
    try:
        line = server.stderr.readline()
        threading.Thread(target=server.stderr.read, daemon=True).start()  # a full log pipe would block serve
        port = int(line.split("listening on 127.0.0.1:")[1].split(",")[0])
        config, out = tmp_path / "par.toml", tmp_path / "r.json"
        config.write_text(RUN_CONFIG.format(tmp=tmp_path))
        done = CliRunner().invoke(cli, ["run", "--config", str(config), "--peer", f"127.0.0.1:{port}", "-o", str(out)])
        assert done.exit_code == 0, done.output
        assert server.wait(30) == 0
    finally:
        server.kill()
    result = json.loads(out.read_text())
    assert result["options"]["streams"] == 2 and result["options"]["parallel"] == 3
    rows = {r["measured"]["handoff"]: r for r in result["rows"]}
    assert set(rows) == {"pc1-pc2", "finalize"}
    assert (rows["pc1-pc2"]["detail"]["active_end"], rows["finalize"]["detail"]["active_end"]) == ("worker", "storage")
    for r in rows.values():
        assert r["detail"]["verified"] is True
        items = r["detail"]["items"]
        assert [i["extra"]["kind"] for i in items] == ["file", "dir"]
        for i in items:
            assert i["verified"] and i["extra"]["protocol"] == "rdmabench-parallel"
            assert (i["extra"]["streams"], i["extra"]["parallel"], i["extra"]["chunk"]) == (2, 3, 64 << 10)
