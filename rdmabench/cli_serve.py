"""The listening side's commands: `rdmabench serve` and the shared secret it asks every peer for.
Parse, call, print; the work is in rdmabench.serve and rdmabench.auth."""

from __future__ import annotations

import os
from pathlib import Path

import click


@click.command("serve")
@click.option("--bind", required=True, metavar="ADDR",
              help="Address to listen on (the server listens only there; e.g. the RDMA netdev's address).")
@click.option("--port", type=click.IntRange(0, 65535), default=18515, show_default=True,
              help="The one TCP port every service is reached on.")
@click.option("--device", "-d", envvar="RDMABENCH_DEVICE", metavar="NAME", help="RDMA device [the only one].")
@click.option("--gid-index", type=click.IntRange(0), help="GID index [the recommended one].")
@click.option("--clients", type=click.IntRange(1), help="Exit after this many clients [serve forever].")
@click.option("--root", type=click.Path(file_okay=False), default="/tmp/rdmabench/serve", show_default=True,
              help="This host's files for transfers: ROOT/storage (sent from), ROOT/work (received into).")
def serve_cmd(bind, port, device, gid_index, clients, root):
    """The far end of every rdmabench command: one daemon per storage host.

    It answers verbs tests and perftest cross-checks (`run --peer`, `crosscheck
    --peer`), sector transfers (`run --config --peer`), the rdma-write and
    rdma-read transports' passive ends (receiving into ROOT/work, serving from
    ROOT/storage) and the pyverbs peer check, all on the one --port. Verbs tests
    run one at a time; the server opens its endpoints on its own device,
    measures its own CPU and returns its figures, so one result file holds both
    ends. A client that dies mid-test is dropped; the server goes on.

    Every client must prove it holds the cluster's shared secret before the
    server acts on anything it sends. The secret comes from $RDMABENCH_SECRET,
    the file $RDMABENCH_SECRET_FILE names, or ~/.config/rdmabench/secret
    (never the command line); `rdmabench secret init` makes one. Sector
    transfers only touch files under --root.

    \b
    Example (storage host, then worker host, both holding the same secret file):
      rdmabench secret init && scp ~/.config/rdmabench/secret worker:.config/rdmabench/
      rdmabench serve --bind 192.168.10.1 --device mlx5_0
      rdmabench run --peer 192.168.10.1 --device mlx5_0 --test write_bw --sizes 4K:8M
    """
    from .serve import Daemon

    daemon = Daemon(bind, port, device, gid_index, root=root, max_clients=clients)
    where = f"device {daemon.dev.name} GID index {daemon.gid_index}" if daemon.dev else "no RDMA device (transfers only)"
    click.echo(f"rdmabench serve: listening on {bind}:{daemon.port}, {where}; services "
               f"{', '.join(daemon.services)}", err=True)
    try:
        daemon.wait()
    except KeyboardInterrupt:
        pass
    finally:
        daemon.close()


@click.group("secret")
def secret_group():
    """The shared secret every rdmabench listener asks its peers to prove.

    `rdmabench serve`, the rdma transports' passive ends and the verbs peer
    refuse any connection that cannot prove it holds the same secret (an HMAC
    challenge-response: the secret itself never crosses the network). Looked up
    in order: $RDMABENCH_SECRET, the file named by $RDMABENCH_SECRET_FILE,
    ~/.config/rdmabench/secret. The lab makes one of its own for each run.
    """


@secret_group.command("init")
@click.option("--file", "path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write it [$RDMABENCH_SECRET_FILE, else ~/.config/rdmabench/secret].")
@click.option("--force", is_flag=True, help="Replace an existing secret (every host must then get the new one).")
def secret_init(path, force):
    """Write a new random secret (mode 0600), then copy the file to every host."""
    from . import auth

    path = path or Path(os.environ.get(auth.ENV_SECRET_FILE) or auth.default_file())
    written = auth.write_secret(path, force=force)
    click.echo(f"wrote a new shared secret to {written} (mode 0600)")
    click.echo(f"copy it to the same path on every host of the cluster, or point {auth.ENV_SECRET_FILE} at it")


@secret_group.command("check")
def secret_check():
    """Say where this host's secret comes from, or why there is none usable."""
    from . import auth

    auth.load_secret()
    source = (f"${auth.ENV_SECRET}" if os.environ.get(auth.ENV_SECRET) is not None
              else os.environ.get(auth.ENV_SECRET_FILE) or str(auth.default_file()))
    click.echo(f"shared secret: usable, from {source}")
