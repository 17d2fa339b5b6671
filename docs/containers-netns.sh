#!/bin/sh
# Two network namespaces joined by a veth pair, an rxe device on each end, perftest between them: does
# soft-RoCE carry RDMA across namespaces in MODE (shared or exclusive)? Run as root on a kernel with rdma_rxe,
# e.g. in the lab: rdmabench lab --kernel "$(scripts/fetch-lab-kernel.sh)" -- 'sh docs/containers-netns.sh shared'
set -u
MODE=${1:-shared}
modprobe -a rdma_rxe ib_uverbs rdma_ucm
rdma system set netns "$MODE" && rdma system show
ip netns add nsa; ip netns add nsb
ip link add va type veth peer name vb
ip link set va netns nsa; ip link set vb netns nsb
ip -n nsa addr add 10.88.0.1/24 dev va; ip -n nsa link set va up
ip -n nsb addr add 10.88.0.2/24 dev vb; ip -n nsb link set vb up
ip netns exec nsa rdma link add rxe_a type rxe netdev va
ip netns exec nsb rdma link add rxe_b type rxe netdev vb
if [ "$MODE" = exclusive ]; then  # made in the host's namespace: move each into its own
  rdma dev set rxe_a netns nsa; rdma dev set rxe_b netns nsb
fi
echo "devices seen in nsa:"; ip netns exec nsa ibv_devices
ip netns exec nsa timeout 60 ib_write_bw -d rxe_a -R -F -s 65536 -n 200 >/tmp/netns-server.txt 2>&1 &
sleep 3
ip netns exec nsb timeout 60 ib_write_bw -d rxe_b -R -F -s 65536 -n 200 10.88.0.1 >/tmp/netns-client.txt 2>&1
rc=$?
tail -3 /tmp/netns-client.txt
wait
echo "MODE=$MODE: ib_write_bw across the namespaces exited $rc"
exit $rc
