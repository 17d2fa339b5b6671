# The two commands of the README: `make demo` and `make test`. Each installs what
# it needs first (Debian packages, .venv, the project with its native extension)
# and is quick when all of that is already there.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
RDMABENCH := $(VENV)/bin/rdmabench
# Debian's interpreter: python3-pyverbs is built for it, and --system-site-packages lets the venv see it.
SYSTEM_PYTHON := /usr/bin/python3
LAB_TIMEOUT ?= 900

.PHONY: install deb demo test test-unit test-lab-one test-lab-two clean

install: deb $(VENV)/.installed

deb:
	@scripts/install-debian-packages.sh

$(PY):
	$(SYSTEM_PYTHON) -m venv --system-site-packages $(VENV)

$(VENV)/.installed: $(PY) pyproject.toml setup.py $(wildcard native/*.c native/*.h)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	$(PY) -c "import rdmabench._native, pyverbs.device"
	@touch $@

demo: install
	$(RDMABENCH) lab --timeout $(LAB_TIMEOUT) -- \
	  'rdmabench devices && echo && rdmabench roundtrip --engine both --size 1M'

test: install test-unit test-lab-one test-lab-two

test-unit: install
	$(PY) -m pytest tests/unit

# Tests that need RDMA run inside the lab; a lab that cannot boot fails here, it is never skipped.
test-lab-one: install
	$(RDMABENCH) lab --timeout $(LAB_TIMEOUT) -- 'python -m pytest tests/lab/one_host'

test-lab-two: install
	$(RDMABENCH) lab --hosts 2 --timeout $(LAB_TIMEOUT) \
	  --storage 'python -m rdmabench.nfs.server start --export /srv/nfsexp --size 256m --generate 32GiB:pc1:0.00005 --generate 32GiB:finalized:0.002 && rdmabench serve --bind $$RDMABENCH_IP & python -m rdmabench.transports.rdma serve --bind $$RDMABENCH_IP --port 7600 --root /tmp/rdma-store --mode write & python -m rdmabench.transports.rdma serve --bind $$RDMABENCH_IP --port 7601 --root /tmp/rdma-store --mode read & python -m rdmabench.verbs.peer serve --bind $$RDMABENCH_IP --port 7471 --mode both --connections 0' \
	  --worker 'python -m pytest tests/lab/two_hosts'

clean:
	rm -rf $(VENV) build *.egg-info rdmabench/*.so

# Per-operation cost of the native and the python engine, measured in the lab (figures, not pass/fail).
.PHONY: bench-engines
bench-engines: install
	$(RDMABENCH) lab --timeout 900 -- 'python -m pytest tests/bench -p no:cacheprovider --benchmark-only --benchmark-json=$$RDMABENCH_RESULTS/engine-cost.json'
