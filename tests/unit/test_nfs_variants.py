"""The [nfs] table: NFS mount options as axes. Every key checked (the error names the file, the key and the
problem), the product of the lists expanded into the plan, one step per variant of each nfs-* transport,
and what the kernel applied compared with what was asked."""

import pytest

from rdmabench import config
from rdmabench.nfs import mounts, variants
from rdmabench.nfs.variants import Variant
from rdmabench.transports.nfs import _requested

BASE = """
handoffs = ["pc1-pc2", "finalize"]
transports = ["http", "nfs-rdma", "nfs-tcp"]
repetitions = 2
[[shapes]]
sector_size = "8MiB"
"""


def load(nfs: str, base: str = BASE):
    return config.loads(base + "[nfs]\n" + nfs + "\n", "x.toml")


def err(nfs: str, base: str = BASE) -> str:
    with pytest.raises(config.ConfigError) as info:
        load(nfs, base)
    return str(info.value)


def test_no_table_is_todays_plan():
    s = config.loads(BASE, "x.toml")
    assert s.nfs == ()
    plan = s.plan()
    assert len(plan) == 2 * 2 * 3 and all(step.variant is None for step in plan)
    assert [step.transport for step in plan[:3]] == ["http", "nfs-rdma", "nfs-tcp"]


def test_the_product_of_the_lists_in_key_order():
    s = load('nconnect = [1, 4]\nversion = ["3", "4.2"]\nrsize = "1MiB"\nwsize = [65536, "1M"]')
    assert [v.label for v in s.nfs] == [
        "v3 nconnect=1 rsize=1M wsize=64K", "v3 nconnect=1 rsize=1M wsize=1M",
        "v3 nconnect=4 rsize=1M wsize=64K", "v3 nconnect=4 rsize=1M wsize=1M",
        "v4.2 nconnect=1 rsize=1M wsize=64K", "v4.2 nconnect=1 rsize=1M wsize=1M",
        "v4.2 nconnect=4 rsize=1M wsize=64K", "v4.2 nconnect=4 rsize=1M wsize=1M"]
    v = s.nfs[-1]
    assert v == Variant("4.2", 4, 1 << 20, 1 << 20)
    assert v.requested == {"vers": "4.2", "nconnect": 4, "rsize": 1 << 20, "wsize": 1 << 20}
    assert v.options() == {"variant": "v4.2 nconnect=4 rsize=1M wsize=1M", "version": "4.2",
                           "mount_options": {"nconnect": 4, "rsize": 1 << 20, "wsize": 1 << 20}}


def test_a_single_value_or_a_number_for_the_version():
    s = load("version = 4.1")
    assert [v.label for v in s.nfs] == ["v4.1"] and s.nfs[0].options() == {"variant": "v4.1", "version": "4.1"}
    assert [v.label for v in load("version = 3").nfs] == ["v3"]
    s = load("nconnect = 8")
    assert s.nfs == (Variant(nconnect=8),) and s.nfs[0].requested == {"nconnect": 8}
    assert s.nfs[0].options() == {"variant": "nconnect=8", "mount_options": {"nconnect": 8}}


def test_plan_runs_every_variant_of_every_nfs_transport_alternating():
    s = load('version = ["3", "4.2"]\nnconnect = [1, 4]')
    plan = s.plan()
    assert len(plan) == 2 * 2 * (1 + 2 * 4)  # hand-offs x repetitions x (http + 2 nfs transports x 4 variants)
    first = [(st.transport, st.variant.label if st.variant else None) for st in plan[:9]]
    assert first == [("http", None)] + [(t, v) for t in ("nfs-rdma", "nfs-tcp") for v in
                                        ("v3 nconnect=1", "v3 nconnect=4", "v4.2 nconnect=1", "v4.2 nconnect=4")]
    assert [st.repetition for st in plan[:18]] == [0] * 9 + [1] * 9  # each repetition runs every variant
    assert all(st.variant is None for st in plan if st.transport == "http")
    assert plan[0] == ("pc1-pc2", s.shapes[0], "http", 0, None)
    for st in plan:
        assert st.handoff in s.handoffs and st.shape in s.shapes


def test_only_nfs_transports_of_a_handoff_get_variants():
    base = BASE.replace('transports = ["http", "nfs-rdma", "nfs-tcp"]', 'transports = ["http"]') + \
        '[transports_for]\n"finalize" = ["http", "nfs-tcp"]\n'
    s = load("nconnect = [1, 2, 3]", base)
    steps = {(st.handoff, st.transport, st.variant.label if st.variant else None) for st in s.plan()}
    assert steps == {("pc1-pc2", "http", None), ("finalize", "http", None),
                     ("finalize", "nfs-tcp", "nconnect=1"), ("finalize", "nfs-tcp", "nconnect=2"),
                     ("finalize", "nfs-tcp", "nconnect=3")}


