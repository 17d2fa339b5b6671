"""`rdmabench live` against a stand-in that answers as a running Lotus or Curio does (lotus_standin.py)."""

import json
import os
import secrets
import stat

import pytest
from click.testing import CliRunner

import lotus_standin
from rdmabench import integrity, live, live_auth
from rdmabench.cli import cli
from rdmabench.results.model import load
from rdmabench.workloads import sector

SID = "s-t01000-5"
ADMIN = ["read", "write", "sign", "admin"]


def _snapshot(root):
    """Every source file's digest and mtime: what must not change."""
    out = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = os.path.join(dirpath, n)
            out[p] = (integrity.digest_file(p), os.stat(p).st_mtime_ns)
    return out


@pytest.fixture
def node(tmp_path, request):
    """A stand-in node holding one sector; request.param = (kind, sector size, stage)."""
    kind, size, stage = getattr(request, "param", ("lotus", "2KiB", "pc1"))
    gen = sector.generate(sector.shape(size, stage, number=5), tmp_path / "storage")
    secret = secrets.token_bytes(32)
    handle = lotus_standin.serve(tmp_path / "storage", secret, kind)
    handle.gen, handle.secret, handle.kind = gen, secret, kind
    yield handle
    handle.stop()


def _token_file(tmp_path, token, name="token"):
    path = tmp_path / name
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path


def _live(node, tmp_path, *extra, handoff="pc1-pc2", token=None, env=None):
    token = token or lotus_standin.make_token(node.secret, ADMIN)
    args = ["live", "--handoff", handoff, "--sector", SID, "--dest", str(tmp_path / "scratch"),
            "--url", f"{node.url}/remote", "--kind", node.kind, "-o", str(tmp_path / "live.json"), *extra]
    if "--secret-file" not in extra:
        args += ["--token-file", str(_token_file(tmp_path, token))]
    return CliRunner().invoke(cli, args, env=env or {}), token


@pytest.mark.parametrize("node", [("lotus", "2KiB", "pc1"), ("lotus", "8MiB", "pc1")], indirect=True)
def test_a_live_run_fetches_the_sector_intact_and_marks_its_rows_live(node, tmp_path):
    before = _snapshot(node.gen.root)
    done, token = _live(node, tmp_path, "--repetitions", "2", "--keep")
    assert done.exit_code == 0, done.output
    shape, scratch = node.gen.shape, tmp_path / "scratch"
    assert (scratch / "sealed" / SID).read_bytes() == node.gen.sealed_path.read_bytes()
    for f in shape.cache_files:
        assert (scratch / "cache" / SID / f.name).read_bytes() == (node.gen.cache_path / f.name).read_bytes()
    result = load(tmp_path / "live.json")
    assert result.kind == "transfer" and len(result.rows) == 2
    for rep, row in enumerate(result.rows):
        assert row["measured"] == {"handoff": "pc1-pc2", "transport": "http", "sector": shape.label(),
                                   "variant": "live lotus"}
        assert row["repetition"] == rep and row["metric"] == "throughput_MiBps"
        assert row["bytes"] == shape.total_bytes and row["seconds"] > 0
        assert row["value"] == pytest.approx(row["bytes"] / row["seconds"] / (1 << 20))
        d = row["detail"]
        assert d["live"] is True and d["source"] == f"127.0.0.1:{node.port}" and d["sector_id"] == SID
        assert d["protocol"] == "lotus" and d["streams"] == 1 and d["parallel"] == 1
        assert d["files"] == len(shape.files) and d["sector_size"] == shape.sector_size
        # nothing was compared (a live node offers no digest), but what arrived is what the source holds
        assert d["verified"] is False and d["verification"].startswith("none compared")
        assert d["digests"] == {f"sealed/{SID}": node.gen.sealed_digest, f"cache/{SID}": node.gen.cache_digest}
        assert row["cpu"]["server"] is None and row["cpu"]["client"]["process"]["cpu_s"] > 0
        assert set(row["cpu"]["per_gb"]) >= {"client_process"} and "server_process" not in row["cpu"]["per_gb"]
    # probe once, then the two GETs per repetition: only ever GET, and the source untouched
    assert node.requests == [("GET", f"/remote/sealed/{SID}")] + [
        ("GET", f"/remote/sealed/{SID}"), ("GET", f"/remote/cache/{SID}")] * 2
    assert _snapshot(node.gen.root) == before
    raw = (tmp_path / "live.json").read_bytes()
    assert token.encode() not in raw and token not in done.output
    assert token.split(".")[2].encode() not in raw  # not even the signature


