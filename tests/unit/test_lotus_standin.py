"""The stand-in answers as Lotus's and Curio's /remote do (their source, lotus_standin.py's docstring): if it did
not, test_live.py would prove nothing about a live run."""

import json
import secrets
import tarfile
import io

import pytest

import lotus_standin
import raw_http
from rdmabench.workloads import sector

SID = "s-t01000-5"


@pytest.fixture(params=["lotus", "curio"])
def node(request, tmp_path):
    gen = sector.generate(sector.shape("2KiB", "pc2", number=5), tmp_path / "storage")
    secret = secrets.token_bytes(32)
    handle = lotus_standin.serve(tmp_path / "storage", secret, request.param)
    handle.gen, handle.kind = gen, request.param
    handle.token = lotus_standin.make_token(secret, ["read", "write", "sign", "admin"])
    yield handle
    handle.stop()


def _ask(node, method, path, auth="token", extra=""):
    header = {"token": f"Authorization: Bearer {node.token}\r\n", None: ""}.get(auth, f"Authorization: {auth}\r\n")
    return raw_http.ask(node.port, method, path, header + extra)


def test_authentication_as_go_jsonrpc_and_the_remote_handler_do_it(node):
    status, _, body = _ask(node, "GET", f"/remote/sealed/{SID}", auth=None)  # no header: no permissions
    words = "missing write permission" if node.kind == "lotus" else "missing admin permission"
    assert status == 401 and json.loads(body) == {"Error": f"unauthorized: {words}"}
    assert _ask(node, "GET", f"/remote/sealed/{SID}", auth=f"Basic {node.token}")[:3:2] == (401, b"")
    forged = lotus_standin.make_token(secrets.token_bytes(32), ["admin"])
    assert _ask(node, "GET", f"/remote/sealed/{SID}", auth=f"Bearer {forged}")[:3:2] == (401, b"")
    reader = lotus_standin.make_token(node._server.secret, ["read"])
    assert _ask(node, "GET", f"/remote/sealed/{SID}", auth=f"Bearer {reader}")[0] == 401
    assert _ask(node, "GET", f"/remote/sealed/{SID}?token={node.token}", auth=None)[0] == 200  # go-jsonrpc's ?token=


def test_routes_methods_and_statuses(node):
    assert _ask(node, "HEAD", f"/remote/sealed/{SID}")[0] == 405  # gorilla/mux: Methods("GET") is not HEAD
    assert _ask(node, "PUT", f"/remote/sealed/{SID}")[0] == 405
    assert _ask(node, "GET", "/remote/sealed/s-t01000-99")[:3:2] == (500, b"")  # not held here: 500, no reason
    assert _ask(node, "GET", f"/remote/nonsense/{SID}")[0] == 500
    assert _ask(node, "GET", "/remote/sealed/garbage")[0] == 500
    assert _ask(node, "GET", f"/remote/sealed/{SID}/extra")[:3:2] == (404, b"404 page not found\n")
    assert _ask(node, "GET", f"/remote/stat/{lotus_standin.STORAGE_ID}")[0] == 200
    assert "Capacity" in json.loads(_ask(node, "GET", f"/remote/stat/{lotus_standin.STORAGE_ID}")[2])
    assert _ask(node, "GET", "/remote/stat/another")[0] == 404
    assert _ask(node, "GET", "/remote/sealed/s-t01000-005")[0] == 200  # Sscanf reads numbers: the same sector


def test_a_file_is_served_whole_or_by_range(node):
    data = node.gen.sealed_path.read_bytes()
    status, hd, body = _ask(node, "GET", f"/remote/sealed/{SID}")
    assert status == 200 and hd["content-type"] == "application/octet-stream" and body == data
    assert int(hd["content-length"]) == len(data)
    status, hd, body = _ask(node, "GET", f"/remote/sealed/{SID}", extra="Range: bytes=0-0\r\n")
    assert status == 206 and hd["content-range"] == f"bytes 0-0/{len(data)}" and body == data[:1]


def test_a_cache_is_a_chunked_sorted_tar(node):
    status, hd, body = _ask(node, "GET", f"/remote/cache/{SID}")
    assert status == 200 and hd["content-type"] == "application/x-tar" and hd["transfer-encoding"] == "chunked"
    raw = raw_http.dechunk(body)
    names = [m.name for m in tarfile.open(fileobj=io.BytesIO(raw), mode="r:")]
    held = sorted(f.name for f in node.gen.shape.cache_files)
    if node.kind == "lotus":  # every file, no end-of-archive blocks
        assert names == held and raw[-1024:] != bytes(1024)
    else:  # Curio: only the names its constraints know (not the small sectors' unsplit tree-c), then end blocks
        assert names == [n for n in held if n != "sc-02-data-tree-c.dat"] and raw[-1024:] == bytes(1024)
        fin = tarfile.open(fileobj=io.BytesIO(raw_http.dechunk(_ask(node, "GET", f"/remote/cache/{SID}?mincache")[2])))
        assert [m.name for m in fin] == ["p_aux", "sc-02-data-tree-r-last.dat", "t_aux"]
    assert _ask(node, "GET", f"/remote/cache/{SID}", extra="Range: bytes=0-10\r\n")[0] == 500


def test_delete_exists_and_deletes(node):
    assert _ask(node, "DELETE", f"/remote/sealed/{SID}")[0] == 200
    assert not node.gen.sealed_path.exists()
    assert _ask(node, "DELETE", f"/remote/sealed/{SID}")[0] == 500
    assert ("DELETE", f"/remote/sealed/{SID}") in node.requests