@pytest.mark.parametrize("nfs, message", [
    ("proto = \"rdma\"", "x.toml: nfs.proto: unknown key; known: version, nconnect, rsize, wsize"),
    ("version = \"5\"", "x.toml: nfs.version: NFS version '5' is not one of 3, 4, 4.1, 4.2"),
    ("version = [\"3\", \"4.0\"]", "x.toml: nfs.version[1]: NFS version '4.0' is not one of 3, 4, 4.1, 4.2"),
    ("version = 4.0", "x.toml: nfs.version: NFS version 4.0 is not one of"),
    ("version = true", "x.toml: nfs.version: expected a string such as \"4.2\", got a boolean"),
    ("version = [\"4\", 4]", "x.toml: nfs.version[1]: 4 is listed twice"),
    ("nconnect = 0", "x.toml: nfs.nconnect: 0; use 1 to 16"),
    ("nconnect = [1, 17]", "x.toml: nfs.nconnect[1]: 17; use 1 to 16"),
    ("nconnect = \"4\"", "x.toml: nfs.nconnect: expected an integer, got a string ('4')"),
    ("nconnect = 2.0", "x.toml: nfs.nconnect: expected an integer, got a number"),
    ("nconnect = true", "x.toml: nfs.nconnect: expected an integer, got a boolean"),
    ("nconnect = []", "x.toml: nfs.nconnect: empty list"),
    ("nconnect = [4, 1, 4]", "x.toml: nfs.nconnect[2]: 4 is listed twice"),
    ("rsize = \"384K\"", "x.toml: nfs.rsize: '384K' is 393216 bytes; use a power of two from 4KiB to 1MiB"),
    ("rsize = \"2MiB\"", "x.toml: nfs.rsize: '2MiB' is 2097152 bytes; use a power of two"),
    ("wsize = 2048", "x.toml: nfs.wsize: 2048 is 2048 bytes; use a power of two from 4KiB to 1MiB"),
    ("wsize = [\"1M\", 1048576]", "x.toml: nfs.wsize[1]: 1048576 is listed twice"),
    ("rsize = \"lots\"", "x.toml: nfs.rsize: 'lots' is not a size"),
    ("rsize = 1.5", "x.toml: nfs.rsize: expected a size (\"1MiB\" or bytes), got a number"),
    ("rsize = [[4096]]", "x.toml: nfs.rsize[0]: expected a size"),
    ("", "x.toml: nfs: empty table"),
])
def test_every_key_is_checked(nfs, message):
    assert message in err(nfs)


def test_nfs_table_must_be_a_table_and_used():
    assert "x.toml: nfs: expected a table, got an integer" in \
        str(pytest.raises(config.ConfigError, config.loads, "nfs = 3\n" + BASE, "x.toml").value)
    msg = err("nconnect = 4", BASE.replace('"http", "nfs-rdma", "nfs-tcp"', '"http"'))
    assert msg.startswith("x.toml: nfs: no nfs-* transport in this scenario would use it")


def test_changes_name_what_the_kernel_applied_otherwise():
    asked = {"vers": "4", "nconnect": 4, "rsize": 1 << 20}
    applied = {"vers": "4.2", "nconnect": 1, "rsize": 262144, "wsize": 262144, "proto": "rdma"}
    assert variants.changes(asked, applied) == {"vers": {"requested": "4", "applied": "4.2"},
                                                "nconnect": {"requested": 4, "applied": 1},
                                                "rsize": {"requested": 1 << 20, "applied": 262144}}
    assert variants.changes({"vers": "3", "nconnect": 4}, {"vers": "3", "nconnect": 4}) == {}
    assert variants.changes({"wsize": 4096}, {}) == {"wsize": {"requested": 4096, "applied": None}}


def test_the_transport_states_what_it_asked_for():
    assert _requested("3", None) == {"vers": "3"}
    assert _requested("4.2", {"nconnect": 4, "rsize": 1 << 20}) == {"vers": "4.2", "nconnect": 4, "rsize": 1 << 20}
    assert _requested("3", "nconnect=2,hard,wsize=65536") == {"vers": "3", "nconnect": 2, "wsize": 65536}


def test_natural_order_of_labels():
    labels = ["nconnect=16", "nconnect=4", "nconnect=1"]
    assert sorted(labels, key=variants.natural_key) == ["nconnect=1", "nconnect=4", "nconnect=16"]


def test_v4_mounts_a_folder_below_the_pseudo_root():
    """The runner exports <root>/storage and <root>/work; v4 must ask for /storage, not the pseudo-root."""
    assert mounts.remote_path("/srv/x/storage", "3", root="/srv/x") == "/srv/x/storage"
    assert mounts.remote_path("/srv/x/storage", "4.2", root="/srv/x") == "/storage"
    assert mounts.remote_path("/srv/x/", "4.1", root="/srv/x") == "/"
    assert mounts.remote_path("/srv/x/storage", "4.2") == "/"  # no root known: the pseudo-root, as before
    with pytest.raises(mounts.NfsMountError, match="not under the exported root /srv/x"):
        mounts.remote_path("/srv/other", "4.2", root="/srv/x")
    argv = mounts.mount_argv("10.77.2.1", "/srv/x/work", "/mnt/m", "rdma", "4.2", root="/srv/x",
                             extra={"nconnect": 4, "rsize": 1 << 20})
    assert argv[-2] == "10.77.2.1:/work"
    o = mounts.parse_options(argv[4])
    assert o["vers"] == "4.2" and o["nconnect"] == "4" and o["rsize"] == "1048576" and o["proto"] == "rdma"
