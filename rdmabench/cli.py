"""The rdmabench command line: parse, call, print. No RDMA logic lives here."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import click

from . import __version__, devices
from .errors import RdmabenchError
from .cli_types import SIZE
from .units import format_size


class _Cli(click.Group):
    """Turns errors a user can act on into a one-line message and exit status 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except RdmabenchError as err:
            raise click.ClickException(str(err)) from None




@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rdmabench")
def cli():
    """RDMA transport and storage benchmarks for Filecoin sealing clusters.

    Measures what RDMA (verbs write/read, NFS over RDMA) buys over the TCP HTTP
    fetch Lotus uses between sealing workers. On a host with RDMA NICs, start
    with `rdmabench devices`. Anywhere else, `rdmabench lab -- CMD` runs CMD in a
    soft-RoCE (rxe) guest; numbers measured there are for ratios, not hardware claims.
    """


@cli.command("devices")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output for scripts.")
@click.option("--device", "-d", metavar="NAME", help="Show only this device (e.g. mlx5_0, rxe0).")
def devices_cmd(as_json: bool, device: str | None):
    """List RDMA devices: port state, link layer, MTU and every GID.

    The GID marked with * is the one rdmabench uses unless told otherwise:
    on RoCE the RoCE v2 GID carrying the port's IPv4 address.
    Exits non-zero when the host has no RDMA device.
    """
    found = [devices.require(device)] if device else devices.discover()
    if as_json:
        click.echo(json.dumps([d.to_dict() for d in found], indent=2))
        return
    for dev in found:
        click.echo(f"{dev.name}  driver {dev.driver or '?'}  fw {dev.fw_ver or '?'}  node_guid {dev.node_guid or '?'}"
                   + (f"  {dev.hca_type}" if dev.hca_type else ""))
        for port in dev.ports:
            mtu = f"{port.active_mtu}" if port.active_mtu else "unknown"
            net = f"  netdev {port.netdev} (MTU {port.netdev_mtu})" if port.netdev else ""
            click.echo(f"  port {port.number}: {port.state} ({port.phys_state})  link layer {port.link_layer}"
                       f"  active MTU {mtu}{net}")
            if not port.gids:
                click.echo("    no GIDs (the port has no address yet)")
                continue
            click.echo("      idx  type         gid                                      netdev")
            for gid in port.gids:
                mark = "*" if gid.index == port.recommended_gid_index else " "
                addr = gid.compact + (f"  (IPv4 {gid.ipv4})" if gid.ipv4 else "")
                click.echo(f"    {mark} {gid.index:<4} {gid.type:<12} {addr:<40} {gid.netdev or ''}")
            if port.recommended_gid_index is not None:
                click.echo(f"    recommended GID index: {port.recommended_gid_index}")


@cli.command("lab", context_settings={"ignore_unknown_options": True})
@click.option("--hosts", type=click.IntRange(1, 3), default=1, show_default=True,
              help="1: one guest with rxe on a dummy netdev. 2: 'storage' and 'worker' guests joined by a link. "
                   "3: 'storage', 'worker1' and 'worker2' on one link, with sshd and Open MPI.")
@click.option("--storage", "storage_cmd", metavar="CMD",
              help="With --hosts 2 or 3: shell command for the storage guest (with 3, the same as -- CMD).")
@click.option("--worker", "worker_cmd", metavar="CMD",
              help="With --hosts 2: shell command for the worker guest. With 3: for worker1 and worker2 (optional).")
@click.option("--cpus", type=click.IntRange(1, 64), help="vCPUs per guest [2; 1 with --hosts 3].")
@click.option("--memory", default="2G", show_default=True, help="Memory per guest.")
@click.option("--boot-timeout", type=click.FloatRange(1),
              help="Seconds the guests have to come up [240 under TCG (420 with --hosts 3), 60 with KVM].")
@click.option("--timeout", type=click.FloatRange(1), help="Seconds the whole command may run; stopped after.")
@click.option("--grace", type=click.FloatRange(0), default=15.0, show_default=True,
              help="With --hosts 2: seconds storage may keep running after the worker is done.")
