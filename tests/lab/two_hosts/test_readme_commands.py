"""The README's two-host commands, run on the worker guest against the storage guest's
`rdmabench serve` as written (device and peer adapted, kept small where the README says so):
see tests/readme_commands.py. A command fails when it exits non-zero or prints a traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import readme_commands as rc  # noqa: E402


@pytest.mark.parametrize("shown", sorted(rc.where("lab-two")))
def test_readme_command_across_the_link(lab_env, shown, tmp_path):
    assert lab_env["role"] == "worker" and lab_env["peer"], "run on the worker guest of `rdmabench lab --hosts 2`"
    checks = shown.startswith("rdmabench doctor")  # a preflight prints its checks; it measures nothing to keep
    cmd = rc.COVERAGE[shown][1]
    if "{result}" in cmd:  # the command places its own -o (it is followed by a check of its exit status)
        cmd = cmd.replace("{result}", f"{tmp_path}/r.json")
    elif not checks:
        cmd += f" -o {tmp_path}/r.json"
    done = subprocess.run(["/bin/sh", "-c", cmd], cwd=rc.ROOT, capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]})
    assert done.returncode == 0, f"{cmd}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    if checks:  # both ends checked, and a verified round trip between them
        assert "FAIL" not in done.stdout and "nothing fails" in done.stdout, done.stdout
        assert any(line.startswith("PASS") and "round trip" in line for line in done.stdout.splitlines()), done.stdout
    else:
        assert (tmp_path / "r.json").exists() and "result file:" in done.stdout
