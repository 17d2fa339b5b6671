"""The transport interface: one table of operations every way of moving bytes fills in (as fio's engines do).

    class MyTransport(Transport):
        name = "my-transport"
        capabilities = Capabilities(kinds=frozenset({"file", "dir"}))  # every fact the runner needs

        def prepare(self, ctx: Context) -> None: ...     # connect, register memory, start servers
        def ready(self, item: Item) -> None: ...         # optional, untimed: a cold cache before the move
        def move(self, item: Item) -> TransferRecord: ... # move one item, verified (the runner times it)
        def teardown(self) -> None: ...                  # release everything prepare() took

    register(MyTransport)          # or @register on the class

The runner only ever calls ``prepare`` once, ``ready`` then ``move`` once per item and repetition,
and ``teardown`` once (also after an error). A transport never generates workloads, never prints
and never times its move: the runner reads the clock around ``move`` (transfer.measure); a
transport may report the phases it knows of in ``TransferRecord.phases``. ``move`` must leave
either the complete, verified item at ``item.destination`` or nothing there (see
``integrity.atomic_destination``), and must never modify ``item.source``. The runner and the CLI
learn everything else from ``capabilities`` and never test a transport's name.

Names the suite knows are in ``KNOWN``; each lives in the module given in ``_MODULES``,
imported on first ``lookup()``: a transport written later only has to exist at that path and
call ``register`` (one registered from anywhere else is usable too: ``known()``).
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import RdmabenchError
from ..workloads.item import Item  # what is moved belongs to the workloads

# Every transport name a scenario may use, and the module that implements it.
_MODULES = {
    "http": "rdmabench.transports.http",
    "shared": "rdmabench.transports.shared",
    "rdma-write": "rdmabench.transports.rdma",
    "rdma-read": "rdmabench.transports.rdma",
    "nfs-rdma": "rdmabench.transports.nfs",
    "nfs-tcp": "rdmabench.transports.nfs",
}
KNOWN = tuple(_MODULES)


class TransportError(RdmabenchError):
    """A transport could not be found, prepared, or could not move an item."""


@dataclass(frozen=True)
class Capabilities:
    """Every fact the runner and the CLI need about a transport: they decide by these, never by its name."""

    kinds: frozenset[str] = frozenset({"file", "dir"})  # what it can move (workloads.item.KINDS)
    # The kinds whose active end (the one that calls prepare/move) runs on the source host: a push (RDMA WRITE,
    # a JSON-RPC POST) or a read in place. Every other kind's runs on the destination host: a pull (GET, RDMA READ).
    source_active: frozenset[str] = frozenset()
    client_only: bool = False   # both directions run on the worker, told which by options["direction"]; the other
                                # end is a server rdmabench does not start (the kernel's NFS server)
    in_place: bool = False      # nothing is copied: the item is read where it is, so there is no destination to clean
    needs_device: bool = False  # the hosts that run it need an RDMA device (options["device"], ["gid_index"])
    needs_export: bool = False  # the storage host exports its root; options["server"] and ["export"] name it

    def active_side(self, kind: str) -> str:
        """'source' or 'dest': the host whose end moves an item of this kind (see ``source_active``)."""
        return "source" if kind in self.source_active else "dest"


@dataclass
class TransferRecord:
    """What one move did. ``verified`` is True only if the receiver checked the digest and it matched.
    How long it took is the runner's to measure (transfer.measure.timed_move)."""

    transport: str
    item: str            # "<lotus_type>/<sector_id>"
    bytes: int           # payload bytes delivered
    verified: bool
    digest: str | None
    wire_bytes: int | None = None  # bytes on the wire, when the transport knows (HTTP headers, base64, tar)
    extra: dict = field(default_factory=dict)
    phases: dict = field(default_factory=dict)  # seconds of the parts it knows of, e.g. {"verify_s": 0.4}


