"""`rdmabench serve`: the one daemon on a storage host. Every far end is a service of it.

    service      handler                                  what it answers
    verbs        perf.server.VerbsService                 verbs tests and perftest cross-checks (`run --peer`)
    transfer     transfer.agent.TransferService           sector transfers (`run --config --peer`)
    rdma-write   transports.rdma_server.RdmaServer        pushes into ROOT/work
    rdma-read    transports.rdma_server.RdmaServer        pulls from ROOT/storage
    verbs-peer   verbs.peer.PeerService                   a validated pyverbs exchange (`verbs.peer check`)
    doctor       doctor.service                           this host's preflight checks (`doctor --peer`)

One listener (rdmabench.wire.Server): each connection proves the shared secret, then names its
service in its hello; the reply carries this host's context. The handlers know nothing of
sockets, and nothing below this module imports another service.
"""

from __future__ import annotations

from pathlib import Path

from . import devices, doctor
from .results import context
from .wire import DEFAULT_PORT, Server


class Daemon:
    def __init__(self, bind: str, port: int = DEFAULT_PORT, device: str | None = None, gid_index: int | None = None,
                 root: str | Path = "/tmp/rdmabench/serve", max_clients: int | None = None, log=None):
        from .perf.server import VerbsService
        from .transfer.agent import TransferService
        from .transports.rdma_server import RdmaServer
        from .verbs.peer import PeerService

        self.dev = devices.choose(device, required=False)  # none: it still serves http/shared/NFS transfers
        self.gid_index = None
        if self.dev:
            self.gid_index = gid_index if gid_index is not None else self.dev.ports[0].recommended_gid_index
        self.root = Path(root)
        self.context = context.collect(self.dev.name if self.dev else None, self.gid_index)
        dev_name = self.dev.name if self.dev else None
        rdma_options = {"device": dev_name, "gid_index": self.gid_index}
        self.rdma = {"write": RdmaServer(self.root / "work", "write", rdma_options, keep=False),
                     "read": RdmaServer(self.root / "storage", "read", rdma_options, keep=False)}
        if self.dev:
            for rdma in self.rdma.values():
                rdma.root.mkdir(parents=True, exist_ok=True)
        verbs = VerbsService(self.dev, self.gid_index, bind)
        transfer = TransferService(self.root, bind, dev_name, self.gid_index)
        peer = PeerService(bind, dev_name, self.gid_index)
        greet = lambda **extra: (lambda: {"context": self.context, **extra})  # noqa: E731
        self.services = {
            "verbs": (verbs.handle, greet(**verbs.greeting())),
            "transfer": (transfer.handle, greet(**transfer.greeting())),
            "rdma-write": (self._needs_device(self.rdma["write"].session), greet()),
            "rdma-read": (self._needs_device(self.rdma["read"].session), greet()),
            "verbs-peer": (self._needs_device(peer.handle), greet()),
            "doctor": (doctor.service(dev_name), greet()),
        }
        self.server = Server(bind, port, self.services, max_clients=max_clients, log=log, name="rdmabench serve")
        self.bind, self.port = bind, self.server.port

    def _needs_device(self, handler):
        def handle(chan, hello):
            if self.dev is None:
                raise devices.NoDevices(f"the server at {self.bind} has no RDMA device: it serves sector "
                                        "transfers over http, shared storage and NFS only")
            handler(chan, hello)
        return handle

    def wait(self) -> None:
        """Until ``max_clients`` clients are done (forever without a limit)."""
        while not self.server.finished.wait(3600):
            pass

    def close(self) -> None:
        self.server.close()
