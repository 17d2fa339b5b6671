"""A guest whose kernel dies: the lab says so, and --console shows the kernel's last words.

Boots a real lab guest (QEMU under TCG, about half a minute) and crashes its kernel on purpose through
sysrq, as a kernel bug would: vng then has no exit status to hand back."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_guest_kernel_panic_is_named_and_shown_with_console(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "rdmabench.cli", "lab", "--console", "--results", str(tmp_path), "--timeout", "300",
         "--", "echo c > /proc/sysrq-trigger; sleep 60; exit 0"],
        capture_output=True, text=True, timeout=400, cwd=ROOT)
    out = done.stdout + done.stderr
    assert done.returncode == 255, out[-3000:]
    assert "Kernel panic" in out, out[-3000:]  # the kernel's own words, through --console
    assert "ended without its command's exit status (255)" in out and "kernel panicked or QEMU died" in out
