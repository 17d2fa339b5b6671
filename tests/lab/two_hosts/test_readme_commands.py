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
    cmd = rc.COVERAGE[shown][1] + f" -o {tmp_path}/r.json"
    done = subprocess.run(["/bin/sh", "-c", cmd], cwd=rc.ROOT, capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]})
    assert done.returncode == 0, f"{cmd}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    assert (tmp_path / "r.json").exists() and "result file:" in done.stdout