def test_the_scratch_is_emptied_without_keep_and_nothing_else_is_removed(node, tmp_path):
    scratch = tmp_path / "scratch"
    (scratch / "cache").mkdir(parents=True)
    (scratch / "cache" / "someone-elses").write_text("x")
    done, _ = _live(node, tmp_path, "--repetitions", "2")
    assert done.exit_code == 0, done.output
    assert not (scratch / "sealed").exists() and os.listdir(scratch / "cache") == ["someone-elses"]
    assert "holds nothing of this run" in done.output


@pytest.mark.parametrize("node", [("curio", "2KiB", "finalized")], indirect=True)
def test_curio_finalize_with_a_token_signed_here_from_its_secret(node, tmp_path):
    secret_file = tmp_path / "curio.secret"
    secret_file.write_text(__import__("base64").b64encode(node.secret).decode() + "\n")
    secret_file.chmod(0o600)
    before = _snapshot(node.gen.root)
    done, _ = _live(node, tmp_path, "--secret-file", str(secret_file), "--repetitions", "1", handoff="finalize")
    assert done.exit_code == 0, done.output
    row = load(tmp_path / "live.json").rows[0]
    assert row["measured"]["variant"] == "live curio" and row["measured"]["handoff"] == "finalize"
    assert row["bytes"] == node.gen.shape.total_bytes  # Curio's tar ends with end-of-archive blocks: read through
    assert row["detail"]["digests"][f"cache/{SID}"] == node.gen.cache_digest
    assert {m for m, _ in node.requests} == {"GET"} and _snapshot(node.gen.root) == before
    assert node.secret.hex() not in (tmp_path / "live.json").read_text()


def test_a_refused_token_is_a_clear_error_naming_the_url_but_never_the_token(node, tmp_path):
    wrong = lotus_standin.make_token(secrets.token_bytes(32), ADMIN)  # signed with another secret
    done, _ = _live(node, tmp_path, token=wrong)
    assert done.exit_code == 1 and "HTTP 401" in done.output and f"{node.url}/remote/sealed/{SID}" in done.output
    assert wrong not in done.output and not (tmp_path / "live.json").exists()
    reader = lotus_standin.make_token(node.secret, ["read", "write"])  # verifies, but not admin
    done, _ = _live(node, tmp_path, token=reader)
    assert "HTTP 401" in done.output and "missing write permission" in done.output and reader not in done.output


def test_a_sector_the_node_does_not_hold_is_a_clear_error(node, tmp_path):
    token = _token_file(tmp_path, lotus_standin.make_token(node.secret, ADMIN))
    done = CliRunner().invoke(cli, ["live", "--handoff", "pc1-pc2", "--sector", "s-t01000-77", "--dest",
                                    str(tmp_path / "scratch"), "--token-file", str(token)],
                              env={"RDMABENCH_LIVE_URL": node.url})
    assert done.exit_code == 1 and "HTTP 500" in done.output and "s-t01000-77" in done.output
    assert "does not hold" in done.output.replace("\n", " ") or "not hold" in done.output


def test_the_token_may_come_from_the_environment(node, tmp_path):
    token = lotus_standin.make_token(node.secret, ADMIN)
    done = CliRunner().invoke(cli, ["live", "--handoff", "pc1-pc2", "--sector", SID, "--dest", str(tmp_path / "s"),
                                    "--repetitions", "1", "-o", str(tmp_path / "live.json")],
                              env={"RDMABENCH_LIVE_URL": node.url, "RDMABENCH_LIVE_TOKEN": token})
    assert done.exit_code == 0, done.output
    assert token not in (tmp_path / "live.json").read_text()
    assert load(tmp_path / "live.json").options["token"] == "$RDMABENCH_LIVE_TOKEN"


@pytest.mark.parametrize("node", [("lotus", "2KiB", "pc1")], indirect=True)
def test_finalize_of_a_sector_that_is_not_finalized_stops_and_leaves_nothing(node, tmp_path):
    done, _ = _live(node, tmp_path, "--repetitions", "1", handoff="finalize")
    assert done.exit_code == 1 and "not finalized" in done.output
    assert not (tmp_path / "scratch" / "sealed").exists() and not (tmp_path / "scratch" / "cache").exists()


@pytest.mark.parametrize("node", [("lotus", "2KiB", "finalized")], indirect=True)
def test_pc1_pc2_of_a_finalized_sector_says_so(node, tmp_path):
    done, _ = _live(node, tmp_path, "--repetitions", "1")
    assert done.exit_code == 1 and "no layers" in done.output and "--handoff finalize" in done.output


