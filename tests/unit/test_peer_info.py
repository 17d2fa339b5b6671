"""PeerInfo, what one end's OOB exchange tells the other: the READ depth it answers is optional, so
an older rdmabench's info (without it) still connects, and anything else missing is named."""

import pytest

from rdmabench.errors import VerbsError
from rdmabench.verbs.resources import PeerInfo

INFO = dict(qpn=17, psn=99, gid="fe80:0000:0000:0000:0000:0000:0000:0001", lid=0, addr=4096, rkey=7,
            size=65536, mtu=4096)


def test_rd_atomic_travels_and_may_be_absent():
    assert PeerInfo.from_dict({**INFO, "rd_atomic": 16}).rd_atomic == 16
    assert PeerInfo.from_dict(PeerInfo.from_dict({**INFO, "rd_atomic": 16}).to_dict()).rd_atomic == 16
    assert PeerInfo.from_dict(INFO).rd_atomic == 0  # 0: not said, the reader keeps its own cap


def test_a_missing_required_field_is_named():
    with pytest.raises(VerbsError, match="rkey"):
        PeerInfo.from_dict({k: v for k, v in INFO.items() if k != "rkey"})
