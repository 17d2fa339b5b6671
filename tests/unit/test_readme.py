"""The README's commands: every one is covered (tests/readme_commands.py), and the host's run here.

A command fails its test when it exits non-zero or prints a traceback. The lab's run in
tests/lab/*/test_readme_commands.py; the Makefile's are checked to run what the README says.
"""

import base64
import os
import re
import secrets
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import readme_commands as rc  # noqa: E402

from data import crafted  # noqa: E402

VENV_BIN = str(Path(sys.executable).parent)


def test_every_readme_command_has_an_entry_and_no_entry_is_stale():
    shown = set(rc.readme())
    assert shown, "no commands found in README.md"
    assert shown - set(rc.COVERAGE) == set(), "README commands that no test runs: add them to tests/readme_commands.py"
    assert set(rc.COVERAGE) - shown == set(), "entries for commands the README no longer shows"
    for cmd, (kind, how) in rc.COVERAGE.items():
        assert kind in ("host", "lab-one", "lab-two", "lab-three", "storage", "make", "hardware", "by hand"), cmd
        if kind == "hardware":
            assert "dry run" in how  # a command that cannot run here names the small form that does
        if kind == "by hand":
            assert cmd == "make demo" and "each command it runs" in how  # the one exception, and why


def run_shell(cmd: str, cwd: Path, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env or {}), "PATH": VENV_BIN + os.pathsep + os.environ.get("PATH", "")}
    done = subprocess.run(["/bin/sh", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stdout + done.stderr, f"{cmd}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    """A stand-in Lotus miner and Curio node holding s-t01000-5 (2 KiB, after PC1), for `rdmabench live`."""
    import lotus_standin
    from rdmabench.workloads import sector

    d, secret, out = tmp_path_factory.mktemp("nodes"), secrets.token_bytes(32), {}
    for kind in ("lotus", "curio"):
        sector.generate(sector.shape("2KiB", "pc1", number=5), d / kind)
        out[kind] = lotus_standin.serve(d / kind, secret, kind)
    for name, text in (("token", lotus_standin.make_token(secret, ["read", "write", "sign", "admin"])),
                       ("secret", base64.b64encode(secret).decode())):
        (d / name).write_text(text + "\n")
        (d / name).chmod(0o600)
    out.update(token=d / "token", secret=d / "secret", lotus_url=f"{out['lotus'].url}/remote",
               curio_url=f"{out['curio'].url}/remote")
    yield out
    out["lotus"].stop()
    out["curio"].stop()


@pytest.fixture(scope="module")
def files(tmp_path_factory, nodes):
    from rdmabench import live, live_auth

    d = tmp_path_factory.mktemp("readme")
    creds = live_auth.load("lotus", token_file=nodes["token"])
    return {"A": crafted.verbs_a().save(d / "A.json"), "B": crafted.verbs_b().save(d / "B.json"),
            "T": crafted.transfer_result().save(d / "T.json"),
            "L": live.run(nodes["lotus_url"], creds, "pc1-pc2", ["s-t01000-5"], d / "scratch-L").save(d / "L.json"),
            "log": Path(__file__).parent / "data" / "jobs-2021-07-30.log", "out": d,
            "worker": Path(__file__).parent / "data" / "worker-3.log",
            "curio": Path(__file__).parent / "data" / "curio.log",
            **{k: nodes[k] for k in ("token", "secret", "curio_url")}}


@pytest.mark.parametrize("shown", [pytest.param(s, marks=pytest.mark.slow) if "pipeline" in s or "baseline" in s else s
                                   for s in sorted(rc.where("host"))])  # those two move GiBs: tens of seconds
def test_host_commands_run_as_the_readme_shows(shown, files, nodes, tmp_path):
    cmd = rc.COVERAGE[shown][1].format(**{k: shlex.quote(str(v)) for k, v in files.items()})
    env = {"RDMABENCH_RESULTS": str(tmp_path / "results"),  # result files of commands run without -o
           "RDMABENCH_LIVE_URL": nodes["lotus_url"]}  # `rdmabench live`: the stand-in miner
    if "secret init" in cmd:  # writes to ~/.config: a home of its own, nothing of the user's touched
        env.update(HOME=str(tmp_path), RDMABENCH_SECRET_FILE="")
    done = run_shell(cmd, cwd=Path(rc.ROOT), env=env)
    if "baseline" in cmd or "pipeline" in cmd:  # a result file like every other command's
        saved = list((tmp_path / "results").glob("baseline-*.json"))
        assert len(saved) == 1 and f"result file: {saved[0]}" in done.stdout
    if "pipeline" in cmd:  # both tools side by side, ours verified
        assert "rdmabench pipeline" in done.stdout and "dd bs=1M" in done.stdout and "ratio" in done.stdout
    if "secret init" in cmd:
        secret = tmp_path / ".config" / "rdmabench" / "secret"
        assert secret.stat().st_mode & 0o777 == 0o600 and str(secret) in done.stdout
    if "rdmabench live" in cmd:  # a live result, only GETs sent, the scratch emptied
        kind = "curio" if "--kind curio" in cmd else "lotus"
        assert "result file:" in done.stdout and {m for m, _ in nodes[kind].requests} == {"GET"}
        assert not (files["out"] / "scratch" / "sealed").exists()
    if cmd.startswith("rdmabench report"):  # not `"report" in cmd`: a checkout's path may hold the word
        words = shlex.split(cmd)
        assert (Path(words[words.index("-o") + 1]) / "report.html").exists()


def test_the_storage_guest_serves_exactly_as_the_readme_shows():
    makefile = (rc.ROOT / "Makefile").read_text().replace("$$", "$")
    for shown, how in rc.where("storage").items():
        assert how in makefile, f"the Makefile's two-host servers do not run {how!r} (README: {shown!r})"


def test_every_command_of_the_demo_is_run_by_make_test():
    """`make demo` is not run in CI (nine minutes, two more guests); what it runs is, command by command."""
    makefile = (rc.ROOT / "Makefile").read_text()
    demo = re.search(r"^demo: .*?\n((?:\t.*\n)+)", makefile, re.M).group(1)
    demo += makefile.split("DEMO_STORAGE ?=")[1].split("\n\n")[0]
    ci = " ".join(v for w, v in rc.COVERAGE.values() if w in ("lab-one", "lab-two", "storage", "host"))
    ci += makefile.split("TWO_HOST_SERVERS :=")[1].split("\n\n")[0]
    words = ("rdmabench devices", "rdmabench roundtrip", "rdmabench run --config", "rdmabench run --peer",
             "rdmabench report", "rdmabench serve --bind", "rdmabench.nfs.server start")
    for word in words:
        assert word in demo, word
        assert word in ci, f"the demo runs {word!r} and nothing in make test does"


def test_make_targets_the_readme_names_are_what_ci_runs():
    makefile = (rc.ROOT / "Makefile").read_text()
    assert (rc.ROOT / ".ci" / "run").read_text().strip().endswith("exec make test")
    test_deps = re.search(r"^test: (.*)$", makefile, re.M).group(1).split()
    for target in rc.where("make").values():
        if target == "test":
            continue
        assert re.search(rf"^{re.escape(target)}:", makefile, re.M), target
        assert target in test_deps, f"`make test` does not run `make {target}`"
    def recipe(target):
        return re.search(rf"^{target}:.*\n((?:\t.*\n)+)", makefile, re.M).group(1)

    one, two, three, containers = (recipe(f"test-lab-{n}") for n in ("one", "two", "three", "containers"))
    assert "$(RDMABENCH) lab " in one and "--hosts" not in one and " -- '" in one  # rdmabench lab -- CMD
    assert "lab --console --hosts 2" in two and "--storage '" in two and "--worker '" in two
    assert "lab --console --hosts 3" in three and " -- '" in three  # rdmabench lab --hosts 3 -- CMD
    assert '--kernel "$$K"' in containers  # rdmabench lab --kernel VMLINUZ -- CMD
    for lab in (one, two, three, containers):  # a guest that dies in CI leaves its kernel's messages in the log
        assert "lab --console " in lab, lab
