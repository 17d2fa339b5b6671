#!/usr/bin/env bash
# Builds the rdmabench image (containers/Containerfile) with podman, or docker where podman is missing.
#
#   containers/build-image.sh                 FROM docker.io/library/debian:12, pulled from the registry
#   containers/build-image.sh --base mmdebstrap
#       no registry needed: the Debian 12 base is made on this host from Debian's mirror with mmdebstrap
#       (bookworm, -updates and -security, minbase) and imported as localhost/rdmabench-base:bookworm; kept,
#       and made again only with --refresh. This is how CI and the lab build it.
#
# The tag is $RDMABENCH_IMAGE [localhost/rdmabench:latest]; $RDMABENCH_ENGINE (podman or docker) picks the
# engine [podman where installed]. If this host's pip trusts an extra CA bundle (a TLS-inspecting proxy:
# $PIP_CERT or pip's global.cert), the build's pip is given it too.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_KIND=debian
REFRESH=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --base) BASE_KIND=${2:?--base needs debian or mmdebstrap}; shift 2;;
    --refresh) REFRESH=1; shift;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2;;
  esac
done
IMAGE=${RDMABENCH_IMAGE:-localhost/rdmabench:latest}
BASE_TAG=localhost/rdmabench-base:bookworm

ENGINE=${RDMABENCH_ENGINE:-}
if [[ -z "$ENGINE" ]]; then
  if command -v podman >/dev/null; then ENGINE=podman; elif command -v docker >/dev/null; then ENGINE=docker; fi
fi
if [[ "$ENGINE" == podman ]]; then
  # chroot isolation: the build's RUN steps work inside containers and VMs whose OCI runtime cannot set
  # rlimits or make namespaces (as on our CI machines); the image is the same
  BUILD=(podman build --isolation chroot)
elif [[ "$ENGINE" == docker ]]; then
  BUILD=(docker build)
else
  echo "error: neither podman nor docker is installed (Debian: apt-get install podman)" >&2; exit 1
fi

args=(-f containers/Containerfile -t "$IMAGE")
case "$BASE_KIND" in
  debian) ;;
  mmdebstrap)
    if [[ $REFRESH == 1 ]] || ! $ENGINE image inspect "$BASE_TAG" >/dev/null 2>&1; then
      command -v mmdebstrap >/dev/null || { echo "error: mmdebstrap is not installed (apt-get install mmdebstrap)" >&2; exit 1; }
      tmp=$(mktemp -d)
      trap 'rm -rf "$tmp"' EXIT
      echo "making the Debian 12 base with mmdebstrap (minbase) ..." >&2
      mmdebstrap --quiet --variant=minbase --mode=root bookworm "$tmp/base.tar" \
        "deb http://deb.debian.org/debian bookworm main" \
        "deb http://deb.debian.org/debian bookworm-updates main" \
        "deb http://deb.debian.org/debian-security bookworm-security main"
      $ENGINE import "$tmp/base.tar" "$BASE_TAG" >/dev/null
    fi
    args+=(--build-arg "BASE=$BASE_TAG");;
  *) echo "error: --base is debian or mmdebstrap, not $BASE_KIND" >&2; exit 2;;
esac

cert=${PIP_CERT:-$(python3 -m pip config get global.cert 2>/dev/null || true)}
if [[ -n "$cert" && -f "$cert" ]]; then
  if [[ $ENGINE == podman ]]; then
    args+=(-v "$cert:/run/host-ca.crt:ro" --build-arg PIP_CERT=/run/host-ca.crt)
  else
    echo "note: this host's pip trusts $cert; docker build cannot mount it, so the image's pip uses its own CAs" >&2
  fi
fi

echo "building $IMAGE with $ENGINE ..." >&2
"${BUILD[@]}" "${args[@]}" .
