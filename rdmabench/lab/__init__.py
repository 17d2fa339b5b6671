"""The soft-RoCE lab: QEMU guests that boot Debian's kernel with the host's root
filesystem (virtme-ng) and run rdmabench over rdma_rxe.

vm.py assembles the command lines, guest.py sets up RDMA inside a guest (it runs
as `python -m rdmabench.lab.guest`, so this package imports nothing eagerly),
runner.py boots the guests and keeps them on a leash."""
