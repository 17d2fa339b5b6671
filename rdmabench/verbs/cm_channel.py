"""An rdma_cm event channel whose waits time out, for pyverbs' CMEventChannel.

pyverbs keeps the GIL while it blocks in ``rdma_get_cm_event``: a wait there stops every
thread of the process, including the one that would have produced the event (a second
endpoint in the same process, or the native engine's cm_connect returning from its own
GIL-free wait). So no wait may enter pyverbs before the channel's descriptor is readable,
and that needs the descriptor, which pyverbs 44 does not expose.

``struct rdma_event_channel`` begins with its ``int fd``, and CMEventChannel keeps its
pointer to that struct as its last C field (``pyverbs/cmid.pxd``; checked below against the
type's size). That read is exact even when another thread opens or closes rdma_cm
descriptors meanwhile (the native engine does, without the GIL); the older way, the one
``/dev/infiniband/rdma_cm`` descriptor that appeared while the channel was created, was not,
and a wrong or missing descriptor hung the whole process. The descriptor read is checked
against /proc; if the layout ever differs the new-descriptor rule is used where it is
unambiguous, and otherwise the channel is refused with an error rather than left to block.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import threading

from rdmabench.errors import VerbsError

from pyverbs.base import PyverbsObject  # noqa: E402
from pyverbs.cmid import CMEvent, CMEventChannel  # noqa: E402
from pyverbs.pyverbs_error import PyverbsError  # noqa: E402

_RDMA_CM_DEV = "/dev/infiniband/rdma_cm"
_PTR = ctypes.sizeof(ctypes.c_void_p)
# CMEventChannel = PyverbsObject's fields, a vtable pointer, the rdma_event_channel pointer
_LAYOUT_KNOWN = CMEventChannel.__basicsize__ == PyverbsObject.__basicsize__ + 2 * _PTR
_fd_lock = threading.Lock()  # our own channels are created one at a time
_ATTEMPTS = 5


def rdma_cm_fds() -> set[int]:
    """This process's open /dev/infiniband/rdma_cm descriptors."""
    fds = set()
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{name}") == _RDMA_CM_DEV:
                fds.add(int(name))
    return fds


def _fd_from_struct(channel: CMEventChannel) -> int | None:
    """The fd in the rdma_event_channel that pyverbs' object points to, if its layout is the known one."""
    if not _LAYOUT_KNOWN:
        return None
    ptr = ctypes.c_void_p.from_address(id(channel) + CMEventChannel.__basicsize__ - _PTR).value
    return ctypes.c_int.from_address(ptr).value if ptr else None


def channel_fd(channel: CMEventChannel, appeared: set[int], open_now: set[int]) -> int | None:
    """Which descriptor is the channel's: the struct's fd if /proc agrees it is an rdma_cm descriptor,
    else the only one that appeared while the channel was created, else None."""
    fd = _fd_from_struct(channel)
    if fd is not None and fd in open_now:
        return fd
    return next(iter(appeared)) if len(appeared) == 1 else None


def cm_call(what: str, fn, *args, error=VerbsError, **kwargs):
    """fn(*args, **kwargs), a pyverbs error turned into ``error`` saying what was being done."""
    try:
        return fn(*args, **kwargs)
    except PyverbsError as exc:
        raise error(f"{what}: {exc}") from exc


class EventChannel:
    """An rdma_cm event channel whose waits time out."""

    def __init__(self):
        for _ in range(_ATTEMPTS):
            with _fd_lock:
                before = rdma_cm_fds()
                channel = cm_call("create an rdma_cm event channel", CMEventChannel)
                now = rdma_cm_fds()
            fd = channel_fd(channel, now - before, now)
            if fd is not None:
                self.channel, self.fd = channel, fd
                return
            channel.close()  # another thread opened one at the same moment: try again
        raise VerbsError("cannot tell which descriptor is the rdma_cm event channel's (this pyverbs "
                         f"lays CMEventChannel out differently and {_ATTEMPTS} tries raced other "
                         "threads); without it a wait could not time out")

    def fileno(self) -> int:
        return self.fd

    def ready(self, timeout_s: float) -> bool:
        readable, _, _ = select.select([self.fd], [], [], max(0.0, timeout_s))
        return bool(readable)

    def get(self, timeout_s: float, waiting_for: str, error=VerbsError) -> CMEvent:
        """The next event (caller acks it with ``.close()``), or ``error`` after ``timeout_s``."""
        if not self.ready(timeout_s):
            raise error(f"timed out after {timeout_s:g} s waiting for {waiting_for}")
        return cm_call(f"read an rdma_cm event while waiting for {waiting_for}", CMEvent, self.channel)

    def close(self) -> None:
        self.channel.close()
