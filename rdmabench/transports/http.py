"""The ``http`` transport: Lotus's own way, the TCP baseline every other transport is compared with.

Files and cache directories go by ``GET /remote/{type}/{id}`` (http_server / http_client); the C1
output goes base64 inside a JSON-RPC POST (jsonrpc). For a loopback run ``prepare`` starts both
servers on ``ctx.bind``; for two hosts the storage host runs ``http_server.serve`` itself and
``ctx.peer`` is its URL (``http://10.77.2.1:7480``), and ``ctx.options["rpc_peer"]`` the C2
side's JSON-RPC URL if it is remote.

``[transfer]`` streams and parallel (``ctx.options``, 1 and 1 by default) choose the fetch:
- streams = 1 and parallel = 1 (and any single file with streams = 1): Lotus's own fetch, exactly: one
  ``GET /remote/{type}/{id}`` on one TCP connection, a cache directory as one tar stream
  (http_client). Records say ``extra["protocol"] = "lotus"``.
- parallel > 1 or streams > 1: rdmabench's extension (http_parallel): a directory's files fetched
  ``parallel`` at once, as Lotus's ParallelFetchLimit moves files, each file over ``streams``
  connections with Range requests of ``chunk`` bytes, hashed in the stream. It needs our server's
  per-file routes (http_files): a Lotus server has none. Records say ``"rdmabench-parallel"``.
Every record carries the run's ``streams`` and ``parallel`` in ``extra``.

The two halves are usable on their own:
    serve(root, bind, port, token) -> handle (.url, .stop())
    fetch(url_base, token, type, id, dest_root, expected=None) -> TransferRecord
    http_parallel.fetch(url_base, token, type, id, dest_root, expected=None, streams=2, parallel=3, chunk=1 << 20)
    serve_rpc(bind, port, token) -> handle (.url, .stop());  send_c1(url, token, payload) -> TransferRecord
"""

from __future__ import annotations

from ..workloads.item import Item
from . import http_parallel
from .base import Capabilities, Context, PassiveEnd, TransferRecord, Transport, TransportError, register
from .http_client import FetchError, IncompleteTransfer, fetch
from .http_server import ServerHandle, serve
from .jsonrpc import send_c1, serve_rpc

__all__ = ["HttpTransport", "serve", "fetch", "serve_rpc", "send_c1", "ServerHandle", "FetchError",
           "IncompleteTransfer"]


@register
class HttpTransport(Transport):
    name = "http"
    # a C1 output is POSTed by its sender (JSON-RPC); files are fetched with GET by their receiver
    capabilities = Capabilities(kinds=frozenset({"file", "dir", "blob"}), source_active=frozenset({"blob"}))

    def __init__(self):
        self._server = None
        self._rpc = None
        self.url = None
        self.rpc_url = None

    @classmethod
    def start_passive(cls, ctx: Context, kind: str) -> PassiveEnd:
        if kind == "blob":
            rpc = serve_rpc(ctx.bind, ctx.port, ctx.token)
            return PassiveEnd(info={"rpc_url": rpc.url}, stop=lambda: (rpc.stop(), {})[1])
        server = serve(ctx.storage_root, ctx.bind, ctx.port, ctx.token)
        return PassiveEnd(info={"url": server.url}, stop=lambda: (server.stop(), {})[1])

    def prepare(self, ctx: Context) -> None:
        self.ctx = ctx
        if ctx.peer_info and ctx.peer_info.get("url"):
            self.url = ctx.peer_info["url"]
        elif ctx.peer:
            self.url = ctx.peer
        else:
            self._server = serve(ctx.storage_root, ctx.bind, ctx.port, ctx.token)
            self.url = self._server.url
        self.rpc_url = (ctx.peer_info or {}).get("rpc_url") or ctx.options.get("rpc_peer")

    def ready(self, item: Item) -> None:
        if item.kind == "blob" and self.rpc_url is None:  # no C2 side named: one on this host, started untimed
            self._rpc = serve_rpc(self.ctx.bind, 0, self.ctx.token)
            self.rpc_url = self._rpc.url

    def move(self, item: Item) -> TransferRecord:
        if item.kind == "blob":
            if item.data is None:
                raise TransportError(f"http: blob {item.label} has no data")
            if self.rpc_url is None:
                raise TransportError("http: no JSON-RPC server to send the C1 output to (ready() starts one)")
            miner, number = _split_id(item.sector_id)
            rec = send_c1(self.rpc_url, self.ctx.token, item.data, miner=miner, number=number,
                          item=item.label)
            if item.digest is not None and rec.digest != item.digest:
                rec.verified = False
            rec.extra.update(protocol="lotus", streams=self.ctx.options.get("streams", 1),
                             parallel=self.ctx.options.get("parallel", 1))
            return rec
        if item.destination is None:
            raise TransportError(f"http: {item.label} has no destination")
        dest_root = item.destination.parent.parent  # <root>/<type>/<id>
        o = self.ctx.options
        streams, parallel = int(o.get("streams", 1)), int(o.get("parallel", 1))
        if streams == 1 and (parallel == 1 or item.kind == "file"):  # exactly Lotus's fetch: one stream, a tar
            rec = fetch(self.url, self.ctx.token, item.lotus_type, item.sector_id, dest_root, expected=item.digest,
                        transport=self.name, need=item.size)
            rec.extra.update(protocol="lotus", streams=streams, parallel=parallel)
            return rec
        return http_parallel.fetch(self.url, self.ctx.token, item.lotus_type, item.sector_id, dest_root,
                                   expected=item.digest, streams=streams, parallel=parallel,
                                   chunk=int(o.get("chunk", 1 << 20)), transport=self.name, need=item.size)

    def teardown(self) -> None:
        for h in (self._server, self._rpc):
            if h is not None:
                h.stop()
        self._server = self._rpc = None


def _split_id(sector_id: str) -> tuple[int, int]:
    miner, number = sector_id[len("s-t0"):].split("-")
    return int(miner), int(number)
