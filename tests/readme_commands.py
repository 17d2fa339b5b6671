"""Every command the README shows, and where `make test` runs it.

``readme()`` reads the commands out of README.md's code blocks; ``COVERAGE`` maps each one to where
it runs and the command actually run there: the same words, with the lab's device and peer address
in place of mlx5_0 and 10.0.0.1, kept small in the lab where the README says so, and placeholders
(results/A.json, CMD, jobs logs) filled with real files. tests/unit/test_readme.py fails when the
README gains a command this table does not cover, or the table keeps one the README dropped.

Where: "host" (tests/unit/test_readme.py), "lab-one" (tests/lab/one_host/test_readme_commands.py),
"lab-two" (the worker guest: tests/lab/two_hosts/test_readme_commands.py), "storage" (the storage
guest's servers, started by the Makefile's test-lab-two exactly as written here), "lab-three" (the storage
guest of the three-guest lab: tests/lab/three_hosts/test_cluster.py), "make" (a Makefile
target that `make test` runs, or `make test` itself), "hardware" (cannot run here, with the reason;
its small form is another entry), "by hand" (run before a release, with the reason it is not in CI).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DEV, PEER = "$RDMABENCH_DEVICE", "$RDMABENCH_PEER_IP"
LAB_RUN = " --sizes 1K:64K -n 20"  # what the README's paragraph on CI says the lab adds to `run`
LAB_CROSSCHECK = " --repeat 1 --bw-iters 200 --lat-iters 200"

COVERAGE = {
    "make demo": ("by hand", "~9 min, two more guests: outside CI's time; each command it runs, `make test` runs"),
    "make test": ("make", "test"),
    "rdmabench devices": ("lab-one", "rdmabench devices"),
    "rdmabench roundtrip -d mlx5_0": ("lab-one", f"rdmabench roundtrip -d {DEV}"),
    ".venv/bin/rdmabench devices": ("lab-one", ".venv/bin/rdmabench devices"),
    ".venv/bin/rdmabench roundtrip --device mlx5_0": ("lab-one", f".venv/bin/rdmabench roundtrip --device {DEV}"),
    "rdmabench doctor": ("lab-one", "rdmabench doctor"),
    "rdmabench doctor -d mlx5_0 --peer 10.0.0.1": ("lab-two", f"rdmabench doctor -d {DEV} --peer {PEER}"),
    "rdmabench secret init": ("host", "rdmabench secret init"),
    "rdmabench serve --bind 10.0.0.1 -d mlx5_0": ("storage", f"rdmabench serve --bind $RDMABENCH_IP -d {DEV}"),
    "rdmabench run --peer 10.0.0.1 -d mlx5_0 -t all --sizes 2:8M":
        ("lab-two", f"rdmabench run --peer {PEER} -d {DEV} -t all --sizes 2:8M".replace(" --sizes 2:8M", LAB_RUN)),
    "rdmabench run --peer 10.0.0.1 -d mlx5_0 -t write_lat -D 60 --interval 5":
        ("lab-two", f"rdmabench run --peer {PEER} -d {DEV} -t write_lat -D 3 --interval 1"),
    # Ctrl-C after 25 s (SIGINT, as a terminal sends it): the run ends cleanly, writes its file, exits 130
    "rdmabench run --peer 10.0.0.1 -d mlx5_0 -t write_bw -s 1M --until-stopped":
        ("lab-two", f"timeout --preserve-status -s INT 25 rdmabench run --peer {PEER} -d {DEV} -t write_bw -s 1M "
                    "--until-stopped -o {result}; test $? -eq 130"),
    "rdmabench crosscheck --peer 10.0.0.1 -d mlx5_0":
        ("lab-two", f"rdmabench crosscheck --peer {PEER} -d {DEV}" + LAB_CROSSCHECK),
    "rdmabench run --config configs/sealing-32g.toml --peer 10.0.0.1 --scale 1/65536 --repetitions 1 --dir /tmp/rb":
        ("lab-two", f"rdmabench run --config configs/sealing-32g.toml --peer {PEER} --scale 1/65536 --repetitions 1 "
                    "--dir /tmp/rb"),
    "rdmabench run --config configs/sealing-32g.toml --peer 10.0.0.1":
        ("hardware", "448 GiB per PC1 -> PC2 transfer; its --scale dry run is the entry above"),
    "rdmabench baseline": ("host", "rdmabench baseline"),
    "rdmabench pipeline --size 4G": ("host", "rdmabench pipeline --size 4G"),
    "rdmabench compare results/A.json results/B.json [--format md]":
        ("host", "rdmabench compare {A} {B} && rdmabench compare {A} {B} --format md"),
    "rdmabench report results/*.json -o report/": ("host", "rdmabench report {A} {B} {T} -o {out}/report/"),
    "rdmabench report results/T.json -o report/ --jobs jobs-2026-11-01.log":
        ("host", "rdmabench report {T} -o {out}/report-jobs/ --jobs {log}"),
    "rdmabench jobs jobs-2026-11-*.log --what-if results/T.json --sector-size 32GiB":
        ("host", "rdmabench jobs {log} --what-if {T} --sector-size 32GiB"),
    "rdmabench jobs worker-3.log curio.log --fetches": ("host", "rdmabench jobs {worker} {curio} --fetches"),
    "rdmabench live --handoff pc1-pc2 --sector s-t01000-5 --dest /scratch/live --token-file ~/lotus-remote.token "
    "-o results/live.json":  # against a stand-in Lotus miner holding s-t01000-5; RDMABENCH_LIVE_URL names it
        ("host", "rdmabench live --handoff pc1-pc2 --sector s-t01000-5 --dest {out}/scratch --token-file {token} "
                 "-o {out}/live.json"),
    "rdmabench live --kind curio --url http://10.0.0.1:12300/remote --handoff pc1-pc2 --sector s-t01000-5 "
    "--dest /scratch/live --secret-file ~/curio.secret -o results/live.json":  # against a stand-in Curio node
        ("host", "rdmabench live --kind curio --url {curio_url} --handoff pc1-pc2 --sector s-t01000-5 "
                 "--dest {out}/scratch --secret-file {secret} -o {out}/live-curio.json"),
    "rdmabench run --config configs/sealing-32g.toml --peer 10.0.0.1 -o results/transfers.json":
        ("hardware", "448 GiB per PC1 -> PC2 transfer; its --scale dry run is the lab-two entry"),
    "rdmabench report results/live.json results/transfers.json -o report/":
        ("host", "rdmabench report {L} {T} -o {out}/report/"),
    "mpirun -H storage,worker1,worker2 -x RDMABENCH_SECRET .venv/bin/rdmabench cluster --config configs/cluster.toml":
        ("lab-three", "mpirun -H storage,worker1,worker2 -x RDMABENCH_SECRET .venv/bin/rdmabench cluster "
                      "--config {config} -o {out}"),
    "rdmabench lab -- CMD": ("make", "test-lab-one"),
    "rdmabench lab --hosts 2 --storage CMD --worker CMD": ("make", "test-lab-two"),
    "rdmabench lab --hosts 3 -- CMD": ("make", "test-lab-three"),
    # the container lab runs `make demo-containers` inside a guest booted with --kernel
    "make demo-containers": ("make", "test-lab-containers"),
    "rdmabench lab --kernel VMLINUZ -- CMD": ("make", "test-lab-containers"),
}


def readme() -> list[str]:
    """Each command line in README.md's code blocks (comments stripped), in order."""
    out, inside = [], False
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            inside = not inside
            continue
        if not inside:
            continue
        cmd = re.sub(r"\s+#.*$", "", line).strip()
        if re.match(r"^(rdmabench|\.venv/bin/rdmabench|make|mpirun) ", cmd):
            out.append(cmd)
    return out


def where(kind: str) -> dict[str, str]:
    """{README command: command run} for one place."""
    return {k: v for k, (w, v) in COVERAGE.items() if w == kind}
