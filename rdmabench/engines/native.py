"""The native engine: ``rdmabench._native.Endpoint`` with its errors mapped onto rdmabench's.

LookupError -> DeviceNotFound; OSError and TimeoutError -> VerbsError (the original stays on
``__cause__``, errno included); ValueError (a bad argument) and RuntimeError (closed/busy
endpoint) pass through unchanged.

    ep = open_endpoint(device="rxe0", gid_index=1, qps=1, size=65536, depth=128)
    peer.connect(ep.local_info()); ep.connect(peer.local_info())   # info travels as JSON
    record = ep.run("write_bw", "client", iters=5000)

or through rdma_cm: ``cm_listen(bind_ip, port, ...)`` on one side, ``cm_connect(peer_ip, port,
...)`` on the other; both return connected endpoints (``ep.device`` names the device rdma_cm chose).

Endpoints also take tclass (GRH traffic class, DSCP << 2 | ECN), sl (service level; out of band only),
numa_node (the buffer's preferred node, -1 none) and hugepages; ``ep.knobs()`` says what the QP and the
buffer hold.

run(test, role, iters=0, duration_s=0.0, warmup=0, bidir=False, validate=False,
    max_samples=1_000_000, timeout_ms=10000, atomic="fetch_add") returns a dict:
  test, role, iters (per QP), warmup, duration_s, bidir, qps, size,
  passive (True: this side only waited, nothing measured),
  ops, bytes, recv_ops, t_start_ns, t_end_ns (int ns, CLOCK_MONOTONIC_RAW scale), tsc_hz,
  completions_ns (array('q'), ns of each signaled completion), completions_ops (array('Q'),
  messages completed by then), samples_ns (array('d'), latency samples in ns; lat tests only),
  sample ("half round trip", "post to completion" or None), samples_truncated,
  validated, corrupt, first_corrupt_seq (-1 when none); atomic tests also atomic, atomic_depth,
  atomic_signal_every, reply_byte_order, counters_ok, counters_bad (native/endpoint.h).
"""
from __future__ import annotations

import functools

from rdmabench.engines import tests
from rdmabench.errors import DeviceNotFound, RdmabenchError, VerbsError

__all__ = ["Endpoint", "open_endpoint", "cm_listen", "cm_connect", "clock", "TESTS"]

TESTS = tuple(tests.TESTS)  # the C loops implement every one of them


def _load():
    try:
        from rdmabench import _native
    except ImportError as exc:
        raise RdmabenchError(
            f"the native extension rdmabench._native is not built ({exc}); "
            "run `make install` or `pip install -e .` in the source tree"
        ) from exc
    return _native


def clock() -> dict:
    """The hot loops' clock, chosen and calibrated once when the extension loads: ``timer`` (which
    clock: "tsc (invariant)", "tsc (rate checked; ...)" or "clock_gettime"), ``tsc_hz`` (its rate,
    fixed for the process) and ``clock_gettime_ns`` (what one kernel clock read costs here).
    Raises RdmabenchError when the extension is not built."""
    mod = _load()
    return {"timer": mod.TIMER, "tsc_hz": mod.TSC_HZ, "clock_gettime_ns": mod.CLOCK_READ_NS}


def _mapped(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LookupError as exc:
            raise DeviceNotFound(str(exc)) from exc
        except OSError as exc:  # TimeoutError included; errno stays on __cause__
            raise VerbsError(exc.strerror or str(exc)) from exc

    return wrapper


class Endpoint:
    """A connected (or connectable) native endpoint; methods map errors onto rdmabench's."""

    def __init__(self, raw):
        self._ep = raw

    @property
    def raw(self):
        """The underlying ``rdmabench._native.Endpoint`` (test hooks live there)."""
        return self._ep

    def __getattr__(self, name):  # device, mtu, registered_bytes, qps, size, depth, slots ...
        return getattr(self._ep, name)

    @_mapped
    def local_info(self) -> list[dict]:
        return self._ep.local_info()

    @_mapped
    def connect(self, remote: list[dict]) -> None:
        self._ep.connect(remote)

    @_mapped
    def run(self, test: str, role: str, **kwargs) -> dict:
        return self._ep.run(test, role, **kwargs)

    @_mapped
    def knobs(self) -> dict:
        return self._ep.knobs()

    @_mapped
    def close(self) -> None:
        self._ep.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@_mapped
def open_endpoint(**spec) -> Endpoint:
    """Endpoint(device, gid_index, port=1, qps=1, size=65536, depth=128, slots=0, mtu=0,
    cq_mod=100, inline_size=0, tclass=0, sl=0, numa_node=-1, hugepages=False), not yet connected."""
    return Endpoint(_load().Endpoint(**spec))


@_mapped
def cm_listen(bind_ip: str, port: int, **spec) -> Endpoint:
    """Wait (timeout_ms, default 10000) for a cm_connect peer; spec: qps, size, depth, slots,
    cq_mod, inline_size, timeout_ms."""
    return Endpoint(_load().Endpoint.cm_listen(bind_ip, port, **spec))


@_mapped
def cm_connect(peer_ip: str, port: int, **spec) -> Endpoint:
    """Connect to a cm_listen peer; same spec as cm_listen (must match its qps)."""
    return Endpoint(_load().Endpoint.cm_connect(peer_ip, port, **spec))
