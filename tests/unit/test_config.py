"""Scenario files: the shipped ones load; every mistake names the file, the dotted key and the problem."""

from fractions import Fraction
from pathlib import Path

import pytest

from rdmabench import config
from rdmabench.errors import RdmabenchError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

GOOD = """
handoffs = ["pc1-pc2", "c1-c2"]
transports = ["http", "shared"]
[transports_for]
"c1-c2" = ["http"]
[[shapes]]
sector_size = "8MiB"
"""


@pytest.mark.parametrize("name", ["default.toml", "sealing-32g.toml", "c1-handoff.toml", "nfs-sweep.toml"])
def test_shipped_configs_load(name):
    s = config.load(CONFIGS / name)
    assert s.handoffs and s.transports and s.shapes and s.repetitions >= 1


def test_default_is_small_enough_for_the_lab():
    s = config.load(CONFIGS / "default.toml")
    assert s.transports == ("http", "shared", "rdma-write", "rdma-read", "nfs-rdma", "nfs-tcp")
    assert s.handoffs == ("pc1-pc2", "finalize", "c1-c2") and s.repetitions == 3
    assert {sh.sector_size for sh in s.shapes} == {8 << 20, 32 << 30}
    for h in s.handoffs:
        for sh in s.shapes:
            assert s.bytes_per_transfer(h, sh) <= 64 << 20
    # the demo announces only what runs: C1 output over http and rdma-write alone (84, not 108)
    assert len(s.plan()) == 2 * 3 * (6 + 6) + 2 * 3 * 2
    assert {t for h, _, t, *_ in s.plan() if h == "c1-c2"} == {"http", "rdma-write"}


def test_nfs_sweep_runs_every_variant_beside_http():
    s = config.load(CONFIGS / "nfs-sweep.toml")
    assert s.transports == ("http", "nfs-rdma", "nfs-tcp") and len(s.nfs) == 8
    assert {v.label for v in s.nfs} == {f"v{v} nconnect={n} rsize={r}" for v in ("3", "4.2") for n in (1, 4)
                                        for r in ("256K", "1M")}
    assert len(s.plan()) == 2 * (1 + 2 * 8) * 3
    assert config.load(CONFIGS / "default.toml").nfs == ()  # the demo stays as long as it was


def test_sealing_32g_is_real_size():
    s = config.load(CONFIGS / "sealing-32g.toml")
    assert s.shapes == (config.Shape(32 << 30, Fraction(1)),)
    assert s.bytes_per_transfer("pc1-pc2", s.shapes[0]) == 481_036_337_120


def test_defaults_and_plan(tmp_path):
    s = config.loads(GOOD, "x.toml")
    assert s.name == "x" and s.repetitions == 3 and s.miner == 1000 and s.http_bind == "127.0.0.1"
    plan = s.plan()
    assert len(plan) == 1 * 3 * 2 + 1 * 3 * 1  # pc1-pc2 over both, c1-c2 over its own list
    assert [p[2] for p in plan[:4]] == ["http", "shared", "http", "shared"]  # alternating
    assert {(h, t) for h, _, t, *_ in plan} == {("pc1-pc2", "http"), ("pc1-pc2", "shared"), ("c1-c2", "http")}


def test_a_transport_of_one_handoffs_list_stays_there():
    """A transport named only under [transports_for] ran at every hand-off without a list of its own,
    past the check that it can carry it (nfs-tcp on the C1 output)."""
    s = config.loads('handoffs = ["pc1-pc2", "c1-c2"]\ntransports = ["http"]\n[transports_for]\n'
                     '"pc1-pc2" = ["http", "nfs-tcp"]\n[[shapes]]\nsector_size = "8MiB"\n', "x.toml")
    assert s.transports == ("http", "nfs-tcp")  # every transport the scenario uses
    assert {(h, t) for h, _, t, *_ in s.plan()} == {("pc1-pc2", "http"), ("pc1-pc2", "nfs-tcp"), ("c1-c2", "http")}


@pytest.mark.parametrize("name", ["default.toml", "sealing-32g.toml", "c1-handoff.toml", "nfs-sweep.toml"])
def test_shipped_configs_hold_no_impossible_pair(name):
    from rdmabench import transports

    s = config.load(CONFIGS / name)
    for h, _, t, *_ in s.plan():
        kind = "blob" if config.HANDOFF_STAGE[h] is None else "file"
        assert kind in transports.get(t).capabilities.kinds, (h, t)


def test_an_impossible_pair_is_refused_before_anything_runs():
    """c1-handoff.toml listed rdma-read: its 20 runs were skipped silently while progress counted them."""
    text = 'handoffs = ["c1-c2"]\ntransports = ["http", "rdma-read"]\n[[shapes]]\nsector_size = "32GiB"\n'
    msg = _err(text)
    assert msg.startswith("configs/x.toml: transports: 'rdma-read' cannot carry the c1-c2 hand-off")
    assert "blob" in msg and "[transports_for]" in msg
    msg = _err(GOOD.replace('"c1-c2" = ["http"]', '"c1-c2" = ["shared"]'))
    assert msg.startswith("configs/x.toml: transports_for.c1-c2: 'shared' cannot carry the c1-c2 hand-off")
    assert "not one of this scenario's handoffs" in _err(GOOD.replace('"c1-c2" = ["http"]', '"finalize" = ["http"]'))


def _err(text, path="configs/x.toml"):
    with pytest.raises(RdmabenchError) as info:
        config.loads(text, path)
    return str(info.value)


