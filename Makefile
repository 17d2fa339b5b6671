# The two commands of the README: `make demo` and `make test`. Each installs what
# it needs first (Debian packages, .venv, the project with its native extension)
# and is quick when all of that is already there.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
RDMABENCH := $(VENV)/bin/rdmabench
# Debian's interpreter: python3-pyverbs is built for it, and --system-site-packages lets the venv see it.
SYSTEM_PYTHON := /usr/bin/python3
LAB_TIMEOUT ?= 1500
DEMO_TIMEOUT ?= 2400
# The storage guest of the demo: the NFS server (exports over RDMA and TCP), then rdmabench serve.
DEMO_STORAGE ?= python -m rdmabench.nfs.server start --export /srv/nfsexp --size 768m && \
  rdmabench serve --bind $$RDMABENCH_IP --root /srv/nfsexp

.PHONY: install deb demo demo-containers test test-unit test-lab-one test-lab-two test-lab-three test-lab-containers clean

install: deb $(VENV)/.installed

deb:
	@scripts/install-debian-packages.sh

$(PY):
	$(SYSTEM_PYTHON) -m venv --system-site-packages $(VENV)

$(VENV)/.installed: $(PY) pyproject.toml setup.py $(wildcard native/*.c native/*.h)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	$(PY) -c "import rdmabench._native, pyverbs.device"
	@touch $@

# The main job: two guests, "storage" (serves, plays PC1 and long-term storage) and "worker" (PC2, C1).
# The worker lists its device, proves a verified RDMA round trip, runs configs/default.toml (Lotus's
# hand-offs over every transport, one result file) and writes the report, whose path it prints last.
demo: install
	$(RDMABENCH) lab --hosts 2 --timeout $(DEMO_TIMEOUT) --memory 3G --grace 0 \
	  --storage '$(DEMO_STORAGE)' \
	  --worker 'rdmabench devices && rdmabench roundtrip --engine both --size 1M && \
	    rdmabench run --config configs/default.toml --peer $$RDMABENCH_PEER_IP --wait 300 \
	      -o $$RDMABENCH_RESULTS/demo-transfers.json && \
	    rdmabench run --peer $$RDMABENCH_PEER_IP -t all --sizes 2,4K,64K,1M --iters 100 --repeat 2 \
	      -o $$RDMABENCH_RESULTS/demo-verbs.json && \
	    rdmabench report $$RDMABENCH_RESULTS/demo-transfers.json $$RDMABENCH_RESULTS/demo-verbs.json \
	      -o $$RDMABENCH_RESULTS/demo-report'

test: install test-unit test-lab-one test-lab-two test-lab-three test-lab-containers

# -n 2: two workers (pytest-xdist). Most of this suite waits on subprocesses, timeouts and disk, not the CPU:
# 3 min 18 s serial, 1 min 36 s to 2 min 14 s on two, on a 2-core host. Each test keeps to its own tmp_path,
# free port and processes (tests/unit/test_cluster_mpi.py finds its ranks by its own config file).
test-unit: install
	$(PY) -m pytest tests/unit -n 2

# Tests that need RDMA run inside the lab; a lab that cannot boot fails here, it is never skipped.
# --console: the guests' kernel errors, oopses and panics are in the log, so a guest that dies says why.
test-lab-one: install
	$(RDMABENCH) lab --console --timeout $(LAB_TIMEOUT) -- 'python -m pytest tests/lab/one_host --durations=15'

# The storage guest runs the two servers the two-host tests talk to: the kernel NFS server and
# `rdmabench serve` (every other far end is a service of it), as the README shows it (device named),
# rooted in the export so that nfs-* transfers work. serve never returns: the guest stays up until
# the worker is done, then is stopped at once (--grace 0: there is nothing for it to finish).
TWO_HOST_SERVERS := python -m rdmabench.nfs.server start --export /srv/nfsexp --size 384m \
	--generate 32GiB:pc1:0.00005 --generate 32GiB:finalized:0.002 && \
	rdmabench serve --bind $$RDMABENCH_IP -d $$RDMABENCH_DEVICE --root /srv/nfsexp

test-lab-two: install
	$(RDMABENCH) lab --console --hosts 2 --timeout $(LAB_TIMEOUT) --grace 0 --storage '$(TWO_HOST_SERVERS)' \
	  --worker 'python -m pytest tests/lab/two_hosts --durations=15'

# Three guests (storage, worker1, worker2) with sshd and Open MPI: the tests run in storage and reach the
# workers over ssh and mpirun (docs/lab-three-hosts.md): the lab itself, then `rdmabench cluster` as the
# README starts it (a two-worker fan-in over rdma-write and http, the all-pairs matrix, a worker killed).
test-lab-three: install
	$(RDMABENCH) lab --console --hosts 3 --timeout $(LAB_TIMEOUT) -- 'python -m pytest tests/lab/three_hosts --durations=15'

# Soft-RoCE between two containers (docs/containers.md): the image is built here from containers/Containerfile
# on a Debian 12 base that mmdebstrap makes (no registry needed), and the guest boots Debian's newer kernel,
# fetched, not installed (6.1's rxe cannot cross network namespaces); podman there reads this host's image store.
test-lab-containers: install
	containers/build-image.sh --base mmdebstrap
	K=$$(scripts/fetch-lab-kernel.sh) && $(RDMABENCH) lab --console --kernel "$$K" --memory 3G --timeout $(LAB_TIMEOUT) \
	  -- 'python -m pytest tests/lab/containers --durations=10'

# The demo's job between two containers on this host (storage, worker), each with its own network namespace
# and soft-RoCE device: root, a kernel with rdma_rxe, podman or docker (docs/containers.md). Needs no .venv.
demo-containers:
	containers/demo.sh

clean:
	rm -rf $(VENV) build *.egg-info rdmabench/*.so

# Per-operation cost of the native and the python engine, measured in the lab (figures, not pass/fail).
.PHONY: bench-engines
bench-engines: install
	$(RDMABENCH) lab --timeout 900 -- 'python -m pytest tests/bench -p no:cacheprovider --benchmark-only --benchmark-json=$$RDMABENCH_RESULTS/engine-cost.json'
