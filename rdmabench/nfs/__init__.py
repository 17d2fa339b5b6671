"""NFS (over RDMA and over TCP) for the ``nfs-rdma`` and ``nfs-tcp`` transports.

``mounts``: read /proc/mounts, mount and unmount NFS with bounded timeouts, check that a mount
really uses the protocol a figure is labelled with. ``server``: the lab's kernel NFS server
(``python -m rdmabench.nfs.server start --export DIR``).
"""

from .mounts import (MountEntry, NfsMountError, check_proto, find_mount, mount, mount_options, parse_mounts,
                     read_mounts, umount)

__all__ = ["MountEntry", "NfsMountError", "check_proto", "find_mount", "mount", "mount_options", "parse_mounts",
           "read_mounts", "umount"]