def test_a_sealed_file_that_is_no_sector_size_is_refused(node, tmp_path):
    (node.gen.root / "sealed" / "s-t01000-6").write_bytes(b"x" * 3000)
    token = _token_file(tmp_path, lotus_standin.make_token(node.secret, ADMIN))
    done = CliRunner().invoke(cli, ["live", "--handoff", "pc1-pc2", "--sector", "s-t01000-6", "--dest",
                                    str(tmp_path / "s"), "--url", node.url, "--token-file", str(token)])
    assert done.exit_code == 1 and "3,000 bytes, not a sector size" in done.output and "32GiB" in done.output


def test_it_never_writes_over_what_is_there_nor_into_a_storage_path(node, tmp_path):
    creds = live_auth.Credentials(lotus_standin.make_token(node.secret, ADMIN), "test")
    with pytest.raises(live.LiveError, match="storage path"):
        live.run(node.url, creds, "pc1-pc2", [SID], node.gen.root)
    (tmp_path / "scratch" / "sealed").mkdir(parents=True)
    (tmp_path / "scratch" / "sealed" / SID).write_text("mine")
    with pytest.raises(live.LiveError, match="already exists"):
        live.run(node.url, creds, "pc1-pc2", [SID], tmp_path / "scratch")
    assert (tmp_path / "scratch" / "sealed" / SID).read_text() == "mine"
    assert node.requests == []  # refused before anything was sent


def test_no_room_is_refused_before_any_byte_is_fetched(node, tmp_path, monkeypatch):
    creds = live_auth.Credentials(lotus_standin.make_token(node.secret, ADMIN), "test")
    monkeypatch.setattr(integrity, "free_bytes", lambda path: (1000, tmp_path))
    with pytest.raises(integrity.InsufficientSpace):
        live.run(node.url, creds, "pc1-pc2", [SID], tmp_path / "scratch")
    assert node.requests == [("GET", f"/remote/sealed/{SID}")]  # the probe of one byte only


@pytest.mark.parametrize("url, why", [("https://h:1/remote", "plain"), ("http://u:p@h:1", "user name"),
                                      ("http://h:1/remote?token=x", "no query"), (None, "no URL")])
def test_urls_that_are_refused(url, why):
    with pytest.raises(live.LiveError, match=why):
        live.Endpoint.parse(url)


def test_urls_with_and_without_remote_name_the_same_endpoint():
    a, b = live.Endpoint.parse("http://10.0.0.5:2345/remote/"), live.Endpoint.parse("http://10.0.0.5:2345")
    assert a == b and a.source == "10.0.0.5:2345" and a.base == "http://10.0.0.5:2345"


def test_tokens_from_files_secrets_and_the_environment(tmp_path):
    secret = secrets.token_bytes(32)
    token = lotus_standin.make_token(secret, ADMIN)
    api_info = _token_file(tmp_path, f"{token}:/ip4/10.0.0.5/tcp/2345/http", "api-info")
    assert live_auth.load("lotus", token_file=api_info).token == token
    keystore = _token_file(tmp_path, json.dumps({"Type": "jwt-hmac-secret",
                                                 "PrivateKey": __import__("base64").b64encode(secret).decode()}), "ks")
    signed = live_auth.load("lotus", secret_file=keystore).token
    assert lotus_standin.verify(signed, secret) == ADMIN  # Lotus would accept it
    assert lotus_standin.verify(live_auth.load("curio", secret_file=keystore).token, secret) == ["admin"]
    assert live_auth.load("lotus", env={"RDMABENCH_LIVE_TOKEN": token}).token == token
    loose = _token_file(tmp_path, token, "loose")
    loose.chmod(0o644)
    with pytest.raises(live_auth.TokenError, match="chmod 600"):
        live_auth.load("lotus", token_file=loose)
    junk = _token_file(tmp_path, "not-a-token-at-all", "junk")
    with pytest.raises(live_auth.TokenError) as err:
        live_auth.load("curio", token_file=junk)
    assert "not-a-token-at-all" not in str(err.value) and "StorageRPCSecret" in str(err.value)
    with pytest.raises(live_auth.TokenError, match="lotus-miner auth create-token --perm admin"):
        live_auth.load("lotus", env={})
    assert stat.S_IMODE(api_info.stat().st_mode) == 0o600


def test_help_teaches_where_the_token_comes_from():
    done = CliRunner().invoke(cli, ["live", "--help"])
    assert done.exit_code == 0
    for words in ("create-token --perm admin", "StorageRPCSecret", "no DELETE", "RDMABENCH_LIVE_URL", "like for like"):
        assert words in done.output.replace("\n", " ").replace("  ", " "), words


def test_a_scratch_that_cannot_be_written_is_a_clear_error(node, tmp_path):
    creds = live_auth.Credentials(lotus_standin.make_token(node.secret, ADMIN), "test")
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(live.LiveError, match="file/scratch"):
        live.run(node.url, creds, "pc1-pc2", [SID], tmp_path / "file" / "scratch")
