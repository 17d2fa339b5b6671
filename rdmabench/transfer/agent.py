"""The transfer service of `rdmabench serve`: it answers a runner's "xfer" messages with a LocalHost.

Every request is checked before it is acted on: the operation must be one of OPS, its arguments
exactly those of ARGS (present, of the right type, in range), item paths confined under the
serve root (LocalHost does that), options only the tuning knobs of hosts.WIRE_OPTIONS, and the
transport one whose ends may run on a storage host. A malformed request raises BadMessage: the
server answers it with an error and closes that connection.
"""

from __future__ import annotations

from pathlib import Path

from .. import transports
from ..errors import RdmabenchError
from ..wirecheck import BadMessage, Dict, Int, ListOf, Opt, Str, fields
from .hosts import ITEM, WIRE_OPTIONS, LocalHost

DESCS = ListOf(Dict(ITEM), max_items=64)
OPTIONS = Opt(Dict(WIRE_OPTIONS))
# What a passive end tells the active one (transports' PassiveEnd.info): an HTTP URL, or host and port.
PEER_INFO = Opt(Dict({"url": Opt(Str(max_len=512)), "rpc_url": Opt(Str(max_len=512)), "host": Opt(Str(max_len=255)),
                      "port": Opt(Int(1, 65535)),
                      "service": Opt(Str(choices=transports.known()))}))  # a passive end's service: its transport
TRANSPORT = Str(max_len=64)
ARGS = {
    "generate": {"sector_size": Int(1, 1 << 40), "stage": Opt(Str(max_len=32)), "scale": Str(max_len=64),
                 "miner": Int(0, 10**15), "number": Int(0, 10**15)},
    "start_passive": {"transport": TRANSPORT, "kind": Str(choices=("file", "dir", "blob")), "options": OPTIONS},
    "stop_passive": {},
    "move": {"transport": TRANSPORT, "descs": DESCS, "peer_info": PEER_INFO, "options": OPTIONS},
    "meter_start": {},
    "meter_stop": {"nbytes": Int(0, 1 << 60)},
    "expect": {"descs": DESCS},
    "cleanup": {"descs": DESCS},
    "drop_cache": {"descs": DESCS},
}
OPS = tuple(ARGS)
WAIT_S = 3600.0  # between requests the runner may be moving a whole sector from the other host
MESSAGE = {"v": Int(), "type": Str(), "op": Str(max_len=64), "args": Opt(Dict()), "token": Opt(Str(max_len=256))}


class Agent:
    def __init__(self, root: Path, bind: str, device: str, gid_index: int | None):
        self.root, self.bind, self.device, self.gid_index = Path(root), bind, device, gid_index
        self.host: LocalHost | None = None

    def handle(self, chan, msg: dict) -> None:
        """Answer one "xfer" request; BadMessage (the caller replies and hangs up) if it is malformed."""
        msg = fields(msg, MESSAGE, "xfer")
        op = msg["op"]
        if op not in ARGS:
            raise BadMessage(f"unknown transfer operation {op[:64]!r}; known: {', '.join(OPS)}")
        args = fields(msg["args"] or {}, ARGS[op], f"xfer {op}")
        if "transport" in args:
            self._check_transport(args["transport"])
        if self.host is None:
            self.host = LocalHost("storage", self.root / "storage", self.root / "work", self.bind,
                                  token=msg["token"] or "rdmabench",
                                  options={"device": self.device, "gid_index": self.gid_index})
        if msg["token"]:
            self.host.token = msg["token"]
        try:
            value = getattr(self.host, op)(**args)
        except (RdmabenchError, OSError, ValueError) as err:
            chan.send("error", message=f"{op} on {self.bind} failed: {err}")
            return
        chan.send("xfer_result", value=value)

    @staticmethod
    def _check_transport(name: str) -> None:
        try:
            caps = transports.capabilities(name)
        except RdmabenchError as err:
            raise BadMessage(str(err)) from None
        if caps.client_only:
            raise BadMessage(f"transport {name!r} runs only on the worker (its other end is a kernel server)")

    def close(self) -> None:
        if self.host:
            self.host.close()
            self.host = None


class TransferService:
    """One Agent per client connection, rooted at ``root`` (ROOT/storage, ROOT/work)."""

    def __init__(self, root: Path, bind: str, device: str | None, gid_index: int | None):
        self.root, self.bind, self.device, self.gid_index = Path(root), bind, device, gid_index

    def greeting(self) -> dict:
        return {"root": str(self.root)}

    def handle(self, chan, hello: dict) -> None:
        agent = Agent(self.root, self.bind, self.device, self.gid_index)
        try:
            while True:
                msg = chan.recv(WAIT_S, ("xfer", "bye"))
                if msg["type"] == "bye":
                    return
                agent.handle(chan, msg)
        finally:
            agent.close()  # a passive end a vanished client left running