@dataclass
class Context:
    """What ``prepare`` gets: both ends' roots and how to reach the other end.

    For a loopback run both roots are local. For two hosts, ``peer`` names the other end
    (``http://10.77.2.1:7480`` for the http transport, an IP for RDMA) and the transport
    does not start that end itself.
    """

    storage_root: Path   # the source side's Lotus storage path (sealed/, cache/)
    work_root: Path      # the destination side's path; items land in <work_root>/<type>/<id>
    token: str = "rdmabench"
    bind: str = "127.0.0.1"
    port: int = 0
    peer: str | None = None
    options: dict = field(default_factory=dict)
    peer_info: dict | None = None  # two hosts: the PassiveEnd.info of the other end


@dataclass
class PassiveEnd:
    """The end of a transfer that waits (an HTTP server, an RDMA receiver), on its own host.

    ``info`` is JSON-able and is all the active end needs to reach it: the runner hands it
    over the control channel and the active end gets it as ``Context.peer_info``.
    ``stop()`` releases everything and returns what this end observed (JSON-able), e.g.
    ``{"received": [{"item": "sealed/s-t01000-1", "bytes": N, "verified": True, "digest": ...}]}``
    for a receiver that verifies what was pushed to it.
    """

    info: dict
    stop: "Callable[[], dict]"


class Transport(ABC):
    """See the module docstring. Two hosts: the runner calls ``start_passive`` on one host and
    ``prepare``/``move``/``teardown`` on the other; which end is active is ``capabilities.active_side(kind)``."""

    name: str = ""
    capabilities: Capabilities = Capabilities()

    @classmethod
    def start_passive(cls, ctx: "Context", kind: str) -> PassiveEnd | None:
        """Start the waiting end on this host; None when the transport needs none (shared, NFS)."""
        return None

    @abstractmethod
    def prepare(self, ctx: Context) -> None: ...

    def ready(self, item: Item) -> None:
        """Untimed, just before ``move``: set up what the measurement assumes (a cold page cache, a fresh mount)."""

    @abstractmethod
    def move(self, item: Item) -> TransferRecord: ...

    def teardown(self) -> None:
        pass


_REGISTRY: dict[str, type[Transport]] = {}


def register(cls: type[Transport]) -> type[Transport]:
    if not cls.name:
        raise TypeError(f"{cls.__name__} has no name")
    _REGISTRY[cls.name] = cls
    return cls


def _load(name: str) -> type[Transport] | None:
    """The class registered as ``name``, importing its module on first use; None if not written yet."""
    if name not in _REGISTRY and name in _MODULES:
        try:
            importlib.import_module(_MODULES[name])
        except ModuleNotFoundError as err:
            if err.name != _MODULES[name]:
                raise
    return _REGISTRY.get(name)


def lookup(name: str) -> type[Transport]:
    """The class of the transport called ``name``; TransportError if unknown or not built yet."""
    if name not in _MODULES and name not in _REGISTRY:
        raise TransportError(f"unknown transport {name!r}; known: {', '.join(known())}")
    cls = _load(name)
    if cls is None:
        raise TransportError(f"transport {name!r} is not implemented in this version of rdmabench "
                             f"(it will live in {_MODULES[name]}); available: {', '.join(names())}")
    return cls


def get(name: str) -> Transport:
    """A new instance of the transport called ``name``; TransportError if unknown or not built yet."""
    return lookup(name)()


def capabilities(name: str) -> Capabilities:
    """What the transport called ``name`` declares; TransportError if unknown or not built yet."""
    return lookup(name).capabilities


def known() -> tuple[str, ...]:
    """Every name a scenario may use: KNOWN, then any transport registered from elsewhere."""
    return tuple(dict.fromkeys([*KNOWN, *_REGISTRY]))


def names() -> list[str]:
    """Transports that can be used now (known and implemented), in known()'s order."""
    return [name for name in known() if _load(name) is not None]
