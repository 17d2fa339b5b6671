"""Errors a user can act on. The CLI prints their message and exits non-zero,
without a traceback; anything else is a bug and keeps its traceback."""


class RdmabenchError(Exception):
    """Base class: the message says what went wrong and what to do about it."""

    exit_code = 1


class DeviceNotFound(RdmabenchError):
    """A --device that is not on this host; the message lists the ones that are."""


class NoDevices(RdmabenchError):
    """This host has no RDMA device at all."""


class VerbsError(RdmabenchError):
    """A verbs or rdma_cm operation failed or timed out."""


class PeerUnavailable(RdmabenchError):
    """The peer could not be reached or refused us: nothing was exchanged, retrying is safe."""


class LabError(RdmabenchError):
    """The soft-RoCE lab could not be set up, booted or run."""
