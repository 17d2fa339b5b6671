#!/usr/bin/env bash
# Fetches a newer Debian kernel for the lab, without installing it, and prints its image's path.
#
# Why: Debian 12's kernel (6.1) and Debian 13's (6.12) cannot carry soft-RoCE between two network
# namespaces (two containers); 7.3's rdma_rxe opens a UDP socket in its netdev's namespace (docs/containers.md).
# RDMABENCH_KERNEL_SUITE picks another suite (trixie: Debian 13's own kernel).
# The newest amd64 kernel of trixie-backports is downloaded with apt into a private cache (apt checks the
# archive's signature and every file's hash), unpacked beside its modules and left there:
#   ~/.cache/rdmabench/kernels/<version>/usr/lib/modules/<version>/vmlinuz
# /boot and dpkg are not touched, so `rdmabench lab` keeps booting the installed kernel unless given
# --kernel. Quick when the newest version is already unpacked (one index download).
set -euo pipefail

SUITE=${RDMABENCH_KERNEL_SUITE:-trixie-backports}
MIRROR=${RDMABENCH_KERNEL_MIRROR:-http://deb.debian.org/debian}
CACHE=${RDMABENCH_CACHE:-$HOME/.cache/rdmabench}/kernels
APT="$CACHE/apt"
mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial"
echo "deb $MIRROR $SUITE main" > "$APT/sources.list"
opts=(-o "Dir::Etc::SourceList=$APT/sources.list" -o Dir::Etc::SourceParts=/nonexistent
      -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT/cache" -o Debug::NoLocking=1
      -o APT::Sandbox::User=root)

apt-get "${opts[@]}" -qq update >&2 || { echo "error: cannot read $SUITE from $MIRROR (apt-get update failed)" >&2; exit 1; }
# linux-image-amd64 names the newest kernel: linux-image-<version>-amd64
version=$(apt-cache "${opts[@]}" depends linux-image-amd64 2>/dev/null \
          | sed -n 's/^ *Depends: linux-image-\(.*-amd64\)$/\1/p' | head -1)
[[ -n "$version" ]] || { echo "error: $SUITE lists no linux-image-amd64 kernel" >&2; exit 1; }
dest="$CACHE/$version"
image="$dest/usr/lib/modules/$version/vmlinuz"
if [[ ! -f "$dest/.complete" ]]; then
  echo "fetching Debian's kernel $version ($SUITE) into $dest" >&2
  # newer Debian packaging splits the image (linux-binary-*) from its modules (linux-modules-*); older
  # packaging ships both in linux-image-<version>
  if apt-cache "${opts[@]}" show "linux-binary-$version" >/dev/null 2>&1; then
    pkgs=("linux-binary-$version" "linux-modules-$version")
  else
    pkgs=("linux-image-$version")
  fi
  work=$(mktemp -d "$CACHE/.fetch-XXXXXX")
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && apt-get "${opts[@]}" -qq download "${pkgs[@]}" >&2)
  mkdir -p "$work/root"
  for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/root"; done
  if [[ ! -f "$work/root/usr/lib/modules/$version/vmlinuz" ]]; then  # older packaging: the image in /boot
    cp "$work/root/boot/vmlinuz-$version" "$work/root/usr/lib/modules/$version/vmlinuz"
  fi
  [[ -d "$work/root/usr/lib/modules/$version/kernel/drivers/infiniband/sw/rxe" ]] \
    || { echo "error: kernel $version has no rdma_rxe module" >&2; exit 1; }
  rm -rf "$dest"
  mv "$work/root" "$dest"
  touch "$dest/.complete"
fi
echo "$image"
