"""`rdmabench cluster`: parse, start this rank's part, and make a failure stop every rank."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .errors import RdmabenchError


@click.command("cluster")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("configs/cluster.toml"), show_default=True,
              help="The cluster file: which host is storage, which are workers, and the scenarios ([fan_in], "
                   "[all_pairs]). Every rank reads it, so it must be at this path on every host.")
@click.option("--device", "-d", metavar="NAME", help="RDMA device on every host (e.g. mlx5_0) [the only one there].")
@click.option("--gid-index", type=int, help="GID index on every host [each device's RoCE v2 IPv4 GID].")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Result file, written by the storage host's rank [results/cluster-HOST-TIME.json].")
def cluster_cmd(config_path, device, gid_index, output):
    """Fan-in and all-pairs benchmarks across a sealing cluster, one MPI rank per host.

    \b
      mpirun -H storage,worker1,worker2 .venv/bin/rdmabench cluster --config configs/cluster.toml
      srun -N 3 --ntasks-per-node 1 .venv/bin/rdmabench cluster --config configs/cluster.toml

    Each rank takes its role from the file by its host name. MPI only coordinates (start
    together, gather results): the sector data moves over rdmabench's transports, between the
    workers and the storage host's `serve` daemon, started inside the storage rank.

    fan-in: the first 1, then 2, ... workers move a hand-off (pc1-pc2: pull sealed + cache from
    storage; finalize: push them to it) at the same moment, verified, over every transport of
    [fan_in]. The table shows the aggregate (all bytes over the slowest worker's time), its ratio
    to one worker, Jain's fairness index, min/max, and CPU-s/GB at the storage host and workers.

    all-pairs: a verbs test between every ordered pair of hosts, one pair at a time; the matrix
    names the link furthest from the median.

    Every rank needs the shared secret (RDMABENCH_SECRET, or `rdmabench secret init` on each
    host); with mpirun, pass it on with `-x RDMABENCH_SECRET`. A rank that fails, or a host that
    cannot be reached within [hosts] step_timeout, stops the whole run with a message naming the
    host; the storage host's rank writes the one result file.
    """
    from .cluster import config as cluster_config
    from .cluster.run import run
    from .cluster.team import Team, world

    team = None
    try:
        cluster = cluster_config.load(config_path)
        team = Team(world())
        run(cluster, team, device, gid_index, output)
    except (RdmabenchError, OSError) as err:
        if team is None or team.size == 1:
            raise click.ClickException(str(err)) from None
        team.abort(str(err))  # the other ranks would wait for this one until the step's bound
    except Exception as err:  # a defect: show where, and still stop the others now rather than at the bound
        if team is None or team.size == 1:
            raise
        import traceback
        traceback.print_exc()
        team.abort(f"{type(err).__name__}: {err}")
    except KeyboardInterrupt:
        if team is not None and team.size > 1:
            team.abort("interrupted", 130)
        sys.exit(130)
