"""The one payload pattern: rdmabench/workloads/pattern.py defines it, native/common.c implements the
same function, and the two produce identical bytes. The C core builds without Python.h."""
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from rdmabench import _native
from rdmabench.workloads import pattern as pat

NATIVE = Path(__file__).resolve().parents[2] / "native"


def test_reference_values():
    # the values the native engine has validated payloads with since the two engines first met
    assert pat.pattern_seed(0, 0) == 0xE220A8397B1DCDAF
    assert pat.pattern_py(13, pat.pattern_seed(1, 5)).hex() == "d92f30c28f4d62c80f41631a6f"


@pytest.mark.parametrize("size", list(range(0, 41)) + [251, 4095, 4096, 4097, 65536, pat.BLOCK])
def test_c_and_python_produce_identical_bytes(size):
    rng = random.Random(size)
    seeds = [0, 1, 2, (1 << 64) - 1, pat.pattern_seed(3, 77)] + [rng.getrandbits(64) for _ in range(3)]
    for seed in seeds:
        assert _native.pattern(size, seed) == pat.pattern_py(size, seed), (size, hex(seed))
        assert pat.pattern(size, seed) == pat.pattern_py(size, seed)


def test_pattern_is_defined_once():
    # the engines, the pyverbs round trip and peer import it (their modules need pyverbs: not here)
    package = Path(pat.__file__).resolve().parents[1]
    defs = [p.relative_to(package).as_posix() for p in package.rglob("*.py")
            if re.search(r"^def pattern(_seed)?\(", p.read_text(), re.M)]
    assert defs == ["workloads/pattern.py"]
    base, tag = pat._base("some/file")
    assert base == pat.pattern_py(pat.BLOCK, tag)


def test_core_compiles_without_python_h():
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    # the binding layer: bindings.c and the py_*.c/h files beside it; nothing else may see Python
    core = sorted(p for p in NATIVE.glob("*.[ch]") if p.name != "bindings.c" and not p.name.startswith("py_"))
    assert core and (NATIVE / "bindings.c").exists() and (NATIVE / "py_windows.c").exists()
    for src in core:
        assert not re.search(r"#\s*include\s*[<\"]Python\.h", src.read_text()), f"{src.name} includes Python.h"
    for src in (p for p in core if p.suffix == ".c"):
        out = subprocess.run([cc, "-fsyntax-only", "-std=gnu11", "-Wall", "-Werror", "-I", str(NATIVE), str(src)],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