@click.option("--results", type=click.Path(file_okay=False, path_type=Path), default=Path("results"),
              show_default=True, help="Host folder shared with the guests, writable ($RDMABENCH_RESULTS inside).")
@click.option("--kvm/--no-kvm", default=None, help="Force KVM on or off [on only where the CPU has vmx/svm].")
@click.option("--kernel", type=click.Path(dir_okay=False, path_type=Path), metavar="VMLINUZ",
              help="The guests' kernel image [the newest /boot/vmlinuz-*-amd64]. Its modules are found beside it "
                   "(a Debian package unpacked: scripts/fetch-lab-kernel.sh fetches a newer one and prints its path).")
@click.option("--console", is_flag=True,
              help="Show the guests' kernel messages, errors and worse (an oops, a panic), among the output.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def lab_cmd(hosts, storage_cmd, worker_cmd, cpus, memory, boot_timeout, timeout, grace, results, kvm, kernel,
            console, command):
    """Run COMMAND inside the soft-RoCE lab and return its exit status.

    \b
    Examples:
      rdmabench lab -- rdmabench devices
      rdmabench lab -- 'rdmabench devices && rdmabench roundtrip'
      rdmabench lab --hosts 2 --storage 'rdmabench serve --bind $RDMABENCH_IP' \\
                    --worker 'pytest tests/lab/two_hosts'
      rdmabench lab --hosts 3 -- 'mpirun -H $RDMABENCH_MPI_HOSTS -np 3 hostname'

    Each guest boots Debian's kernel with this host's root filesystem (read-only;
    /tmp and the results folder are writable), loads rdma_rxe on a netdev with
    MTU 9000 and runs the command from the current directory with this venv on
    PATH. Inside, these are set (and written to /tmp/rdmabench-lab.env):
    RDMABENCH_DEVICE, RDMABENCH_IP, RDMABENCH_GID_INDEX, RDMABENCH_ROLE
    (single, storage or worker), RDMABENCH_PEER_IP (two hosts; a worker's with
    three), RDMABENCH_RESULTS, RDMABENCH_HOSTNAME (three hosts).

    One argument is a whole shell line; several are quoted and joined. With
    --hosts 2 and a plain COMMAND, it runs on both guests. No guest outlives
    this command, Ctrl-C included.

    \b
    --hosts 3: storage 10.77.3.1, worker1 10.77.3.2, worker2 10.77.3.3 (those
    names resolve in every guest), each with sshd and a key made for this run.
    COMMAND (or --storage) runs in storage once both workers' sshd answer; its
    exit status is the lab's, and the workers stop when it ends. Open MPI is
    set up by environment (OMPI_MCA_*), so in storage
      mpirun -H $RDMABENCH_MPI_HOSTS -np 3 python -c '...'
    starts one rank per guest over ssh; `ssh worker1 CMD` works too. A rank or
    an ssh command gets its own guest's RDMABENCH_* values and the lab's
    RDMABENCH_SECRET and PATH (no -x needed). 1 vCPU per guest unless --cpus.
    """
    from .lab.runner import LabOptions, run

    line = None
    if command:
        line = command[0] if len(command) == 1 else shlex.join(command)
    if hosts == 1:
        if storage_cmd or worker_cmd:
            raise click.UsageError("--storage and --worker need --hosts 2 or 3")
        if not line:
            raise click.UsageError("give the command to run: rdmabench lab -- CMD...")
    elif hosts == 2 and not (line or worker_cmd):
        raise click.UsageError("give a command: rdmabench lab --hosts 2 --worker CMD [--storage CMD], or -- CMD for both")
    elif hosts == 3:
        if line and storage_cmd:
            raise click.UsageError("with --hosts 3, -- CMD and --storage CMD both name storage's command: give one")
        if not (line or storage_cmd):
            raise click.UsageError("give a command: rdmabench lab --hosts 3 -- CMD (it runs in the storage guest, "
                                   "where mpirun starts ranks in all three)")
    if cpus is None:
        cpus = 1 if hosts == 3 else 2  # three guests of 2 vCPUs on a 2-core machine crawl under TCG
    options = LabOptions(cpus=cpus, memory=memory, boot_timeout=boot_timeout, timeout=timeout, grace=grace,
                         results=results, kvm=kvm, kernel=kernel, console=console)
    try:
        code = run(options, command=line, storage=storage_cmd, worker=worker_cmd, hosts=hosts)
    except KeyboardInterrupt:
        click.echo("rdmabench lab: interrupted; guests stopped", err=True)
        sys.exit(130)
    sys.exit(code)


