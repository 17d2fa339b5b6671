"""The pyverbs enum shim: the installed pyverbs (rdma-core 44 on Debian 12), a fake rdma-core 59
layout (enums reachable only through their classes, in libibverbs_enums / librdmacm_enums), and
no pyverbs at all. Runs on the host: no RDMA device needed."""

import enum
import importlib
import sys
import types

import pytest

from rdmabench.errors import RdmabenchError

COMPAT = "rdmabench.verbs.compat"

# Values from <infiniband/verbs.h> and <rdma/rdma_cma.h>: the ABI, equal in rdma-core 44 and 59.
VERBS_59 = {
    "ibv_access_flags": {"IBV_ACCESS_LOCAL_WRITE": 1, "IBV_ACCESS_REMOTE_WRITE": 2, "IBV_ACCESS_REMOTE_READ": 4,
                         "IBV_ACCESS_REMOTE_ATOMIC": 8},
    "ibv_qp_type": {"IBV_QPT_RC": 2, "IBV_QPT_UD": 4},
    "ibv_qp_state": {"IBV_QPS_RESET": 0, "IBV_QPS_INIT": 1, "IBV_QPS_RTR": 2, "IBV_QPS_RTS": 3, "IBV_QPS_ERR": 6},
    "ibv_qp_attr_mask": {"IBV_QP_STATE": 1, "IBV_QP_CUR_STATE": 2, "IBV_QP_ACCESS_FLAGS": 8,
                         "IBV_QP_PKEY_INDEX": 16, "IBV_QP_PORT": 32, "IBV_QP_AV": 128, "IBV_QP_PATH_MTU": 256,
                         "IBV_QP_TIMEOUT": 512, "IBV_QP_RETRY_CNT": 1024, "IBV_QP_RNR_RETRY": 2048,
                         "IBV_QP_RQ_PSN": 4096, "IBV_QP_MAX_QP_RD_ATOMIC": 8192, "IBV_QP_MIN_RNR_TIMER": 32768,
                         "IBV_QP_SQ_PSN": 65536, "IBV_QP_MAX_DEST_RD_ATOMIC": 131072,
                         "IBV_QP_DEST_QPN": 1048576},
    "ibv_wr_opcode": {"IBV_WR_RDMA_WRITE": 0, "IBV_WR_SEND": 2, "IBV_WR_RDMA_READ": 4},
    "ibv_send_flags": {"IBV_SEND_SIGNALED": 2, "IBV_SEND_INLINE": 8},
    "ibv_wc_status": {"IBV_WC_SUCCESS": 0, "IBV_WC_RETRY_EXC_ERR": 12},
    "ibv_wc_opcode": {"IBV_WC_SEND": 0, "IBV_WC_RDMA_WRITE": 1, "IBV_WC_RDMA_READ": 2, "IBV_WC_RECV": 128},
    "ibv_mtu": {"IBV_MTU_256": 1, "IBV_MTU_512": 2, "IBV_MTU_1024": 3, "IBV_MTU_2048": 4, "IBV_MTU_4096": 5},
    "ibv_port_state": {"IBV_PORT_ACTIVE": 4},
}
CM_59 = {
    "rdma_port_space": {"RDMA_PS_TCP": 0x0106},
    "rdma_cm_event_type": {f"RDMA_CM_EVENT_{n}": i for i, n in enumerate(
        ["ADDR_RESOLVED", "ADDR_ERROR", "ROUTE_RESOLVED", "ROUTE_ERROR", "CONNECT_REQUEST", "CONNECT_RESPONSE",
         "CONNECT_ERROR", "UNREACHABLE", "REJECTED", "ESTABLISHED", "DISCONNECTED", "DEVICE_REMOVAL",
         "MULTICAST_JOIN", "MULTICAST_ERROR", "ADDR_CHANGE", "TIMEWAIT_EXIT"])},
}


def _module(name, classes, anonymous):
    mod = types.ModuleType(name)
    for cls_name, members in classes.items():
        setattr(mod, cls_name, enum.IntEnum(cls_name, members))  # Cython 3 cpdef enum: class only
    for const, value in anonymous.items():  # anonymous enums stay module attributes
        setattr(mod, const, value)
    return mod


def _fresh_compat(monkeypatch):
    """Import the shim again against whatever sys.modules holds now (restored after the test)."""
    if COMPAT in sys.modules:
        monkeypatch.delitem(sys.modules, COMPAT)
    return importlib.import_module(COMPAT)


