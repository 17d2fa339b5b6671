#!/usr/bin/env bash
# make demo-containers: the demo's job between two containers on this host, storage and worker, each with its
# own network namespace and soft-RoCE device (containers/compose.yaml). Run as root on a host whose kernel has
# rdma_rxe (docs/containers.md); results and the report land in $RDMABENCH_RESULTS_DIR [results/containers].
#
#   RDMABENCH_IMAGE    the image [localhost/rdmabench:latest]; built first when missing (containers/build-image.sh)
#   RDMABENCH_SECRET   the secret both containers share [a new one for this run]
#   DEMO_CONFIG        the transfer scenario, a path inside the image [configs/containers.toml]
#   DEMO_TRANSFER_OPTS more options for the transfers' run, e.g. --repetitions 1 --scale 1/65536
#   DEMO_VERBS         the verbs tests' options [-t all --sizes 2,4K,64K,1M --iters 100 --repeat 2]
#   DEMO_REPORT        0: no report at the end [1]
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "demo-containers: $*" >&2; }
fail() { say "error: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || fail "run as root (sudo make demo-containers): the containers make RDMA devices, which needs a rootful engine"

# The host's side: the kernel's soft-RoCE, its verbs and rdma_cm device nodes (the containers mount them)
if [[ ! -d /sys/module/rdma_rxe || ! -e /dev/infiniband/rdma_cm ]]; then
  say "loading rdma_rxe, ib_uverbs and rdma_ucm"
  modprobe -a rdma_rxe ib_uverbs rdma_ucm 2>/dev/null || fail "this kernel ($(uname -r)) cannot load rdma_rxe.
  Ubuntu: apt-get install linux-modules-extra-\$(uname -r); Debian: it is in the kernel package.
  Soft-RoCE between containers also needs a kernel that carries it across network namespaces (docs/containers.md)."
fi
mode=$(rdma system show 2>/dev/null | sed -n 's/.*netns \([a-z]*\).*/\1/p')
[[ "$mode" != exclusive ]] || fail "the RDMA subsystem is in exclusive namespace mode; run: rdma system set netns shared (docs/containers.md says why)"

# A compose that knows device_cgroup_rules: docker's, or podman-compose 1.1 or newer
if command -v docker >/dev/null && docker info >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
  ENGINE=docker
else
  command -v podman >/dev/null || fail "neither a running docker nor podman (Debian: apt-get install podman)"
  ENGINE=podman
  pc=$(command -v podman-compose || true)
  if [[ -z "$pc" ]] || ! "$pc" --version 2>/dev/null | grep -Eq 'podman-compose version (1\.([1-9]|[1-9][0-9])|[2-9])'; then
    tools=${RDMABENCH_CACHE:-$HOME/.cache/rdmabench}/podman-compose
    if [[ ! -x "$tools/bin/podman-compose" ]]; then
      say "installing podman-compose (PyPI) into $tools: the one on PATH is missing or older than 1.1"
      python3 -m venv "$tools" && "$tools/bin/pip" install -q 'podman-compose>=1.1'
    fi
    pc="$tools/bin/podman-compose"
  fi
  COMPOSE=("$pc")
fi

export RDMABENCH_IMAGE=${RDMABENCH_IMAGE:-localhost/rdmabench:latest}
export RDMABENCH_ENGINE=$ENGINE  # the image must be in the store of the engine that runs it
$ENGINE image inspect "$RDMABENCH_IMAGE" >/dev/null 2>&1 || containers/build-image.sh
export RDMABENCH_SECRET=${RDMABENCH_SECRET:-$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')}
export RDMABENCH_RESULTS_DIR=${RDMABENCH_RESULTS_DIR:-$PWD/results/containers}
mkdir -p "$RDMABENCH_RESULTS_DIR"
RDMABENCH_RESULTS_DIR=$(cd "$RDMABENCH_RESULTS_DIR" && pwd)

compose=("${COMPOSE[@]}" -f containers/compose.yaml -p rdmabench)
down() { "${compose[@]}" down -t 2 >/dev/null 2>&1 || true; }
trap down EXIT
down  # a run stopped half-way leaves its containers and network behind
say "starting storage, then the worker's job (${COMPOSE[*]}, image $RDMABENCH_IMAGE)"
"${compose[@]}" up -d storage
rc=0
"${compose[@]}" run --rm worker || rc=$?
if [[ $rc -ne 0 ]]; then
  say "the worker's job failed (exit $rc); the storage container said:"
  "${compose[@]}" logs storage 2>&1 | tail -20 >&2 || true
  exit "$rc"
fi
say "done: results and the report in $RDMABENCH_RESULTS_DIR"
