#!/bin/sh
# Every rdmabench container starts here: it gives the container its own soft-RoCE device on its own network
# interface, publishes what it made, then runs the command.
#   RDMABENCH_DEVICE  the device to use; made (rxe on RDMABENCH_NETDEV) unless it exists already, as a real
#                     NIC's device does (mlx5_0 given to the container: nothing is made)
#   RDMABENCH_NETDEV  the interface for rxe [eth0, the container's end of its network]
# Then RDMABENCH_IP (the interface's IPv4 address) is set for the command.
set -eu

say() { echo "rdmabench-container: $*" >&2; }
fail() { say "error: $*"; exit 1; }

NETDEV=${RDMABENCH_NETDEV:-eth0}
DEVICE=${RDMABENCH_DEVICE:-rxe_$(hostname | tr -c 'A-Za-z0-9_\n' _)}
[ -d "/sys/class/net/$NETDEV" ] || fail "no interface $NETDEV here (set RDMABENCH_NETDEV; this container has: $(ls /sys/class/net | tr '\n' ' '))"
IP=$(ip -4 -o addr show dev "$NETDEV" | awk '{ split($4, a, "/"); print a[1]; exit }')
[ -n "$IP" ] || fail "interface $NETDEV has no IPv4 address"

if [ ! -e "/sys/class/infiniband/$DEVICE" ]; then
  # Soft-RoCE lives in the host's kernel: a container cannot load it, only create a device on its interface.
  [ -d /sys/module/rdma_rxe ] || fail "the host's kernel has no rdma_rxe loaded. On the host: sudo modprobe rdma_rxe
  (Debian/Ubuntu: it ships in linux-modules-extra-\$(uname -r) on Ubuntu, in the kernel package on Debian).
  A container cannot load kernel modules."
  # shared: the device is visible in every namespace but carries the traffic of its netdev's namespace.
  # exclusive: a device created here lands in the host's namespace and must be moved by the host, and even
  # then rdma_cm cannot connect across namespaces (docs/containers.md)
  if rdma system show 2>/dev/null | grep -q 'netns exclusive'; then
    fail "the host's RDMA subsystem is in exclusive namespace mode; soft-RoCE in containers needs shared mode.
  On the host: sudo rdma system set netns shared   (docs/containers.md says why)"
  fi
  if ! out=$(rdma link add "$DEVICE" type rxe netdev "$NETDEV" 2>&1); then
    case "$out" in
      *"Operation not permitted"*) fail "rdma link add $DEVICE: $out. The container needs CAP_NET_ADMIN (compose: cap_add: [NET_ADMIN])";;
      *) fail "rdma link add $DEVICE type rxe netdev $NETDEV: $out";;
    esac
  fi
  say "made $DEVICE: soft-RoCE on $NETDEV ($IP)"
fi

# The device is usable once its IPv4-mapped GID is there (rxe fills the table from the interface's addresses).
i=0
until grep -qi "$(printf '0000:0000:0000:0000:0000:ffff:%02x%02x:%02x%02x' $(echo "$IP" | tr . ' '))" \
        "/sys/class/infiniband/$DEVICE"/ports/1/gids/* 2>/dev/null; do
  i=$((i + 1))
  [ "$i" -le 100 ] || fail "$DEVICE has no GID for $IP after 20 s"
  sleep 0.2
done

# Its verbs node must be there and open to us: the host's /dev/infiniband is mounted in, and the device
# cgroup lets us open character devices of major 231 (uverbs) and rdma_cm's.
node=""
for d in /sys/class/infiniband_verbs/uverbs*; do
  [ "$(cat "$d/ibdev" 2>/dev/null)" = "$DEVICE" ] && node=/dev/infiniband/$(basename "$d")
done
[ -n "$node" ] || fail "$DEVICE has no uverbs device (is ib_uverbs loaded on the host? sudo modprobe ib_uverbs)"
[ -e "$node" ] || fail "$node is not in this container: mount the host's /dev/infiniband (compose: volumes: [/dev/infiniband:/dev/infiniband])"
if ! (exec 3<>"$node") 2>/dev/null; then
  fail "cannot open $node: allow the verbs devices (compose: device_cgroup_rules: ['c 231:* rmw', 'c 10:* rmw'])"
fi

export RDMABENCH_DEVICE="$DEVICE" RDMABENCH_NETDEV="$NETDEV" RDMABENCH_IP="$IP"
exec "$@"
