"""The runner and the CLI decide by what a transport declares, never by its name: transports they have
never heard of, registered here, are driven by their capabilities alone."""

import re
import time
from pathlib import Path

import pytest

from rdmabench import config, transports
from rdmabench.errors import RdmabenchError
from rdmabench.transfer import cli as transfer_cli
from rdmabench.transfer import runner
from rdmabench.transfer.hosts import LocalHost
from rdmabench.transports.base import _REGISTRY, Capabilities, PassiveEnd, TransferRecord, Transport

ALL = frozenset({"file", "dir", "blob"})
ROOT = Path(__file__).resolve().parents[2] / "rdmabench"


@pytest.fixture
def calls():
    """Register fake transports for one test; what they were asked to do is appended to the list."""
    log: list[tuple] = []

    def make(name: str, caps: Capabilities) -> str:
        class Fake(Transport):
            capabilities = caps

            @classmethod
            def start_passive(cls, ctx, kind):
                log.append(("passive", name, ctx.storage_root.parent.name))
                return PassiveEnd(info={"host": "fake"}, stop=lambda: {})

            def prepare(self, ctx):
                self.ctx = ctx
                log.append(("prepare", name, ctx.storage_root.parent.name, dict(ctx.options), ctx.peer_info))

            def ready(self, item):
                log.append(("ready", name, item.label))
                time.sleep(0.2 if "slow-ready" in name else 0)  # untimed: never in the figures

            def move(self, item):
                time.sleep(0.05 if "slow" in name else 0)
                return TransferRecord(transport=name, item=item.label, bytes=item.size, verified=True,
                                      digest=item.digest, phases={"verify_s": 0.01})

        Fake.name = name
        transports.register(Fake)
        return name

    yield type("Calls", (), {"log": log, "make": staticmethod(make)})
    for name in [n for n in _REGISTRY if n.startswith("fake-")]:
        del _REGISTRY[name]


def scenario(tmp_path, names, handoffs=("pc1-pc2", "finalize")):
    text = (f"handoffs = {list(handoffs)}\ntransports = {list(names)}\nrepetitions = 1\n"
            f'storage_dir = "{tmp_path}/storage"\nwork_dir = "{tmp_path}/work"\n[[shapes]]\nsector_size = "2KiB"\n')
    return config.loads(text, tmp_path / "fake.toml")


def hosts(tmp_path):
    return (LocalHost("worker", tmp_path / "worker" / "storage", tmp_path / "worker" / "work", "127.0.0.1", "t"),
            LocalHost("storage", tmp_path / "storage" / "storage", tmp_path / "storage" / "work", "127.0.0.1", "t"))


def test_a_pull_runs_on_the_destination_a_push_on_the_source(tmp_path, calls):
    pull = calls.make("fake-pull", Capabilities(kinds=ALL))
    push = calls.make("fake-push", Capabilities(kinds=ALL, source_active=ALL))
    worker, storage = hosts(tmp_path)
    result = runner.run(scenario(tmp_path, [pull, push]), worker, storage)
    ends = {(r["measured"]["handoff"], r["measured"]["transport"]): r["detail"]["active_end"] for r in result.rows}
    assert ends == {("pc1-pc2", pull): "worker", ("finalize", pull): "storage",
                    ("pc1-pc2", push): "storage", ("finalize", push): "worker"}
    log = [c for c in calls.log if c[0] != "ready"]
    pairs = list(zip(log[::2], log[1::2]))  # per transfer: the passive end starts, the active prepares
    assert [(p[0], a[0]) for p, a in pairs] == [("passive", "prepare")] * 4
    assert {(a[1], a[2]) for _, a in pairs} == {(pull, "worker"), (pull, "storage"), (push, "storage"), (push, "worker")}
    assert all(p[1] == a[1] and p[2] != a[2] for p, a in pairs)  # each transfer's passive end ran on the other host
    assert all(c[4] == {"host": "fake"} for c in calls.log if c[0] == "prepare")  # handed over


def test_a_blob_can_be_sent_by_its_source_while_files_are_fetched(tmp_path, calls):
    name = calls.make("fake-mixed", Capabilities(kinds=ALL, source_active=frozenset({"blob"})))
    worker, storage = hosts(tmp_path)
    result = runner.run(scenario(tmp_path, [name], ("pc1-pc2", "c1-c2")), worker, storage)
    ends = {r["measured"]["handoff"]: (r["detail"]["active_end"], r["detail"]["destination"]) for r in result.rows}
    assert ends == {"pc1-pc2": ("worker", "worker"), "c1-c2": ("worker", "storage")}