@cli.command("roundtrip")
@click.option("--device", "-d", envvar="RDMABENCH_DEVICE", metavar="NAME",
              help="RDMA device [$RDMABENCH_DEVICE, else the only one].")
@click.option("--gid-index", type=click.IntRange(0), help="GID index [the recommended one; see `rdmabench devices`].")
@click.option("--size", type=SIZE, default="64K", show_default=True, help="Bytes to write and read back.")
@click.option("--engine", type=click.Choice(["python", "native", "both"]), default="both", show_default=True,
              help="python: pyverbs; native: the C extension.")
def roundtrip_cmd(device, gid_index, size, engine):
    """One RDMA WRITE and one RDMA READ between two QPs on one device, payload verified.

    A quick proof that the device moves bytes: QP A writes a pattern into QP B's
    buffer, then reads a second pattern back from it; both are checked byte by byte.
    """
    dev = devices.choose(device)
    gid = gid_index if gid_index is not None else dev.ports[0].recommended_gid_index
    if gid is None:
        raise RdmabenchError(f"{dev.name} port 1 has no GID; give its netdev an address (see `rdmabench devices`)")
    engines = ["python", "native"] if engine == "both" else [engine]
    failed = False
    for name in engines:
        if name == "native":
            from .native import roundtrip
        else:
            from .verbs.roundtrip import roundtrip
        r = roundtrip(dev.name, gid, size)
        ok = r["write_verified"] and r["read_verified"]
        failed |= not ok
        click.echo(f"{name:>6}: {dev.name} GID {gid} MTU {r.get('active_mtu')}: "
                   f"RDMA WRITE {format_size(size)} {'verified' if r['write_verified'] else 'CORRUPT'} "
                   f"in {r['write_us']:.1f} us, RDMA READ {format_size(size)} "
                   f"{'verified' if r['read_verified'] else 'CORRUPT'} in {r['read_us']:.1f} us")
    if os.environ.get("RDMABENCH_ROLE"):
        click.echo("(soft-RoCE under emulation: times show the path works, not what hardware does)")
    if failed:
        sys.exit(1)


from .cli_results import compare_cmd, jobs_cmd, report_cmd  # noqa: E402  (results and job logs)
from .cli_serve import secret_group, serve_cmd  # noqa: E402  (the listening side)
from .cli_baselines import baseline_cmd, pipeline_cmd  # noqa: E402  (what our figures are measured against)
from .cli_live import live_cmd  # noqa: E402  (a running Lotus or Curio's own fetch)
from .cli_doctor import doctor_cmd  # noqa: E402  (a preflight of this host and a peer)
from .cli_verbs import crosscheck_cmd, run_cmd  # noqa: E402  (verbs tests, transfer scenarios, perftest side by side)
from .cli_cluster import cluster_cmd  # noqa: E402  (many hosts at once, under MPI)

cli.add_command(run_cmd)
cli.add_command(crosscheck_cmd)
cli.add_command(compare_cmd)
cli.add_command(report_cmd)
cli.add_command(jobs_cmd)
cli.add_command(serve_cmd)
cli.add_command(secret_group)
cli.add_command(baseline_cmd)
cli.add_command(pipeline_cmd)
cli.add_command(live_cmd)
cli.add_command(doctor_cmd)
cli.add_command(cluster_cmd)


def main():
    cli(prog_name="rdmabench")


if __name__ == "__main__":
    main()
