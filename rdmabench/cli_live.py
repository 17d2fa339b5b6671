"""`rdmabench live`: Lotus's own fetch from a running Lotus or Curio. Parse, call, print; the work is in
rdmabench.live (the fetches and the record) and rdmabench.live_auth (the token)."""

from __future__ import annotations

from pathlib import Path

import click

from .live_auth import ENV_TOKEN


@click.command("live")
@click.option("--handoff", type=click.Choice(["pc1-pc2", "finalize"]), required=True,
              help="pc1-pc2: sealed/ID then cache/ID as PC1 left it (layers + tree-d: 448 GiB for 32 GiB); "
                   "finalize: sealed/ID and the finalized cache (tree-r-last, p_aux, t_aux).")
@click.option("--sector", "sector_ids", multiple=True, required=True, metavar="s-t0MINER-N",
              help="A sector the node holds, by Lotus's file name (s-t01000-5); repeat for more.")
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Scratch directory the files land in (never a Lotus storage path); emptied afterwards unless --keep.")
@click.option("--url", envvar="RDMABENCH_LIVE_URL", show_envvar=True, metavar="URL",
              help="The node's /remote: http://HOST:2345/remote (lotus-miner), :3456 (lotus-worker), "
                   ":12300 (curio).")
@click.option("--kind", type=click.Choice(["lotus", "curio"]), default="lotus", show_default=True,
              help="What runs there: the same protocol, the token is made differently.")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path),
              help=f"File holding the token (mode 0600) [else ${ENV_TOKEN}].")
@click.option("--secret-file", type=click.Path(dir_okay=False, path_type=Path),
              help="File holding the node's JWT secret (Curio's StorageRPCSecret, or Lotus's keystore entry "
                   "MF2XI2BNNJ3XILLQOJUXMYLUMU): the token is signed here, in memory.")
@click.option("--repetitions", type=click.IntRange(1), default=3, show_default=True, help="Fetches of each sector.")
@click.option("--keep", is_flag=True, help="Leave the last repetition's files in --dest.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Result file [results/transfer-HOST-TIME.json].")
def live_cmd(handoff, sector_ids, dest, url, kind, token_file, secret_file, repetitions, keep, output):
    """Measure the fetch your running Lotus or Curio does, on your hosts, as a baseline for the rdma transports.

    Fetches sectors the node already holds from its /remote endpoint with exactly the
    requests Lotus's own fetch sends (GET /remote/sealed/ID, GET /remote/cache/ID, one TCP
    connection each, Bearer JWT) into --dest, and writes a transfer result whose rows are
    marked live (variant "live lotus" or "live curio"), so compare and report keep them apart
    from rdmabench's own http rows. Run `rdmabench run --config` between the same hosts at the
    same sector size and give both files to `rdmabench report`.

    Nothing is ever deleted or written at the source: no DELETE (Lotus's mover sends one after
    a move; this is a measurement), no HEAD, only GET. The sector size is the sealed file's
    length. CPU is metered on this host only. Lotus's fetch has no checksum; this client still
    hashes every byte as it arrives, as rdmabench's own http rows do, so the CPU cost is like
    for like; nothing can be compared (the node offers no digest), and the record says so.

    The token: Lotus: `lotus-miner auth create-token --perm admin` (a miner's token opens its
    workers' /remote too). Curio has no such command: its nodes sign one with [Apis]
    StorageRPCSecret (`curio config get base`); save that value in a file and give
    --secret-file. Never give the token itself on the command line.

    \b
    Examples:
      export RDMABENCH_LIVE_URL=http://10.0.0.5:2345/remote
      rdmabench live --handoff pc1-pc2 --sector s-t01000-5 --dest /scratch/live --token-file ~/lotus-remote.token
      rdmabench live --kind curio --url http://10.0.0.7:12300 --secret-file ~/curio.secret \\
          --handoff finalize --sector s-t01000-9 --dest /scratch/live -o results/live.json
    """
    from . import live, live_auth

    creds = live_auth.load(kind, token_file, secret_file)
    result = live.run(url, creds, handoff, list(sector_ids), dest, kind=kind, repetitions=repetitions, keep=keep,
                      say=lambda msg: click.echo(msg, err=True))
    path = result.publish(output)
    kept = f"; the files are in {dest}" if keep else f"; {dest} holds nothing of this run"
    click.echo(f"{len(result.rows)} live fetches from {result.options['source']}{kept}")
    click.echo(f"result file: {path}")
