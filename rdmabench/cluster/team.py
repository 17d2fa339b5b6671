"""The ranks of one `rdmabench cluster` run, coordinated over MPI (mpi4py): meeting points and gathering.

MPI only coordinates: the data moves over rdmabench's own transports. Every wait here is a poll
(a probe or a test, then a 2 ms sleep) with a deadline, never a blocking MPI call: Open MPI's blocking
calls spin a core, which would be counted in the CPU figures of the host that waits (the storage host
serves its workers from other threads of the same process while its rank waits for them) and starve
those threads on a small host. A meeting point that a rank does not reach within the step's bound
stops the run with an error naming the hosts that were late.
"""

from __future__ import annotations

import os
import socket
import sys
import time

from ..errors import RdmabenchError

POLL_S = 0.002
ENV_HOST = "RDMABENCH_HOST_NAME"  # the name a rank goes by, instead of its host's: several ranks on one machine
TAG_ARRIVE, TAG_GO, TAG_DATA = 17, 18, 19
HOW_TO = ("rdmabench cluster runs under MPI: start it with mpirun (Open MPI: Debian's openmpi-bin, and "
          "python3-mpi4py for the Python side), e.g. `mpirun -H storage,worker1,worker2 .venv/bin/rdmabench "
          "cluster --config configs/cluster.toml`")


class ClusterError(RdmabenchError):
    pass


def world():
    """MPI's world communicator, or ClusterError saying what to install."""
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise ClusterError(f"cannot import mpi4py ({err}). {HOW_TO}") from None
    return MPI.COMM_WORLD


class Team:
    """This rank's view of the run: who runs where, and the polled collectives. ``lead`` is the rank that
    coordinates (the storage host's: it writes the result)."""

    def __init__(self, comm, host: str | None = None):
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.host = host or os.environ.get(ENV_HOST) or socket.gethostname()
        self.hosts: list[str] = comm.allgather(self.host)  # once, at the start: nothing is measured yet
        self.lead = 0

    def rank_of(self, host: str) -> int:
        return self.hosts.index(host)

    def _send(self, obj, dest: int, tag: int, deadline: float, what: str) -> None:
        req = self.comm.isend(obj, dest=dest, tag=tag)
        while not req.test()[0]:
            if time.monotonic() > deadline:
                raise ClusterError(f"{self.hosts[dest]} (rank {dest}) did not take our message in time ({what}); "
                                   "the run is stopped")
            time.sleep(POLL_S)

    def _recv(self, source: int, tag: int, deadline: float, what: str):
        while not self.comm.iprobe(source=source, tag=tag):
            if time.monotonic() > deadline:
                raise ClusterError(f"{self.hosts[source]} (rank {source}) did not answer in time ({what}); "
                                   "the run is stopped")
            time.sleep(POLL_S)
        return self.comm.recv(source=source, tag=tag)

    def sync(self, point: str, timeout: float) -> None:
        """Every rank reaches ``point`` before any goes on; past ``timeout`` s the lead names the late hosts."""
        deadline = time.monotonic() + timeout
        if self.rank != self.lead:
            self._send(point, self.lead, TAG_ARRIVE, deadline, point)
            # the lead names whoever is late once its own bound is up: wait past that, so the lead speaks first
            go = self._recv(self.lead, TAG_GO, deadline + timeout + 10, f"waiting at {point!r} for the go")
            if go != point:
                raise ClusterError(f"out of step: this rank is at {point!r}, {self.hosts[self.lead]} at {go!r}")
            return
        waiting = set(range(self.size)) - {self.rank}
        while waiting:
            for r in sorted(waiting):
                if self.comm.iprobe(source=r, tag=TAG_ARRIVE):
                    got = self.comm.recv(source=r, tag=TAG_ARRIVE)
                    if got != point:
                        raise ClusterError(f"out of step: {self.hosts[r]} is at {got!r}, the lead at {point!r}")
                    waiting.discard(r)
            if waiting and time.monotonic() > deadline:
                late = ", ".join(f"{self.hosts[r]} (rank {r})" for r in sorted(waiting))
                raise ClusterError(f"{late} did not reach {point!r} within {timeout:g} s; the run is stopped")
            if waiting:
                time.sleep(POLL_S)
        for r in range(self.size):
            if r != self.rank:
                self._send(point, r, TAG_GO, deadline + timeout, point)

    def gather(self, obj, timeout: float) -> list | None:
        """Every rank's ``obj`` at the lead, in rank order (None elsewhere)."""
        deadline = time.monotonic() + timeout
        if self.rank != self.lead:
            self._send(obj, self.lead, TAG_DATA, deadline, "sending results")
            return None
        return [obj if r == self.rank else self._recv(r, TAG_DATA, deadline, "gathering results")
                for r in range(self.size)]

    def share(self, obj, timeout: float):
        """The lead's ``obj`` at every rank."""
        deadline = time.monotonic() + timeout
        if self.rank == self.lead:
            for r in range(self.size):
                if r != self.rank:
                    self._send(obj, r, TAG_DATA, deadline, "sharing the plan")
            return obj
        return self._recv(self.lead, TAG_DATA, deadline, "waiting for the plan")

    def abort(self, message: str, code: int = 1) -> None:
        """Stop every rank now (mpirun ends the job), after saying why, with this host's name."""
        print(f"rdmabench cluster: {self.host} (rank {self.rank}): {message}", file=sys.stderr, flush=True)
        self.comm.Abort(code)
