"""A stand-in for a running Lotus (miner or worker) or Curio node's ``/remote``, answering as their source does.

Read from lotus ``node/rpc.go`` (MinerHandler), ``node/impl/storminer.go`` (ServeRemote),
``storage/paths/http_handler.go``, ``storage/sealer/tarutil/systar.go``, ``storage/sealer/storiface/filetype.go``,
go-jsonrpc ``auth/handler.go``, and curio ``cmd/curio/rpc/rpc.go``, ``lib/paths/http_handler.go``,
``lib/tarutil/systar.go``, ``lib/storiface/filetype.go``:

1. go-jsonrpc's auth.Handler: ``Authorization`` (or, without one, ``?token=``); a value without the "Bearer "
   prefix, or a JWT that does not verify (HS256 with the node's secret), is 401 with an empty body. No
   header at all passes with no permissions.
2. The /remote handler: without "admin" in the JWT's ``Allow``, 401 and a JSON body
   ``{"Error":"unauthorized: missing write permission"}`` (lotus-miner's words; lotus-worker and Curio
   say "missing admin permission").
3. gorilla/mux routes, tried in order; a path some route matches for another method is 405, none is 404
   ("404 page not found"). ``Methods("GET")`` does not match HEAD: a HEAD is 405.
4. ``GET /remote/{type}/{id}``: the id parsed as ``Sscanf("s-t0%d-%d")``, the type among Lotus's (Curio's
   adds piece and key), else 500 with an empty body; a sector file this node does not hold: 500 (its
   AcquireSector finds no path). A file: ``application/octet-stream`` by Go's ServeFile (Content-Length,
   Range). A directory: ``application/x-tar``, chunked, Range refused with 500, the entries sorted by
   name, uncompressed; Lotus writes no end-of-archive blocks, Curio's tar writer is closed (it writes them)
   and carries only the cache names it knows (``?mincache``: the finalized ones).
5. ``DELETE /remote/{type}/{id}``: removes the sector's file (Local.Remove), 200; 500 if it is not there.
6. ``GET /remote/stat/{id}``: the storage path's FsStat as JSON, 404 for another id. The vanilla-proof,
   allocated and (Curio) stash routes exist and answer 500: nothing here proves or stashes.

The request handler is rdmabench's own http server's (transports.http_server), which already sends files
and tars as Lotus does; this subclass changes what Lotus's differ in: routes, authentication, statuses.
Every request is logged as (method, path) in ``handle.requests``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import shutil

from rdmabench.transports import http_server

LOTUS_TYPES = ("unsealed", "sealed", "cache", "update", "update-cache")
CURIO_TYPES = LOTUS_TYPES + ("piece", "key")
STORAGE_ID = "76f1ee39-5ae5-4a10-9d5f-6b1d5c1c0a1e"
MISSING = {"lotus": "unauthorized: missing write permission", "lotus-worker": "unauthorized: missing admin permission",
           "curio": "unauthorized: missing admin permission"}
_R_LAST = [f"sc-02-data-tree-r-last-{i}.dat" for i in range(16)] + ["sc-02-data-tree-r-last.dat"]
FIN_CACHE = set(_R_LAST) | {"p_aux", "t_aux", "snap-vproof.json"}  # curio lib/tarutil FinCacheFileConstraints
CURIO_CACHE = FIN_CACHE | {f"sc-02-data-layer-{i}.dat" for i in range(1, 12)} \
    | {f"sc-02-data-tree-c-{i}.dat" for i in range(16)} | {"sc-02-data-tree-d.dat"}  # CacheFileConstraints


def _b64d(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def make_token(secret: bytes, allow: list[str]) -> str:
    """An HS256 JWT as Lotus's AuthNew signs one (made here independently of rdmabench's own signer)."""
    enc = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()  # noqa: E731
    head = enc(b'{"alg":"HS256","typ":"JWT"}')
    body = enc(json.dumps({"Allow": allow}).encode())
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{enc(sig)}"


def verify(token: str, secret: bytes) -> list | None:
    """The token's Allow list if it is an HS256 JWT signed with ``secret``, else None (gbrlsnchs/jwt's checks)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        header = json.loads(_b64d(parts[0]))
        if header.get("alg") != "HS256":
            return None
        want = hmac.new(secret, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(want, _b64d(parts[2])):
            return None
        allow = json.loads(_b64d(parts[1])).get("Allow") or []
    except (ValueError, AttributeError):
        return None
    return [p for p in allow if isinstance(p, str)]


class LotusRemote(http_server.FetchHandler):

    def do_GET(self):
        self._route("GET")

    def do_HEAD(self):
        self._route("HEAD")

    def do_DELETE(self):
        self._route("DELETE")

    def do_POST(self):
        self._route("POST")

    def do_PUT(self):
        self._route("PUT")

    def _status(self, code: int, body: bytes = b"", ctype: str | None = None) -> None:
        self.send_response(code)
        if body or ctype:
            self.send_header("Content-Type", ctype or "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _routes(self):
        sv = self.server
        out = [("GET", r"stat/([^/]+)", self._stat), ("POST", r"vanilla/single", self._not_here)]
        if sv.kind == "curio":
            out += [("POST", r"vanilla/porep", self._not_here), ("POST", r"vanilla/snap", self._not_here),
                    ("GET", r"stash/([^/]+)", self._not_here)]
        out += [("GET", r"([^/]+)/([^/]+)/([^/]+)/allocated/([^/]+)/([^/]+)", self._not_here),
                ("GET", r"([^/]+)/([^/]+)", self._get_sector), ("DELETE", r"([^/]+)/([^/]+)", self._delete)]
        if sv.kind == "curio":
            out.append(("POST", r"stash/([^/]+)", self._not_here))
        return out

    def _route(self, method: str) -> None:
        self.connection.settimeout(None)
        path, _, query = self.path.partition("?")
        self.server.requests.append((method, path))
        auth = self.headers.get("Authorization") or ""
        if not auth:
            m = re.search(r"(?:^|&)token=([^&]*)", query)
            auth = f"Bearer {m.group(1)}" if m and m.group(1) else ""
        perms: list = []
        if auth:
            if not auth.startswith("Bearer "):
                return self._status(401)
            perms = verify(auth[len("Bearer "):], self.server.secret)
            if perms is None:
                return self._status(401)
        if "admin" not in perms:
            return self._status(401, json.dumps({"Error": MISSING[self.server.flavour]},
                                                separators=(",", ":")).encode() + b"\n")
        if not path.startswith("/remote/"):
            return self._status(404, b"404 page not found\n")
        rest, mismatch = path[len("/remote/"):], False
        for want, pattern, answer in self._routes():
            m = re.fullmatch(pattern, rest)
            if m and want == method:
                return answer(*m.groups(), query=query)
            mismatch = mismatch or bool(m)
        return self._status(405) if mismatch else self._status(404, b"404 page not found\n")

    def _not_here(self, *args, query=""):
        return self._status(500, b"not modelled by the stand-in\n")

    def _stat(self, sid, query=""):
        if sid != STORAGE_ID:
            return self._status(404)
        du = shutil.disk_usage(self.server.root_real)
        st = {"Capacity": du.total, "Available": du.free, "FSAvailable": du.free, "Reserved": 0, "Max": 0,
              "Used": du.used}
        return self._status(200, json.dumps(st).encode() + b"\n")

    def _sector_path(self, type_, id_) -> str | None:
        m = re.match(r"s-t0(\d+)-(\d+)", id_)  # fmt.Sscanf("s-t0%d-%d") reads the two numbers, ignores the rest
        types = CURIO_TYPES if self.server.kind == "curio" else LOTUS_TYPES
        if not m or type_ not in types:
            return None
        return os.path.join(self.server.root_real, type_, f"s-t0{int(m.group(1))}-{int(m.group(2))}")

    def _get_sector(self, type_, id_, query=""):
        path = self._sector_path(type_, id_)
        if path is None or not os.path.exists(path):
            return self._status(500)
        if os.path.isdir(path):
            if self.headers.get("Range") is not None:
                return self._status(500)
            self._mincache = "mincache" in re.split(r"[&=]", query)
            return self._send_dir(path, head=False)
        return self._send_file(path, os.stat(path).st_size, head=False)

    def _tar_members(self, path: str) -> list[str]:
        names = super()._tar_members(path)
        if self.server.kind != "curio":
            return names
        allowed = FIN_CACHE if self._mincache else CURIO_CACHE
        return [n for n in names if n in allowed]

    def _delete(self, type_, id_, query=""):
        path = self._sector_path(type_, id_)
        if path is None or not os.path.exists(path):
            return self._status(500)
        shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
        return self._status(200)


def serve(root, secret: bytes, kind: str = "lotus", worker: bool = False) -> http_server.ServerHandle:
    """A stand-in node serving the storage path ``root`` on 127.0.0.1 (any free port), verifying with ``secret``.
    ``kind`` "lotus" (a miner; ``worker=True``: a lotus-worker) or "curio". ``handle.requests``: what it was sent."""
    assert kind in ("lotus", "curio")
    (root / "sectorstore.json").write_text(json.dumps({"ID": STORAGE_ID, "Weight": 10, "CanSeal": True,
                                                       "CanStore": True}))
    handle = http_server.serve(root, "127.0.0.1", 0, "unused: the stand-in verifies JWTs", handler=LotusRemote,
                               end_blocks=(kind == "curio"))
    sv = handle._server
    sv.secret, sv.kind, sv.requests = secret, kind, []
    sv.flavour = "lotus-worker" if worker else kind
    handle.requests = sv.requests
    return handle
