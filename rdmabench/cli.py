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
from .engines.tests import TESTS
from .cli_types import SIZE
from .units import format_size


class _Cli(click.Group):
    """Turns errors a user can act on into a one-line message and exit status 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except RdmabenchError as err:
            raise click.ClickException(str(err)) from None




def names_option(known, all_word: str | None = None):
    """A click callback for -t/--tests: repeat the option, or separate names with commas, or both.
    ``known``: the names, or a function giving them (read when the option is parsed)."""

    def parse(ctx, param, values):
        names_known = known() if callable(known) else known
        names = [n.strip() for v in (values if isinstance(values, (list, tuple)) else [values])
                 for n in str(v).split(",") if n.strip()]
        unknown = [n for n in names if n not in names_known and n != all_word]
        if unknown or not names:
            raise click.BadParameter(f"{', '.join(unknown) or 'nothing'}: choose from {', '.join(names_known)}"
                                     + (f" or {all_word}" if all_word else ""), ctx, param)
        chosen = list(names_known) if all_word in names else names
        return list(dict.fromkeys(chosen))  # in the order given, each once

    return parse


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
@click.option("--hosts", type=click.IntRange(1, 2), default=1, show_default=True,
              help="1: one guest with rxe on a dummy netdev. 2: 'storage' and 'worker' guests joined by a link.")
@click.option("--storage", "storage_cmd", metavar="CMD", help="With --hosts 2: shell command for the storage guest.")
@click.option("--worker", "worker_cmd", metavar="CMD", help="With --hosts 2: shell command for the worker guest.")
@click.option("--cpus", type=click.IntRange(1, 64), default=2, show_default=True, help="vCPUs per guest.")
@click.option("--memory", default="2G", show_default=True, help="Memory per guest.")
@click.option("--boot-timeout", type=click.FloatRange(1), help="Seconds a guest has to come up [240 under TCG, 60 with KVM].")
@click.option("--timeout", type=click.FloatRange(1), help="Seconds the whole command may run; stopped after.")
@click.option("--grace", type=click.FloatRange(0), default=15.0, show_default=True,
              help="With --hosts 2: seconds storage may keep running after the worker is done.")
@click.option("--results", type=click.Path(file_okay=False, path_type=Path), default=Path("results"),
              show_default=True, help="Host folder shared with the guests, writable ($RDMABENCH_RESULTS inside).")
@click.option("--kvm/--no-kvm", default=None, help="Force KVM on or off [on only where the CPU has vmx/svm].")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def lab_cmd(hosts, storage_cmd, worker_cmd, cpus, memory, boot_timeout, timeout, grace, results, kvm, command):
    """Run COMMAND inside the soft-RoCE lab and return its exit status.

    \b
    Examples:
      rdmabench lab -- rdmabench devices
      rdmabench lab -- 'rdmabench devices && rdmabench roundtrip'
      rdmabench lab --hosts 2 --storage 'rdmabench serve --bind $RDMABENCH_IP' \\
                    --worker 'pytest tests/lab/two_hosts'

    Each guest boots Debian's kernel with this host's root filesystem (read-only;
    /tmp and the results folder are writable), loads rdma_rxe on a netdev with
    MTU 9000 and runs the command from the current directory with this venv on
    PATH. Inside, these are set (and written to /tmp/rdmabench-lab.env):
    RDMABENCH_DEVICE, RDMABENCH_IP, RDMABENCH_GID_INDEX, RDMABENCH_ROLE
    (single, storage or worker), RDMABENCH_PEER_IP (two hosts), RDMABENCH_RESULTS.

    One argument is a whole shell line; several are quoted and joined. With
    --hosts 2 and a plain COMMAND, it runs on both guests. No guest outlives
    this command, Ctrl-C included.
    """
    from .lab.runner import LabOptions, run

    line = None
    if command:
        line = command[0] if len(command) == 1 else shlex.join(command)
    if hosts == 1:
        if storage_cmd or worker_cmd:
            raise click.UsageError("--storage and --worker need --hosts 2")
        if not line:
            raise click.UsageError("give the command to run: rdmabench lab -- CMD...")
    elif not (line or worker_cmd):
        raise click.UsageError("give a command: rdmabench lab --hosts 2 --worker CMD [--storage CMD], or -- CMD for both")
    options = LabOptions(cpus=cpus, memory=memory, boot_timeout=boot_timeout, timeout=timeout, grace=grace,
                         results=results, kvm=kvm)
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


def _peer(text: str) -> tuple[str, int]:
    from .wire import DEFAULT_PORT

    host, _, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
    if not host:
        host, port = text, ""
    try:
        return host, int(port) if port else DEFAULT_PORT
    except ValueError:
        raise click.BadParameter(f"{text!r}: use HOST or HOST:PORT", param_hint="--peer") from None


@cli.command("run")
@click.option("--test", "-t", "tests_", multiple=True, default=["write_bw"], show_default=True,
              metavar="TEST[,TEST...]", callback=names_option(list(TESTS), "all"),
              help=f"Tests to run: {', '.join(TESTS)} or all; repeat the option or separate with commas.")
@click.option("--device", "-d", envvar="RDMABENCH_DEVICE", metavar="NAME", help="RDMA device [the only one].")
@click.option("--peer", metavar="HOST[:PORT]",
              help="Where `rdmabench serve` runs. Without it both ends run here, on the same device.")
@click.option("--size", "-s", type=SIZE, help="One message size [64K for bandwidth, 2 for latency].")
@click.option("--sizes", metavar="LOW:HIGH|A,B,..", help="A sweep: 2:8M is every power of two from 2 B to 8 MiB.")
@click.option("--iters", "-n", type=click.IntRange(1), help="Iterations [perftest's: 5000 write_bw, 1000 others].")
@click.option("--duration", "-D", type=click.FloatRange(0.1), help="Seconds per test instead of iterations.")
@click.option("--warmup", type=click.IntRange(0), default=0, show_default=True, help="Unmeasured iterations first.")
@click.option("--depth", type=click.IntRange(1), default=128, show_default=True, help="WRs in flight per QP.")
@click.option("--cq-mod", type=click.IntRange(1), default=100, show_default=True, help="Signal every Nth WR.")
@click.option("--qps", "-q", type=click.IntRange(1), default=1, show_default=True, help="QPs, aggregated in one result.")
@click.option("--bidir", "-b", is_flag=True, help="Both directions at once (bandwidth tests).")
@click.option("--gid-index", type=click.IntRange(0), help="GID index [the RoCE v2 IPv4-mapped one].")
@click.option("--mtu", type=click.Choice(["256", "512", "1024", "2048", "4096"]), help="Path MTU [the port's active MTU].")
@click.option("--connect", type=click.Choice(["oob", "cm"]), default="oob", show_default=True,
              help="oob: QP info over the control channel (perftest's default); cm: rdma_cm (perftest -R).")
@click.option("--validate", is_flag=True, help="The receiver checks every payload; a corrupt one fails the run.")
@click.option("--inline-size", type=click.IntRange(0), help="Send up to this many bytes inline [perftest's: 220 for latency tests, 0 for bandwidth].")
@click.option("--slots", type=click.IntRange(1), help="Message buffers per QP for bandwidth tests [perftest's rule: one "
              "shared buffer for write_bw/read_bw above 2 KiB unless --validate, else one per queue slot (depth)].")
@click.option("--engine", type=click.Choice(["native", "python"]), default="native", show_default=True,
              help="native: C hot loops; python: the pyverbs reference.")
@click.option("--tclass", type=click.IntRange(0, 255), default=0, show_default=True,
              help="Traffic class of every QP (both ends): DSCP << 2 | ECN, the switch's PFC/ECN class; "
                   "e.g. 106 = DSCP 26 with ECT(0). perftest's --tclass.")
@click.option("--sl", type=click.IntRange(0, 15), default=0, show_default=True,
              help="Service level of every QP, both ends (--connect oob only: over rdma_cm the kernel derives it "
                   "from the traffic class).")
@click.option("--cpu", metavar="LIST|any",
              help="Pin the measuring thread to these CPUs (0-3,8), buffers on their node; any: no pinning "
                   "[the NIC's NUMA node, from sysfs; each end its own].")
@click.option("--no-numa", is_flag=True, help="No CPU or memory placement at either end.")
@click.option("--hugepages", is_flag=True,
              help="Buffers from 2 MiB huge pages (reserve them: echo N > /proc/sys/vm/nr_hugepages).")
@click.option("--atomic", type=click.Choice(["fetch_add", "cmp_swap"]), default="fetch_add", show_default=True,
              help="atomic_bw/atomic_lat operation (perftest's -A); always 8 bytes, replies and counter checked.")
@click.option("--repeat", type=click.IntRange(1), default=1, show_default=True, help="Repetitions of each test and size.")
@click.option("--timeout-ms", type=click.IntRange(100), default=10000, show_default=True,
              help="Longest wait for any one completion or answer before the run fails.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A sector-transfer scenario (configs/*.toml): hand-offs x transports x repetitions.")
@click.option("--scale", "config_scale", metavar="FRACTION",
              help="With --config: shrink every shape's files by this much (1/65536: a dry run of a real-size config).")
@click.option("--repetitions", "config_reps", type=click.IntRange(1), help="With --config: override its repetitions.")
@click.option("--dir", "config_dir", type=click.Path(file_okay=False, path_type=Path),
              help="With --config: keep this host's files under DIR/storage and DIR/work instead of the config's.")
@click.option("--wait", type=click.FloatRange(0), default=5.0, show_default=True,
              help="Seconds to keep trying while the server is not listening yet.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Result file [results/verbs-HOST-TIME.json].")
def run_cmd(tests_, device, peer, size, sizes, iters, duration, warmup, depth, cq_mod, qps, bidir, gid_index,
            mtu, connect, validate, inline_size, slots, engine, tclass, sl, cpu, no_numa, hugepages, atomic, repeat,
            timeout_ms, config_path, config_scale, config_reps, config_dir, wait, output):
    """Measure RDMA write/read/send bandwidth and latency against `rdmabench serve`.

    What perftest measures, with both ends' CPU (system-wide as qperf counts it,
    and per process), exact latency percentiles and raw samples, written as one
    JSON result file under results/ with the run's full context. Ends with a
    table in perftest's column order.

    RoCE knobs, recorded in the result: --tclass/--sl put every QP (both ends)
    in the fabric's lossless class; each end pins its thread and buffers to
    its NIC's NUMA node by default (--cpu, --no-numa); --hugepages. atomic_bw
    and atomic_lat (--atomic fetch_add|cmp_swap) are perftest's ib_atomic_*.

    With --config, runs a sector-transfer scenario instead (see configs/): Lotus's
    hand-offs over each transport, against `rdmabench serve` on --peer (which
    plays the storage side) or with both sides on this host.

    \b
    Examples:
      rdmabench run --peer 10.0.0.2 -d mlx5_0 --test write_bw --sizes 2:8M
      rdmabench run --peer 10.0.0.2 -d mlx5_0 -t write_lat -t read_lat -n 10000
      rdmabench run -d rxe0 -t all --validate          (both ends on this host)
      rdmabench run --peer 10.0.0.2 -d mlx5_0 -t write_bw,atomic_bw --tclass 106 --sl 3
      rdmabench run --config configs/default.toml --peer 10.77.2.1
    """
    from .perf import table
    from .perf.client import Client, run_local
    from .perf.options import RunOptions, parse_sweep

    ctx = click.get_current_context()
    given = [max(p.opts, key=len) for p in ctx.command.params
             if p.name and ctx.get_parameter_source(p.name) is click.core.ParameterSource.COMMANDLINE]
    config_only = {"--scale", "--repetitions", "--dir"}
    if config_path:
        from .transfer.cli import run_scenario

        ignored = [g for g in given if g not in {"--device", "--peer", "--gid-index", "--config", "--wait",
                                                 "--output"} | config_only]
        if ignored:
            raise click.UsageError(f"{', '.join(ignored)} apply to verbs tests, not to a --config scenario "
                                   "(which would ignore them): drop them")
        run_scenario(config_path, device, gid_index, peer and _peer(peer), wait, output,
                     scale=config_scale, repetitions=config_reps, folder=config_dir)
        return
    if any(g in config_only for g in given):
        raise click.UsageError("--scale, --repetitions and --dir go with --config")
    if size and sizes:
        raise click.UsageError("give --size or --sizes, not both")
    try:
        size_list = parse_sweep(sizes) if sizes else ([size] if size is not None else None)
        names = tests_
        options = RunOptions(tests=names, sizes=size_list, iters=iters, duration=duration, warmup=warmup, depth=depth,
                             cq_mod=cq_mod, qps=qps, bidir=bidir, gid_index=gid_index, mtu=int(mtu) if mtu else None,
                             connect=connect, validate=validate, engine=engine, repeat=repeat, inline_size=inline_size,
                             slots=slots, tclass=tclass, sl=sl, cpu=cpu, numa=not no_numa, hugepages=hugepages,
                             atomic=atomic)
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    dev = devices.choose(device)
    progress = lambda msg: click.echo(f"running {msg} ...", err=True)  # noqa: E731
    if peer:
        host, port = _peer(peer)
        result = Client(options, dev.name, host, port, timeout_ms=timeout_ms, wait=wait, progress=progress).run()
    else:
        result = run_local(options, dev.name, timeout_ms=timeout_ms, progress=progress)
    path = result.publish(output)
    click.echo(table.render(result.rows))
    click.echo(_line_rate_note(result.rows))
    click.echo(f"\nenvironment: {result.context['environment']}")
    click.echo(f"result file: {path}")


def _line_rate_note(rows: list[dict]) -> str:
    """What "% of line" was measured against: the first bandwidth row's path limit (rdmabench.linerate)."""
    from .linerate import describe

    lines = [r["detail"]["line_rate"] for r in rows if "line_rate" in r["detail"]]
    return f"% of line: {describe(lines[0])}" if lines else ""


