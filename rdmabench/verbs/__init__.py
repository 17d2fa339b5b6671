"""The verbs foundation over pyverbs (Debian's python3-pyverbs, rdma-core 44; 59's layout works too).

- ``compat``: the one place pyverbs' enums are imported; plain names (``QPT_RC``, ``WC_SUCCESS``...).
- ``resources``: Device (context + PD), Buffer (MR), CompletionQueue, RCQueuePair, RCEndpoint,
  ``poll`` with a timeout, ``PeerInfo`` (what two ends exchange).
- ``cm``: rdma_cm connections through pyverbs' CMID (CMListener / CMClient) with timeouts.
- ``roundtrip``: two RC QPs on one device, RDMA WRITE then READ, verified.
- ``peer``: the two-host check, the "verbs-peer" service of `rdmabench serve` and its client.

Nothing is imported here, so ``import rdmabench.verbs`` works on a host without pyverbs;
importing a submodule raises ``RdmabenchError`` saying how to install it.
"""

__all__ = ["roundtrip"]


def __getattr__(name):
    if name == "roundtrip":
        from rdmabench.verbs.roundtrip import roundtrip

        return roundtrip
    raise AttributeError(name)
