#!/usr/bin/env bash
# Installs the Debian packages rdmabench and its lab need, only those missing.
# Quick when all are there (one dpkg-query). Works on Debian 12 and 13.
set -euo pipefail

PACKAGES=(
  # the lab: a QEMU guest booting Debian's kernel, which has rdma_rxe, nfsd and rpcrdma
  qemu-system-x86 linux-image-amd64 busybox-static kmod iproute2
  # verbs userspace: libraries and headers for native/, pyverbs, diagnostics, perftest as the reference
  rdma-core ibverbs-providers ibverbs-utils libibverbs-dev librdmacm-dev rdmacm-utils perftest python3-pyverbs
  # NFS over RDMA and TCP, served and mounted inside the lab
  nfs-kernel-server nfs-common rpcbind
  # building the native extension and the venv with Debian's python (the one pyverbs is built for)
  gcc make python3-dev python3-venv
  # XXH3-128 in C (header only), so the file engine digests the bytes as they pass: the same hash as PyPI's xxhash
  libxxhash-dev
  # the strong baseline (rdmabench/baseline.py): nginx serving a sector file to curl, which our Lotus-style HTTP fetch must match
  nginx curl
  # a headless browser: tests/unit/test_report_browser.py renders the report and checks what a reader would see
  chromium-headless-shell
  # the three-guest lab (rdmabench lab --hosts 3): Open MPI's mpirun in the storage guest starts ranks in all
  # three guests over ssh, so each guest runs sshd; mpi4py lets the ranks (and the tests) talk MPI from Python
  openmpi-bin python3-mpi4py openssh-server openssh-client
  # containers (make test-lab-containers, make demo-containers): podman with its network stack (netavark,
  # aardvark-dns for the service names, iptables it drives), and mmdebstrap to make the image's Debian base
  # from Debian's mirror where no container registry is reachable
  podman netavark aardvark-dns iptables mmdebstrap
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "installing Debian packages: ${missing[*]}"
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "error: need root (or sudo) to apt-get install: ${missing[*]}" >&2; exit 1; }
  SUDO=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
