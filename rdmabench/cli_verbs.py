"""`rdmabench run` and `rdmabench crosscheck`: the verbs tests (and, with --config, a sector-transfer
scenario), and perftest side by side with them. Parse, call, print; the work is rdmabench.perf's."""

from __future__ import annotations

from pathlib import Path

import click

from . import devices
from .cli_types import SIZE, names_option, parse_peer
from .engines.tests import TESTS


@click.command("run")
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
@click.option("--until-stopped", is_flag=True,
              help="Run one test at one size until Ctrl-C (perftest's --run_infinitely), a line per --interval; "
                   "Ctrl-C ends it cleanly and the result file is written.")
@click.option("--interval", type=click.FloatRange(0.01, 86400), metavar="SECONDS",
              help="Print a line per SECONDS while a test runs (bandwidth, or latency p50/p99/max) and make the "
                   "windows SECONDS long [1 s windows, no lines; lines every 1 s with --until-stopped]. Every row "
                   "keeps its windows and their min/median/max.")
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
def run_cmd(tests_, device, peer, size, sizes, iters, duration, until_stopped, interval, warmup, depth, cq_mod, qps, bidir, gid_index,
            mtu, connect, validate, inline_size, slots, engine, tclass, sl, cpu, no_numa, hugepages, atomic, repeat,
            timeout_ms, config_path, config_scale, config_reps, config_dir, wait, output):
    """Measure RDMA write/read/send bandwidth and latency against `rdmabench serve`.

    What perftest measures, with both ends' CPU (system-wide as qperf counts it,
    and per process), exact latency percentiles and raw samples, written as one
    JSON result file under results/ with the run's full context. Ends with a
    table in perftest's column order.

    Duration runs (--duration, --until-stopped) are first-class: the same exact
    percentiles and raw samples as an iterations run (perftest gives only an
    average latency there), and every run keeps its windows (1 s, or
    --interval): bandwidth min/median/max over them, a latency run's p50/p99
    per window. Past max_samples the percentiles come from a histogram of every
    sample (within 0.4 %), and the row says so.

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
      rdmabench run --peer 10.0.0.2 -d mlx5_0 -t write_lat -D 60 --interval 5
      rdmabench run --peer 10.0.0.2 -d mlx5_0 -t write_bw -s 1M --until-stopped
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
        run_scenario(config_path, device, gid_index, peer and parse_peer(peer), wait, output,
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
                             atomic=atomic, until_stopped=until_stopped, interval=interval)
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    dev = devices.choose(device)
    progress = lambda msg: click.echo(f"running {msg} ...", err=True)  # noqa: E731
    if peer:
        host, port = parse_peer(peer)
        result = Client(options, dev.name, host, port, timeout_ms=timeout_ms, wait=wait, progress=progress,
                        dev=dev).run()
    else:
        result = run_local(options, dev.name, timeout_ms=timeout_ms, progress=progress, dev=dev)
    path = result.publish(output)
    if result.rows:
        click.echo(table.render(result.rows))
        click.echo(_line_rate_note(result.rows))
    click.echo(f"\nenvironment: {result.context['environment']}")
    click.echo(f"result file: {path}")
    if result.options.get("interrupted"):
        ctx.exit(130)  # as a shell reports Ctrl-C, once the result is safe


def _line_rate_note(rows: list[dict]) -> str:
    """What "% of line" was measured against: the first bandwidth row's path limit (rdmabench.linerate)."""
    from .linerate import describe

    lines = [r["detail"]["line_rate"] for r in rows if "line_rate" in r["detail"]]
    return f"% of line: {describe(lines[0])}" if lines else ""


@click.command("crosscheck")
@click.option("--device", "-d", envvar="RDMABENCH_DEVICE", metavar="NAME", help="RDMA device [the only one].")
@click.option("--peer", metavar="HOST[:PORT]", help="Where `rdmabench serve` runs [both ends on this host].")
@click.option("--sizes", default="64K,1M", show_default=True, help="Bandwidth message sizes.")
@click.option("--tests", "-t", "only", multiple=True,
              default=["write_bw,read_bw,write_lat"], show_default=True,
              metavar="TEST[,TEST...]", callback=names_option(lambda: [t for t, _ in __import__(
                  "rdmabench.perf.crosscheck", fromlist=["PLAN"]).PLAN]),
              help="Which of perftest's tools to compare: write_bw, read_bw, write_lat, atomic_bw, atomic_lat (-t "
                   "atomic_bw,atomic_lat: the atomic pairs, about 2.5 minutes more in the one-guest lab); repeat the "
                   "option or separate with commas.")
@click.option("--atomic", type=click.Choice(["fetch_add", "cmp_swap"]), default="fetch_add", show_default=True,
              help="The atomic pairs' 8-byte operation (perftest's -A FETCH_AND_ADD | CMP_AND_SWAP).")
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
              help="Pairs for each latency test [9; --repeat when that is given]: a latency run is a ~20 ms "
                   "snapshot, and one guest's latency switches between modes, both tools alike; its verdict needs "
                   "more pairs than bandwidth's.")
@click.option("--timeout-ms", type=click.IntRange(100), default=30000, show_default=True,
              help="Longest wait for any one completion in our runs.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Result file.")
def crosscheck_cmd(device, peer, sizes, only, atomic, repeat, bw_duration, bw_iters, lat_iters, lat_repeat, timeout_ms, output):
    """Run perftest and rdmabench back to back on the same device and print the ratios.

    ib_write_bw, ib_read_bw, ib_write_lat, ib_atomic_bw and ib_atomic_lat
    against rdmabench's native write_bw, read_bw, write_lat, atomic_bw and
    atomic_lat, with the same sizes, length, queue depth, CQ moderation and
    outstanding READs or atomics. Targets: bandwidth >= 0.95x perftest's,
    atomic_bw's operations per second >= 0.95x, latency p50 <= 1.10x
    perftest's t_typical (write_lat half the round trip, atomic_lat all of
    it). The atomic pairs are 8-byte --atomic operations whatever --sizes.
    With --peer, `rdmabench serve` there starts perftest's server side.

    
    Its length is bounded by time, whatever the link's speed. The defaults:
    2 bandwidth tests x 2 sizes x 3 pairs = 24 bandwidth runs and 3 pairs of
    atomic_bw, each measuring 5 s (perftest's take 9 s with its margins),
    then 9 pairs (--lat-repeat) of 1000-iteration runs of each latency test,
    whose starts outweigh their ~20 ms of measuring (about 10 s a pair in one
    guest under emulation): 7 min 3 s in the one-guest lab, boot included.
    With the atomic pairs too (-t ...,atomic_bw,
    atomic_lat; 3 + 9 pairs) it took 11 min 20 s in the one-guest lab, boot
    included; they are left out of the default for that.
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
    result = crosscheck.run(dev.name, parse_peer(peer) if peer else None, size_list, repeat=repeat, bw_iters=bw_iters,
                            bw_duration=bw_duration,
                            lat_iters=lat_iters, lat_repeat=lat_repeat, timeout_ms=timeout_ms, only=chosen, atomic=atomic,
                            progress=lambda m: click.echo(f"running {m} ...", err=True))
    summary = crosscheck.ratios(result)
    result.options["ratios"] = summary
    path = result.publish(output)
    click.echo(crosscheck.render(summary))
    click.echo(_line_rate_note(result.rows))
    click.echo(f"\nenvironment: {result.context['environment']}")
    click.echo(f"result file: {path}")