def test_client_only_runs_both_directions_on_the_worker_with_the_export(tmp_path, calls):
    name = calls.make("fake-client", Capabilities(client_only=True, needs_export=True))
    worker, storage = hosts(tmp_path)
    runner.run(scenario(tmp_path, [name]), worker, storage, options={"nfs_export": "/exp"})
    assert not [c for c in calls.log if c[0] == "passive"]  # its server is not rdmabench's to start
    prepared = [c for c in calls.log if c[0] == "prepare"]
    assert [c[2] for c in prepared] == ["worker", "worker"]
    assert [(c[3]["direction"], c[3]["export"]) for c in prepared] == [("pull", "/exp/storage"), ("push", "/exp/work")]


def test_in_place_leaves_the_destination_alone(tmp_path, calls, monkeypatch):
    name = calls.make("fake-in-place", Capabilities(source_active=frozenset({"file", "dir"}), in_place=True))
    copy = calls.make("fake-copy", Capabilities())
    touched = []
    monkeypatch.setattr(LocalHost, "expect", lambda self, descs: touched.append(("expect", self.name)))
    monkeypatch.setattr(LocalHost, "cleanup", lambda self, descs: touched.append(("cleanup", self.name)))
    worker, storage = hosts(tmp_path)
    runner.run(scenario(tmp_path, [name], ("pc1-pc2",)), worker, storage)
    assert touched == []
    runner.run(scenario(tmp_path, [copy], ("pc1-pc2",)), worker, storage)
    assert touched == [("expect", "worker"), ("cleanup", "worker")]


def test_the_runner_times_each_move_and_records_the_phases(tmp_path, calls):
    name = calls.make("fake-slow-ready", Capabilities())
    worker, storage = hosts(tmp_path)
    row = runner.run(scenario(tmp_path, [name], ("pc1-pc2",)), worker, storage).rows[0]
    items = row["detail"]["items"]
    assert [c[2] for c in calls.log if c[0] == "ready"] == [i["item"] for i in items]  # before each move
    for item in items:
        assert 0.05 <= item["seconds"] < 0.2  # the move's wall time, not ready()'s
        assert item["phases"] == {"verify_s": 0.01}
    assert row["seconds"] == sum(i["seconds"] for i in items)
    assert row["metric"] == "throughput_MiBps"
    assert row["value"] == pytest.approx(row["bytes"] / row["seconds"] / (1 << 20))
    assert set(row["cpu"]["per_gb"]) >= {"client_process", "server_process"}


def test_the_cli_asks_for_a_device_only_for_what_needs_one(tmp_path, calls, monkeypatch):
    name = calls.make("fake-verbs", Capabilities(needs_device=True))
    other = calls.make("fake-tcp", Capabilities())
    monkeypatch.setattr(transfer_cli.devices, "choose", lambda *a, **k: None)  # a host without RDMA
    path = tmp_path / "v.toml"
    path.write_text(f'transports = ["{other}", "{name}"]\nhandoffs = ["pc1-pc2"]\nstorage_dir = "{tmp_path}/s"\n'
                    f'work_dir = "{tmp_path}/w"\n[[shapes]]\nsector_size = "2KiB"\n')
    with pytest.raises(RdmabenchError, match=f"transports {name} need an RDMA device"):
        transfer_cli.run_scenario(path, None, None, None, 0, tmp_path / "r.json")
    assert transfer_cli.needing(config.load(path), "needs_device") == [name]
    assert transfer_cli.needing(config.load(path), "needs_export") == []


@pytest.mark.parametrize("module", ["transfer/runner.py", "transfer/cli.py", "transfer/hosts.py", "transfer/agent.py",
                                    "cli.py", "cli_serve.py"])
def test_the_runner_and_the_cli_name_no_transport(module):
    code = (ROOT / module).read_text()
    for name in transports.KNOWN:
        assert not re.search(rf"[\"']{re.escape(name)}[\"'{{]", code), f"{module} names the transport {name!r}"
    assert not re.search(r"[\"'](rdma|nfs)-[\"']", code), f"{module} tells transports apart by their names"
