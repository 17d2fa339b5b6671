"""`rdmabench cluster`: one rank per host, roles from the cluster file, one result file at the storage host.

    mpirun -H storage,worker1,worker2 .venv/bin/rdmabench cluster --config configs/cluster.toml

Every rank reads the same file, checks that the ranks run on exactly the hosts it names (one each),
and starts rdmabench's `serve` daemon on its own address (the storage host's answers the workers'
transfers, every host's answers the all-pairs verbs tests). The storage rank leads: it shares the
table of addresses, paces the steps (team.Team), gathers every row and every host's context, and
writes the result. A failure on any rank stops every rank (MPI_Abort) with a message naming its host.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Callable

from .. import devices, transports
from ..results.model import Result
from ..serve import Daemon
from ..wire import Channel
from . import fanin, figures, matrix
from .config import Cluster
from .team import ClusterError, Team

CONNECT_WAIT_S = 60.0


def check_roles(cluster: Cluster, hosts: list[str]) -> None:
    """The ranks run on exactly the file's hosts, one rank each; else ClusterError naming every host that is off."""
    listed = ",".join(cluster.hosts)
    problems = [f"{h} has no rank" for h in cluster.hosts if h not in hosts]
    problems += [f"rank {r} runs on {h}, which the file does not name" for r, h in enumerate(hosts)
                 if h not in cluster.hosts]
    problems += [f"{h} runs {hosts.count(h)} ranks" for h in dict.fromkeys(hosts) if hosts.count(h) > 1]
    if problems:
        raise ClusterError(f"{cluster.path}: {'; '.join(problems)} (its hosts: {', '.join(cluster.hosts)}; the ranks "
                           f"run on: {', '.join(hosts)}). Start one rank on every host of the file, e.g. "
                           f"mpirun -H {listed}")


def address_of(cluster: Cluster, host: str) -> str:
    """Where ``host`` is reached: [hosts.addresses], else its name resolved (never a loopback address)."""
    addr = cluster.addresses.get(host)
    if addr is not None:
        return addr  # as the file says (a loopback address too: several ranks on one machine, as in the tests)
    try:
        addr = socket.gethostbyname(host)
    except OSError as err:
        raise ClusterError(f"cannot resolve {host} ({err}): set [hosts.addresses] {host} = \"<address>\" in "
                           f"{cluster.path}") from None
    if addr.startswith("127."):
        raise ClusterError(f"{host} resolves to {addr}, a loopback address the other hosts cannot reach: set "
                           f"[hosts.addresses] {host} = \"<its address on the cluster's link>\" in {cluster.path}")
    return addr


def needs_device(cluster: Cluster) -> bool:
    fan = cluster.fan_in
    return bool(cluster.all_pairs) or bool(fan and any(transports.capabilities(t).needs_device
                                                       for t in fan.transports))


