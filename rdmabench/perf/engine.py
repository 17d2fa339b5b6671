"""Which engine opens the endpoints: the native C loops (default) or pyverbs.

Both expose the same endpoint: local_info(), connect(remote), run(...), close(),
and cm_listen / cm_connect for connections through rdma_cm.
"""

from __future__ import annotations

import importlib
import time

from ..errors import RdmabenchError, VerbsError

CM_CONNECT_WAIT_S = 15.0  # the server may still be binding its rdma_cm listener


def module(engine: str):
    try:
        return importlib.import_module(f"rdmabench.engines.{engine}")
    except ImportError as err:
        raise RdmabenchError(f"the {engine} engine is not available here: {err}") from None


def _knobs(engine: str, spec: dict) -> dict:
    """The python engine sets no traffic class, SL or huge pages (refused when asked) and places no buffer."""
    if engine == "native":
        return spec
    spec = dict(spec)
    spec.pop("numa_node", None)
    asked = [k for k in ("tclass", "sl", "hugepages") if spec.pop(k, None)]
    if asked:
        raise RdmabenchError(f"the {engine} engine does not set {', '.join('--' + k for k in asked)}: "
                             "use --engine native")
    return spec


def open_endpoint(engine: str, **spec):
    return module(engine).open_endpoint(**_knobs(engine, spec))


def _cm_spec(engine: str, spec: dict) -> dict:
    spec = _knobs(engine, spec)
    spec.pop("mtu", None)  # over rdma_cm the path MTU is what the route resolution gives
    return spec


def cm_listen(engine: str, **spec):
    return module(engine).cm_listen(**_cm_spec(engine, spec))


def cm_connect(engine: str, **spec):
    """rdma_cm connect, retried while the server's listener is not up yet (bounded)."""
    deadline = time.monotonic() + CM_CONNECT_WAIT_S
    while True:
        try:
            return module(engine).cm_connect(**_cm_spec(engine, spec))
        except VerbsError as err:
            text = str(err).lower()
            retryable = any(w in text for w in ("reject", "refused", "unreachable"))
            if not retryable or time.monotonic() > deadline:
                raise
            time.sleep(0.3)