@cli.command("crosscheck")
@click.option("--device", "-d", envvar="RDMABENCH_DEVICE", metavar="NAME", help="RDMA device [the only one].")
@click.option("--peer", metavar="HOST[:PORT]", help="Where `rdmabench serve` runs [both ends on this host].")
@click.option("--sizes", default="64K,1M", show_default=True, help="Bandwidth message sizes.")
@click.option("--tests", "-t", "only", multiple=True, default=["write_bw,read_bw,write_lat"], show_default=True,
              metavar="TEST[,TEST...]", callback=names_option(lambda: [t for t, _ in __import__(
                  "rdmabench.perf.crosscheck", fromlist=["PLAN"]).PLAN]),
              help="Which of perftest's tools to compare; repeat the option or separate with commas.")
@click.option("--repeat", type=click.IntRange(1), default=3, show_default=True,
              help="Pairs per test and size, run back to back in alternating order; the verdict is their median ratio.")
@click.option("--bw-duration", type=click.IntRange(1, 3600), metavar="SECONDS",
              help="Seconds each bandwidth run measures [5]: perftest -D SECONDS+4 (its 2 s margins, unmeasured, "
                   "before and after), ours --duration SECONDS after one queue depth of unmeasured messages; "
                   "both signal a completion at least every MiB (perftest counts a duration run's messages in "
                   "steps of its CQ moderation).")
