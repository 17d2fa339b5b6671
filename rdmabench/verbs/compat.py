"""The one place that imports pyverbs' enums.

rdma-core 44 (Debian 12's python3-pyverbs) has them in ``pyverbs.enums`` and
``pyverbs.cm_enums``, reachable both as module attributes (``e.IBV_QPT_RC``) and
as enum classes (``e.ibv_qp_type.IBV_QPT_RC``). rdma-core 59 moved them to
``pyverbs.libibverbs_enums`` and ``pyverbs.librdmacm_enums`` and, built with
Cython 3, exposes named enums only through their class
(``ibv_access_flags.IBV_ACCESS_LOCAL_WRITE``). Everything else in rdmabench uses
the plain names below (``ACCESS_LOCAL_WRITE``, ``QPT_RC``...), which are ints.

If pyverbs cannot be imported at all, importing this module raises
``RdmabenchError`` saying how to get it.
"""

from __future__ import annotations

import importlib
from types import SimpleNamespace

from rdmabench.errors import RdmabenchError

INSTALL_HINT = (
    "pyverbs is not importable. Install Debian's python3-pyverbs "
    "(apt-get install python3-pyverbs, it matches the system's rdma-core) and run "
    "rdmabench from a venv made by /usr/bin/python3 with --system-site-packages "
    "(`make install` does both). PyPI's pyverbs does not load against Debian's libibverbs."
)

# plain name -> (enum class in rdma-core 59's layout, member name).
# The enum class is tried first; a module attribute of the member name is the
# fallback (rdma-core 44, and anonymous enums in every version).
_VERBS = {
    "ACCESS_LOCAL_WRITE": ("ibv_access_flags", "IBV_ACCESS_LOCAL_WRITE"),
    "ACCESS_REMOTE_WRITE": ("ibv_access_flags", "IBV_ACCESS_REMOTE_WRITE"),
    "ACCESS_REMOTE_READ": ("ibv_access_flags", "IBV_ACCESS_REMOTE_READ"),
    "ACCESS_REMOTE_ATOMIC": ("ibv_access_flags", "IBV_ACCESS_REMOTE_ATOMIC"),
    "QPT_RC": ("ibv_qp_type", "IBV_QPT_RC"),
    "QPT_UD": ("ibv_qp_type", "IBV_QPT_UD"),
    "QPS_RESET": ("ibv_qp_state", "IBV_QPS_RESET"),
    "QPS_INIT": ("ibv_qp_state", "IBV_QPS_INIT"),
    "QPS_RTR": ("ibv_qp_state", "IBV_QPS_RTR"),
    "QPS_RTS": ("ibv_qp_state", "IBV_QPS_RTS"),
    "QPS_ERR": ("ibv_qp_state", "IBV_QPS_ERR"),
    "QP_STATE": ("ibv_qp_attr_mask", "IBV_QP_STATE"),
    "QP_CUR_STATE": ("ibv_qp_attr_mask", "IBV_QP_CUR_STATE"),
    "QP_ACCESS_FLAGS": ("ibv_qp_attr_mask", "IBV_QP_ACCESS_FLAGS"),
    "QP_PKEY_INDEX": ("ibv_qp_attr_mask", "IBV_QP_PKEY_INDEX"),
    "QP_PORT": ("ibv_qp_attr_mask", "IBV_QP_PORT"),
    "QP_AV": ("ibv_qp_attr_mask", "IBV_QP_AV"),
    "QP_PATH_MTU": ("ibv_qp_attr_mask", "IBV_QP_PATH_MTU"),
    "QP_TIMEOUT": ("ibv_qp_attr_mask", "IBV_QP_TIMEOUT"),
    "QP_RETRY_CNT": ("ibv_qp_attr_mask", "IBV_QP_RETRY_CNT"),
    "QP_RNR_RETRY": ("ibv_qp_attr_mask", "IBV_QP_RNR_RETRY"),
    "QP_RQ_PSN": ("ibv_qp_attr_mask", "IBV_QP_RQ_PSN"),
    "QP_MAX_QP_RD_ATOMIC": ("ibv_qp_attr_mask", "IBV_QP_MAX_QP_RD_ATOMIC"),
    "QP_MIN_RNR_TIMER": ("ibv_qp_attr_mask", "IBV_QP_MIN_RNR_TIMER"),
    "QP_SQ_PSN": ("ibv_qp_attr_mask", "IBV_QP_SQ_PSN"),
    "QP_MAX_DEST_RD_ATOMIC": ("ibv_qp_attr_mask", "IBV_QP_MAX_DEST_RD_ATOMIC"),
    "QP_DEST_QPN": ("ibv_qp_attr_mask", "IBV_QP_DEST_QPN"),
    "WR_RDMA_WRITE": ("ibv_wr_opcode", "IBV_WR_RDMA_WRITE"),
    "WR_RDMA_READ": ("ibv_wr_opcode", "IBV_WR_RDMA_READ"),
    "WR_SEND": ("ibv_wr_opcode", "IBV_WR_SEND"),
    "SEND_SIGNALED": ("ibv_send_flags", "IBV_SEND_SIGNALED"),
    "SEND_INLINE": ("ibv_send_flags", "IBV_SEND_INLINE"),
    "WC_SUCCESS": ("ibv_wc_status", "IBV_WC_SUCCESS"),
    "WC_RDMA_WRITE": ("ibv_wc_opcode", "IBV_WC_RDMA_WRITE"),
    "WC_RDMA_READ": ("ibv_wc_opcode", "IBV_WC_RDMA_READ"),
    "WC_SEND": ("ibv_wc_opcode", "IBV_WC_SEND"),
    "WC_RECV": ("ibv_wc_opcode", "IBV_WC_RECV"),
    "MTU_256": ("ibv_mtu", "IBV_MTU_256"),
    "MTU_512": ("ibv_mtu", "IBV_MTU_512"),
    "MTU_1024": ("ibv_mtu", "IBV_MTU_1024"),
    "MTU_2048": ("ibv_mtu", "IBV_MTU_2048"),
    "MTU_4096": ("ibv_mtu", "IBV_MTU_4096"),
    "PORT_ACTIVE": ("ibv_port_state", "IBV_PORT_ACTIVE"),
    "LINK_LAYER_ETHERNET": (None, "IBV_LINK_LAYER_ETHERNET"),
    "LINK_LAYER_INFINIBAND": (None, "IBV_LINK_LAYER_INFINIBAND"),
}

