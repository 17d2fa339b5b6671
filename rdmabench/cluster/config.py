"""A cluster file (configs/cluster.toml): who plays which role, and the two scenarios.

    name = "cluster"
    [hosts]
    storage = "storage"               # the host (as `hostname` prints it) that plays PC1 and long-term storage
    workers = ["worker1", "worker2"]  # the PC2 workers; one MPI rank on every host named here
    root = "/tmp/rdmabench/cluster"   # each host's folder for sector files (storage: its serve root)
    step_timeout = 900                # seconds a step may take before the run stops, naming who is late
    [hosts.addresses]                 # optional: where a host is reached; default: its name, resolved
    storage = "10.77.3.1"

    [fan_in]                          # a transfer scenario (as configs/default.toml) for pc1-pc2 and finalize
    workers = [1, 2]                  # how many workers move at once; 1 is the baseline the others are held to
    handoffs = ["pc1-pc2", "finalize"]
    transports = ["rdma-write", "http"]
    ...

    [all_pairs]                       # verbs between every ordered pair of hosts, one pair at a time
    tests = ["write_bw", "write_lat"]
    size = "64KiB"
    iters = 1000

Either scenario may be left out, not both. Errors read "<file>: <key>: <problem>", as for scenario files.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from .. import config as scenario_config
from ..config import ConfigError, Scenario, _check_type, _unknown
from ..units import parse_size

FAN_IN_HANDOFFS = ("pc1-pc2", "finalize")  # what several workers move against one storage host
PAIR_TESTS = ("write_bw", "read_bw", "send_bw", "write_lat", "read_lat", "send_lat")
_TOP = {"name": str, "hosts": dict, "fan_in": dict, "all_pairs": dict}
_HOSTS = {"storage": str, "workers": list, "root": str, "step_timeout": (int, float), "addresses": dict}
_PAIRS = {"tests": list, "size": (str, int), "iters": int}


@dataclass(frozen=True)
class AllPairs:
    tests: tuple[str, ...]
    size: int
    iters: int


@dataclass(frozen=True)
class Cluster:
    name: str
    path: Path
    storage: str
    workers: tuple[str, ...]
    root: Path
    step_timeout: float
    addresses: dict
    fan_in: Scenario | None
    fan_in_counts: tuple[int, ...]
    all_pairs: AllPairs | None
    raw: dict

    @property
    def hosts(self) -> tuple[str, ...]:
        return (self.storage, *self.workers)


def loads(text: str, path: Path | str = "<string>") -> Cluster:
    where = str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{where}: not valid TOML: {err}") from None
    _unknown(where, "", data, _TOP)
    for key, value in data.items():
        _check_type(where, key, value, _TOP[key])
    if "hosts" not in data:
        raise ConfigError(f"{where}: hosts: missing (required): name the storage host and the workers")
    hosts = data["hosts"]
    _unknown(where, "hosts.", hosts, _HOSTS)
    for key, value in hosts.items():
        _check_type(where, f"hosts.{key}", value, _HOSTS[key])
    storage = hosts.get("storage")
    if not storage:
        raise ConfigError(f"{where}: hosts.storage: missing (required): the host name of the storage host")
    workers = hosts.get("workers") or []
    if not workers:
        raise ConfigError(f"{where}: hosts.workers: missing or empty: name at least one worker host")
    for i, w in enumerate(workers):
        _check_type(where, f"hosts.workers[{i}]", w, str)
        if w == storage or workers.index(w) != i:
            raise ConfigError(f"{where}: hosts.workers[{i}]: {w!r} is named twice; every host plays one role")
    addresses = hosts.get("addresses", {})
    for name, addr in addresses.items():
        if name not in (storage, *workers):
            raise ConfigError(f"{where}: hosts.addresses.{name}: not one of the hosts ({storage}, {', '.join(workers)})")
        _check_type(where, f"hosts.addresses.{name}", addr, str)
    step_timeout = float(hosts.get("step_timeout", 900))
    if step_timeout <= 0:
        raise ConfigError(f"{where}: hosts.step_timeout: must be positive, got {step_timeout:g}")

    fan_in, counts = None, ()
    if "fan_in" in data:
        fan_in, counts = _fan_in(where, dict(data["fan_in"]), Path(path), len(workers))
    pairs = _all_pairs(where, data["all_pairs"]) if "all_pairs" in data else None
    if fan_in is None and pairs is None:
        raise ConfigError(f"{where}: neither [fan_in] nor [all_pairs]: give at least one scenario")
    return Cluster(name=data.get("name") or Path(path).stem, path=Path(path), storage=storage,
                   workers=tuple(workers), root=Path(hosts.get("root", "/tmp/rdmabench/cluster")),
                   step_timeout=step_timeout, addresses=dict(addresses), fan_in=fan_in, fan_in_counts=counts,
                   all_pairs=pairs, raw=data)


def _fan_in(where: str, table: dict, path: Path, n_workers: int) -> tuple[Scenario, tuple[int, ...]]:
    counts = table.pop("workers", list(range(1, n_workers + 1)))
    _check_type(where, "fan_in.workers", counts, list)
    if not counts:
        raise ConfigError(f"{where}: fan_in.workers: empty; give the numbers of workers that move at once, e.g. [1, 2]")
    for i, n in enumerate(counts):
        _check_type(where, f"fan_in.workers[{i}]", n, int)
        if not 1 <= n <= n_workers:
            raise ConfigError(f"{where}: fan_in.workers[{i}]: {n}; use 1 to {n_workers} (the workers in [hosts])")
    scenario = scenario_config.from_table(table, f"{where}: fan_in", path)
    for i, h in enumerate(scenario.handoffs):
        if h not in FAN_IN_HANDOFFS:
            raise ConfigError(f"{where}: fan_in.handoffs[{i}]: {h!r}; a fan-in moves one of "
                              f"{', '.join(FAN_IN_HANDOFFS)} (the C1 output goes to one C2 worker)")
    return scenario, tuple(dict.fromkeys(counts))


def _all_pairs(where: str, table: dict) -> AllPairs:
    _unknown(where, "all_pairs.", table, _PAIRS)
    for key, value in table.items():
        _check_type(where, f"all_pairs.{key}", value, _PAIRS[key])
    tests = table.get("tests", ["write_bw", "write_lat"])
    if not tests:
        raise ConfigError(f"{where}: all_pairs.tests: empty; name at least one of {', '.join(PAIR_TESTS)}")
    for i, t in enumerate(tests):
        if t not in PAIR_TESTS:
            raise ConfigError(f"{where}: all_pairs.tests[{i}]: unknown test {t!r}; known: {', '.join(PAIR_TESTS)}")
    try:
        size = parse_size(table.get("size", "64KiB"))
    except ValueError as err:
        raise ConfigError(f"{where}: all_pairs.size: {err}") from None
    if not 1 <= size <= 1 << 30:
        raise ConfigError(f"{where}: all_pairs.size: {size} bytes; use 1 B to 1 GiB")
    iters = table.get("iters", 1000)
    if not 1 <= iters <= 10_000_000:
        raise ConfigError(f"{where}: all_pairs.iters: {iters}; use 1 to 10000000")
    return AllPairs(tuple(dict.fromkeys(tests)), size, iters)


def load(path: Path | str) -> Cluster:
    path = Path(path)
    return loads(scenario_config.read(path), path)