@click.option("--bw-iters", type=click.IntRange(5),
              help="Bandwidth iterations instead of a duration (perftest's -n; its 5000 x 1 MiB takes minutes on a "
                   "slow link).")
@click.option("--lat-iters", type=click.IntRange(5), default=1000, show_default=True, help="Latency iterations.")
@click.option("--lat-repeat", type=click.IntRange(1), metavar="PAIRS",
              help="Pairs for the latency test [9; --repeat when that is given]: a latency run is a ~20 ms "
                   "snapshot, and one guest's latency switches between modes, both tools alike; its verdict needs "
                   "more pairs than bandwidth's.")
@click.option("--timeout-ms", type=click.IntRange(100), default=30000, show_default=True,
              help="Longest wait for any one completion in our runs.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Result file.")
def crosscheck_cmd(device, peer, sizes, only, repeat, bw_duration, bw_iters, lat_iters, lat_repeat, timeout_ms,
                   output):
    """Run perftest and rdmabench back to back on the same device and print the ratios.

    ib_write_bw, ib_read_bw and ib_write_lat against rdmabench's native
    write_bw, read_bw and write_lat, with the same sizes, length, queue
    depth and CQ moderation. Targets: bandwidth >= 0.95x perftest's, write
    latency p50 <= 1.10x perftest's t_typical. With --peer, `rdmabench serve`
    there starts perftest's server side when asked.

    
    Its length is bounded by time, whatever the link's speed. The defaults:
    2 bandwidth tests x 2 sizes x 3 pairs = 24 bandwidth runs, each measuring
    5 s (perftest's take 9 s with its margins), then 9 pairs of 1000-iteration
    latency runs, whose starts outweigh their ~20 ms of measuring. With 3
    latency pairs that took 4.5 minutes in all on soft-RoCE under emulation in
    one guest; each further latency pair adds about 10 s there.
    """
    from .perf import crosscheck
    from .perf.options import parse_sweep

    try:
        size_list = parse_sweep(sizes)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--sizes") from None
    if bw_iters and bw_duration:
        raise click.UsageError("give --bw-duration or --bw-iters, not both")
    chosen = only
    if lat_repeat is None:  # more latency pairs than bandwidth ones, unless --repeat asks for a number
        source = click.get_current_context().get_parameter_source("repeat")
        lat_repeat = repeat if source != click.core.ParameterSource.DEFAULT else max(repeat, crosscheck.LAT_PAIRS)
    dev = devices.choose(device)
    result = crosscheck.run(dev.name, _peer(peer) if peer else None, size_list, repeat=repeat, bw_iters=bw_iters,
                            bw_duration=bw_duration,
                            lat_iters=lat_iters, lat_repeat=lat_repeat, timeout_ms=timeout_ms, only=chosen,
                            progress=lambda m: click.echo(f"running {m} ...", err=True))
    summary = crosscheck.ratios(result)
    result.options["ratios"] = summary
    path = result.publish(output)
    click.echo(crosscheck.render(summary))
    click.echo(_line_rate_note(result.rows))
    click.echo(f"\nenvironment: {result.context['environment']}")
    click.echo(f"result file: {path}")


from .cli_results import compare_cmd, jobs_cmd, report_cmd  # noqa: E402  (results and job logs)
from .cli_serve import secret_group, serve_cmd  # noqa: E402  (the listening side)
from .cli_baselines import baseline_cmd, pipeline_cmd  # noqa: E402  (what our figures are measured against)
from .cli_live import live_cmd  # noqa: E402  (a running Lotus or Curio's own fetch)
from .cli_doctor import doctor_cmd  # noqa: E402  (a preflight of this host and a peer)

cli.add_command(compare_cmd)
cli.add_command(report_cmd)
cli.add_command(jobs_cmd)
cli.add_command(serve_cmd)
cli.add_command(secret_group)
cli.add_command(baseline_cmd)
cli.add_command(pipeline_cmd)
cli.add_command(live_cmd)
cli.add_command(doctor_cmd)


def main():
    cli(prog_name="rdmabench")


if __name__ == "__main__":
    main()