class Rank:
    def __init__(self, cluster: Cluster, team: Team, device: str | None, gid_index: int | None,
                 say: Callable[[str], None]):
        self.c, self.team, self.say = cluster, team, say
        check_roles(cluster, team.hosts)
        team.lead = team.rank_of(cluster.storage)
        self.me = team.host
        self.role = "storage" if self.me == cluster.storage else "worker"
        self.dev = devices.choose(device, required=needs_device(cluster))
        self.device = self.dev.name if self.dev else None
        self.addr = address_of(cluster, self.me)
        self.daemon = Daemon(self.addr, 0, self.device, gid_index, root=cluster.root / self.me / "serve")
        self.gid_index = self.daemon.gid_index
        me = {"host": self.me, "role": self.role, "rank": team.rank, "address": self.addr, "port": self.daemon.port,
              "context": self.daemon.context}
        gathered = team.gather(me, cluster.step_timeout)
        self.table = {h["host"]: h for h in team.share(gathered, cluster.step_timeout)}

    def sync_for(self, label: str):
        return lambda point: self.team.sync(f"{label} {point}", self.c.step_timeout)

    # -- fan-in
    def fan_in(self) -> list[dict]:
        steps = fanin.plan(self.c)
        rows: list[dict] = []
        side = self._worker_side() if self.role == "worker" else None
        try:
            for i, (step, n) in enumerate(steps):
                label = fanin.label(step, n)
                sync = self.sync_for(label)
                if side is None:
                    self.say(f"[{i + 1}/{len(steps)}] {label}")
                    cpu = fanin.storage_step(sync)
                    got = [r for r in self.team.gather(None, self.c.step_timeout) if r]
                    rows += got + [fanin.aggregate(step, n, got, cpu, self.me)]
                else:
                    self.team.gather(side.step(step, n, sync), self.c.step_timeout)
        finally:
            if side is not None:
                try:
                    side.storage.chan.send("bye")
                except Exception:  # noqa: BLE001  the connection is gone: the error that ended the run says why
                    pass
                side.storage.chan.close()
        return rows

    def _worker_side(self) -> fanin.WorkerSide:
        storage = self.table[self.c.storage]
        try:
            chan = Channel.connect(storage["address"], storage["port"], "transfer", timeout=10, wait=CONNECT_WAIT_S)
        except Exception as err:
            raise ClusterError(f"cannot reach the storage host {self.c.storage} at {storage['address']}:"
                               f"{storage['port']}: {err}") from None
        options = {**self.c.fan_in.transfer, "host": self.me, "peer": f"{storage['address']}:{storage['port']}"}
        if self.device:
            options.update(device=self.device, gid_index=self.gid_index)
        if any(transports.capabilities(t).needs_export for t in self.c.fan_in.transports):
            options.update(server=storage["address"], nfs_export=chan.greeting.get("root"))
        return fanin.WorkerSide(self.c, self.c.workers.index(self.me), self.me, chan, chan.sock.getsockname()[0],
                                options)

    # -- all pairs
    def all_pairs(self) -> list[dict]:
        steps = matrix.plan(self.c)
        rows: list[dict] = []
        for i, pair in enumerate(steps):
            label = matrix.label(pair)
            sync = self.sync_for(label)
            if self.team.rank == self.team.lead:
                self.say(f"[{i + 1}/{len(steps)}] {label}")
            sync("ready")
            mine = None
            if pair[0] == self.me:
                far = self.table[pair[1]]
                mine = matrix.run_pair(self.c, pair, self.dev, (far["address"], far["port"]), CONNECT_WAIT_S)
            sync("done")
            got = self.team.gather(mine, self.c.step_timeout)
            if got is not None:
                rows += [r for part in got if part for r in part]
        return rows

    def result(self, rows: list[dict], options: dict) -> Result:
        hosts = {h: {k: v for k, v in t.items() if k != "host"} for h, t in self.table.items()}
        return Result(kind="cluster", context=self.daemon.context, rows=rows,
                      options={"config": str(self.c.path), "cluster": self.c.raw, **options, "hosts": hosts})

    def close(self) -> None:
        self.daemon.close()


def run(cluster: Cluster, team: Team, device: str | None, gid_index: int | None, output: Path | None,
        say: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True)) -> Path | None:
    """This rank's whole part; the lead returns the result file's path, the others None."""
    rank = Rank(cluster, team, device, gid_index, say)
    try:
        rows = []
        if cluster.fan_in:
            rows += rank.fan_in()
        if cluster.all_pairs:
            rows += rank.all_pairs()
        team.sync("end", cluster.step_timeout)
    finally:
        rank.close()
    if team.rank != team.lead:
        return None
    result = rank.result(rows, {"device": rank.device, "gid_index": rank.gid_index,
                                "fan_in_workers": list(cluster.fan_in_counts)})
    out = result.publish(output)
    for text in (figures.render_fan_in(rows), figures.render_matrix(rows)):
        if text:
            print(text + "\n", flush=True)
    print(f"environment: {result.context.get('environment')}", flush=True)
    print(f"result file: {out}", flush=True)
    return out