_CM = {
    "PS_TCP": ("rdma_port_space", "RDMA_PS_TCP"),
    "RAI_PASSIVE": (None, "RAI_PASSIVE"),
    "CM_EVENT_ADDR_RESOLVED": ("rdma_cm_event_type", "RDMA_CM_EVENT_ADDR_RESOLVED"),
    "CM_EVENT_ADDR_ERROR": ("rdma_cm_event_type", "RDMA_CM_EVENT_ADDR_ERROR"),
    "CM_EVENT_ROUTE_RESOLVED": ("rdma_cm_event_type", "RDMA_CM_EVENT_ROUTE_RESOLVED"),
    "CM_EVENT_ROUTE_ERROR": ("rdma_cm_event_type", "RDMA_CM_EVENT_ROUTE_ERROR"),
    "CM_EVENT_CONNECT_REQUEST": ("rdma_cm_event_type", "RDMA_CM_EVENT_CONNECT_REQUEST"),
    "CM_EVENT_CONNECT_RESPONSE": ("rdma_cm_event_type", "RDMA_CM_EVENT_CONNECT_RESPONSE"),
    "CM_EVENT_CONNECT_ERROR": ("rdma_cm_event_type", "RDMA_CM_EVENT_CONNECT_ERROR"),
    "CM_EVENT_UNREACHABLE": ("rdma_cm_event_type", "RDMA_CM_EVENT_UNREACHABLE"),
    "CM_EVENT_REJECTED": ("rdma_cm_event_type", "RDMA_CM_EVENT_REJECTED"),
    "CM_EVENT_ESTABLISHED": ("rdma_cm_event_type", "RDMA_CM_EVENT_ESTABLISHED"),
    "CM_EVENT_DISCONNECTED": ("rdma_cm_event_type", "RDMA_CM_EVENT_DISCONNECTED"),
    "CM_EVENT_TIMEWAIT_EXIT": ("rdma_cm_event_type", "RDMA_CM_EVENT_TIMEWAIT_EXIT"),
}