def _install_fake_59(monkeypatch):
    pkg = types.ModuleType("pyverbs")
    pkg.__path__ = []
    verbs = _module("pyverbs.libibverbs_enums", VERBS_59,
                    {"IBV_LINK_LAYER_UNSPECIFIED": 0, "IBV_LINK_LAYER_INFINIBAND": 1, "IBV_LINK_LAYER_ETHERNET": 2})
    cm = _module("pyverbs.librdmacm_enums", CM_59, {"RAI_PASSIVE": 1})
    monkeypatch.setitem(sys.modules, "pyverbs", pkg)
    monkeypatch.setitem(sys.modules, "pyverbs.libibverbs_enums", verbs)
    monkeypatch.setitem(sys.modules, "pyverbs.librdmacm_enums", cm)
    # the 44 names must not be what we resolved against
    monkeypatch.setitem(sys.modules, "pyverbs.enums", None)
    monkeypatch.setitem(sys.modules, "pyverbs.cm_enums", None)


def test_resolves_against_installed_pyverbs():
    compat = importlib.import_module(COMPAT)
    import pyverbs.enums as e  # Debian 12's layout; on rdma-core 59 this line is the one to change

    assert compat.LAYOUT in ("rdma-core-44", "rdma-core-59")
    assert compat.ACCESS_LOCAL_WRITE == int(e.IBV_ACCESS_LOCAL_WRITE)
    assert compat.QPT_RC == int(e.IBV_QPT_RC)
    assert compat.QPS_RTS == int(e.IBV_QPS_RTS)
    assert compat.WR_RDMA_READ == int(e.IBV_WR_RDMA_READ)
    assert compat.WC_SUCCESS == int(e.IBV_WC_SUCCESS)
    assert compat.MTU_4096 == int(e.IBV_MTU_4096)
    assert compat.mtu_bytes(compat.MTU_1024) == 1024
    assert compat.wc_status_name(int(e.IBV_WC_RETRY_EXC_ERR)) == "RETRY_EXC_ERR"
    assert compat.cm_event_name(compat.CM_EVENT_REJECTED) == "REJECTED"
    assert isinstance(compat.PS_TCP, int) and compat.PS_TCP == 0x0106


def test_resolves_against_rdma_core_59_layout(monkeypatch):
    _install_fake_59(monkeypatch)
    compat = _fresh_compat(monkeypatch)
    assert compat.LAYOUT == "rdma-core-59"
    assert compat.ACCESS_LOCAL_WRITE == 1
    assert compat.ACCESS_REMOTE_READ == 4
    assert compat.QPT_RC == 2
    assert compat.QPS_INIT == 1 and compat.QPS_RTR == 2 and compat.QPS_RTS == 3
    assert compat.QP_DEST_QPN == 1 << 20
    assert compat.WR_RDMA_WRITE == 0 and compat.WR_RDMA_READ == 4
    assert compat.WC_SUCCESS == 0
    assert compat.MTU_1024 == 3
    assert compat.LINK_LAYER_ETHERNET == 2
    assert compat.PS_TCP == 0x0106 and compat.RAI_PASSIVE == 1
    assert compat.CM_EVENT_ESTABLISHED == 9
    assert compat.wc_status_name(12) == "RETRY_EXC_ERR"
    assert compat.cm_event_name(8) == "REJECTED"


def test_missing_pyverbs_says_how_to_install(monkeypatch):
    for name in ("pyverbs", "pyverbs.enums", "pyverbs.cm_enums", "pyverbs.libibverbs_enums",
                 "pyverbs.librdmacm_enums"):
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules makes import fail
    with pytest.raises(RdmabenchError) as info:
        _fresh_compat(monkeypatch)
    msg = str(info.value)
    assert "python3-pyverbs" in msg
    assert "--system-site-packages" in msg
    assert "make install" in msg


def test_unknown_layout_is_a_clear_error(monkeypatch):
    _install_fake_59(monkeypatch)
    monkeypatch.setitem(sys.modules, "pyverbs.libibverbs_enums", _module("pyverbs.libibverbs_enums", {}, {}))
    with pytest.raises(RdmabenchError, match="IBV_ACCESS_LOCAL_WRITE"):
        _fresh_compat(monkeypatch)
