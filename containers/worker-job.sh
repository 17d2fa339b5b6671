#!/bin/sh
# The worker container's job, the demo's job between two containers: list the device, prove a verified RDMA
# round trip, move Lotus's hand-offs to and from the storage container over every transport a container can
# carry (DEMO_CONFIG, with DEMO_TRANSFER_OPTS: e.g. --repetitions 1 --scale 1/65536), run the verbs tests
# against it (DEMO_VERBS), then write the report (unless DEMO_REPORT=0).
set -eu
cd /opt/rdmabench
R=${RDMABENCH_RESULTS:-/results}
VERBS=${DEMO_VERBS:-"-t all --sizes 2,4K,64K,1M --iters 100 --repeat 2"}
# the storage container by its service name (the compose network's DNS); rdma_cm wants an address
i=0
until STORAGE=$(getent hosts storage | awk '{ print $1; exit }') && [ -n "$STORAGE" ]; do
  i=$((i + 1)); [ "$i" -le 50 ] || { echo "worker: cannot resolve the storage container's name" >&2; exit 1; }
  sleep 0.2
done
echo "worker: $RDMABENCH_DEVICE at $RDMABENCH_IP (netns $(readlink /proc/self/ns/net)), storage at $STORAGE"
set -x
# shellcheck disable=SC2086  # the *_OPTS and VERBS are option lists, split on purpose
rdmabench devices -d "$RDMABENCH_DEVICE"
rdmabench roundtrip --engine both --size 1M
rdmabench run --config "$DEMO_CONFIG" --peer "$STORAGE" -d "$RDMABENCH_DEVICE" --wait 300 \
  ${DEMO_TRANSFER_OPTS:-} -o "$R/containers-transfers.json"
rdmabench run --peer "$STORAGE" -d "$RDMABENCH_DEVICE" $VERBS -o "$R/containers-verbs.json"
if [ "${DEMO_REPORT:-1}" != 0 ]; then
  rdmabench report "$R/containers-transfers.json" "$R/containers-verbs.json" -o "$R/containers-report"
fi