@pytest.mark.parametrize("text,expected", [
    (GOOD.replace('"shared"]', '"shared", "htp"]'),
     "configs/x.toml: transports[2]: unknown transport 'htp'; known: http, shared, rdma-write, rdma-read, nfs-rdma, nfs-tcp"),
    (GOOD.replace('"c1-c2"]', '"c2-c3"]'),
     "configs/x.toml: handoffs[1]: unknown hand-off 'c2-c3'; known: pc1-pc2, finalize, c1-c2"),
    ("colour = 1\n" + GOOD, "configs/x.toml: colour: unknown key; known: name, handoffs"),
    (GOOD.replace('sector_size = "8MiB"', 'sector_size = "3GiB"'),
     "configs/x.toml: shapes[0].sector_size: sector size '3GiB' is not one Lotus seals"),
    (GOOD.replace('sector_size = "8MiB"', 'sector_size = "big"'), "configs/x.toml: shapes[0].sector_size: 'big' is not a size"),
    (GOOD + 'scale = 2\n', "configs/x.toml: shapes[0].scale: scale 2 must be in (0, 1]"),
    (GOOD + 'scale = "1/0"\n', "configs/x.toml: shapes[0].scale: scale '1/0' is not a number"),
    (GOOD + 'sizes = 1\n', "configs/x.toml: shapes[0].sizes: unknown key; known: sector_size, scale"),
    ('repetitions = "3"\n' + GOOD, "configs/x.toml: repetitions: expected an integer, got a string ('3')"),
    ('repetitions = true\n' + GOOD, "configs/x.toml: repetitions: expected an integer, got a boolean"),
    ('repetitions = 0\n' + GOOD, "configs/x.toml: repetitions: must be at least 1"),
    ('transports = "http"\n' + GOOD.replace('transports = ["http", "shared"]', ''),
     "configs/x.toml: transports: expected an array, got a string"),
    (GOOD.replace('transports = ["http", "shared"]', 'transports = ["http", 7]'),
     "configs/x.toml: transports[1]: expected a string, got an integer"),
    (GOOD.replace('transports = ["http", "shared"]', 'transports = ["http", "http"]'),
     "configs/x.toml: transports[1]: transport 'http' is listed twice"),
    (GOOD.replace('transports = ["http", "shared"]', 'transports = []'), "configs/x.toml: transports: empty"),
    (GOOD.replace('transports = ["http", "shared"]', ''), "configs/x.toml: transports: missing (required)"),
    ('[http]\nbind = ""\n' , "configs/x.toml: handoffs: missing (required)"),
    (GOOD + '[http]\nport = 70000\n', "configs/x.toml: http.port: 70000 is not a TCP port"),
    (GOOD + '[http]\nbind = ""\n', "configs/x.toml: http.bind: empty"),
    (GOOD + '[http]\naddr = "x"\n', "configs/x.toml: http.addr: unknown key; known: bind, port"),
    (GOOD + 'token = ""\n', "configs/x.toml: shapes[0].token: unknown key"),
    ('token = ""\n' + GOOD, "configs/x.toml: token: empty"),
    (GOOD + '[[shapes]]\nscale = 0.5\n', "configs/x.toml: shapes[1].sector_size: missing (required)"),
    ("handoffs = [", "configs/x.toml: not valid TOML"),
])
def test_errors_name_file_key_problem(text, expected):
    assert expected in _err(text)


def test_error_is_an_rdmabench_error_and_unreadable_file(tmp_path):
    with pytest.raises(config.ConfigError, match="nope.toml: cannot read"):
        config.load(tmp_path / "nope.toml")
    p = tmp_path / "s.toml"
    p.write_text(GOOD.replace("8MiB", "9MiB"))
    with pytest.raises(RdmabenchError, match=str(p) + ": shapes"):
        config.load(p)


MINIMAL = 'handoffs = ["pc1-pc2"]\ntransports = ["rdma-write"]\n[[shapes]]\nsector_size = "8MiB"\n'


def test_transfer_table_defaults_are_filled_in():
    s = config.loads(MINIMAL, "x.toml")
    assert s.transfer == config.TRANSFER_DEFAULTS
    s = config.loads(MINIMAL + '[transfer]\nchunk = "256KiB"\nstreams = 4\nparallel = 5\nverify = "reread"\n'
                     'direct = true\ncold = true\n', "x.toml")
    assert s.transfer == {"chunk": 256 << 10, "inflight": 16, "streams": 4, "parallel": 5, "verify": "reread",
                          "direct": True, "cold": True}


@pytest.mark.parametrize("body, message", [
    ('chunk = "3K"', "x.toml: transfer.chunk: 3072 bytes; use a multiple of 4KiB"),
    ('chunk = "lots"', "x.toml: transfer.chunk: 'lots' is not a size"),
    ("streams = 0", "x.toml: transfer.streams: 0; use 1 to 64"),
    ("parallel = 65", "x.toml: transfer.parallel: 65; use 1 to 64"),
    ('verify = "maybe"', "x.toml: transfer.verify: 'maybe'; use one of stream, reread"),
    ("direct = 1", "x.toml: transfer.direct: expected a boolean, got an integer"),
    ("slots = 4", "x.toml: transfer.slots: unknown key"),
    ('chunk = "64MiB"\ninflight = 32', "x.toml: transfer: chunk x inflight x streams is"),
])
def test_transfer_table_errors_name_the_key(body, message):
    with pytest.raises(config.ConfigError) as err:
        config.loads(MINIMAL + "[transfer]\n" + body + "\n", "x.toml")
    assert message in str(err.value)