# Module pairs: (rdma-core 59 name, rdma-core 44 name).
_VERBS_MODULES = ("pyverbs.libibverbs_enums", "pyverbs.enums")
_CM_MODULES = ("pyverbs.librdmacm_enums", "pyverbs.cm_enums")


def _import_first(names: tuple[str, ...]):
    errors = []
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError as exc:  # includes ModuleNotFoundError
            errors.append(f"{name}: {exc}")
    raise RdmabenchError(f"{INSTALL_HINT} (tried {'; '.join(errors)})")


def _lookup(module, enum_class: str | None, member: str) -> int:
    if enum_class is not None:
        cls = getattr(module, enum_class, None)
        if cls is not None and hasattr(cls, member):
            return int(getattr(cls, member))
    if hasattr(module, member):
        return int(getattr(module, member))
    # Last resort: an enum class we did not expect to hold it.
    for value in vars(module).values():
        if isinstance(value, type) and hasattr(value, member):
            return int(getattr(value, member))
    raise RdmabenchError(
        f"{module.__name__} has no {member}: this pyverbs is neither the rdma-core 44 nor 59 "
        "layout rdmabench knows. " + INSTALL_HINT
    )


def resolve() -> SimpleNamespace:
    """Import pyverbs' enum modules (either layout) and return every plain name as an int.

    Also carries ``verbs_module`` / ``cm_module`` (the modules found) and
    ``layout`` ("rdma-core-59" or "rdma-core-44").
    """
    try:
        importlib.import_module("pyverbs")
    except ImportError as exc:
        raise RdmabenchError(f"{INSTALL_HINT} ({exc})") from exc
    verbs = _import_first(_VERBS_MODULES)
    cm = _import_first(_CM_MODULES)
    ns = SimpleNamespace()
    for plain, (cls, member) in _VERBS.items():
        setattr(ns, plain, _lookup(verbs, cls, member))
    for plain, (cls, member) in _CM.items():
        setattr(ns, plain, _lookup(cm, cls, member))
    ns.verbs_module = verbs
    ns.cm_module = cm
    ns.layout = "rdma-core-59" if verbs.__name__ == _VERBS_MODULES[0] else "rdma-core-44"
    return ns


def _member_name(module, enum_class: str, value: int, prefix: str) -> str:
    cls = getattr(module, enum_class, None)
    if cls is not None:
        try:
            return cls(value).name.removeprefix(prefix)
        except (ValueError, TypeError):
            pass
    return f"unknown({value})"


_NS = resolve()
globals().update({k: v for k, v in vars(_NS).items()})
LAYOUT: str = _NS.layout

# Names for linters and readers: every plain name above is a module-level int.
ACCESS_LOCAL_WRITE: int
ACCESS_REMOTE_WRITE: int
ACCESS_REMOTE_READ: int
QPT_RC: int
QPS_INIT: int
QPS_RTR: int
QPS_RTS: int
WR_RDMA_WRITE: int
WR_RDMA_READ: int
WR_SEND: int
WC_SUCCESS: int
MTU_1024: int


def wc_status_name(status: int) -> str:
    """``IBV_WC_RETRY_EXC_ERR`` -> ``"RETRY_EXC_ERR"`` (works for both layouts)."""
    return _member_name(_NS.verbs_module, "ibv_wc_status", status, "IBV_WC_")


def qp_state_name(state: int) -> str:
    return _member_name(_NS.verbs_module, "ibv_qp_state", state, "IBV_QPS_")


def cm_event_name(event_type: int) -> str:
    return _member_name(_NS.cm_module, "rdma_cm_event_type", event_type, "RDMA_CM_EVENT_")


def mtu_bytes(mtu_enum: int) -> int:
    """ibv_mtu enum (1..5) -> bytes (256..4096)."""
    return 128 << int(mtu_enum)
