"""The README's commands that need one RDMA device, run as written (device name adapted): see
tests/readme_commands.py. A command fails when it exits non-zero or prints a traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import readme_commands as rc  # noqa: E402


@pytest.mark.parametrize("shown", sorted(rc.where("lab-one")))
def test_readme_command_in_one_guest(lab_env, shown):
    cmd = rc.COVERAGE[shown][1]
    done = subprocess.run(["/bin/sh", "-c", cmd], cwd=rc.ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]})
    assert done.returncode == 0, f"{cmd}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    assert lab_env["device"] in done.stdout
