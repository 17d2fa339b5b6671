"""What our figures are measured against: `rdmabench baseline` (our HTTP fetch against nginx + curl) and
`rdmabench pipeline` (our file pipeline without a network against dd). Parse, call, print; the work is in
rdmabench.baseline and rdmabench.pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .cli_types import SIZE
from .units import format_size


@click.command("baseline")
@click.option("--size", type=SIZE, default="1G", show_default=True, help="Size of the file served.")
@click.option("--repetitions", type=click.IntRange(1), default=5, show_default=True, help="Alternating repetitions.")
@click.option("--json", "as_json", is_flag=True, help="Print the full figures as JSON.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Result file [results/baseline-HOST-TIME.json].")
def baseline_cmd(size, repetitions, as_json, output):
    """Is our HTTP fetch a strong baseline? Ours against nginx serving the same file to curl.

    Both on this host over 127.0.0.1, the same file and destination, alternating.
    Target: ours >= 0.9x nginx+curl. A weak baseline would flatter every RDMA figure.
    Needs Debian's nginx and curl (`make install` brings them).
    """
    from .baseline import run_baseline, to_result

    r = run_baseline(size, repetitions)
    path = to_result(r).publish(output)
    if as_json:
        click.echo(json.dumps(r, indent=1))
        return click.echo(f"result file: {path}", err=True)
    click.echo(f"file {format_size(size)}, {repetitions} repetitions each, medians:")
    click.echo(f"  nginx + curl      {r['nginx_curl']['median_gbytes_per_s']:.3f} GB/s  ({r['versions']['nginx']})")
    click.echo(f"  rdmabench http    {r['rdmabench_http']['median_gbytes_per_s']:.3f} GB/s  (verified fetch)")
    click.echo(f"  ratio {r['ratio']:.3f} (target >= {r['target']}): {'meets' if r['meets_target'] else 'MISSES'}")
    click.echo(f"result file: {path}")


@click.command("pipeline")
@click.option("--size", type=SIZE, default="1G", show_default=True, help="Size of the file copied.")
@click.option("--dir", "src_dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Folder the source file is written in [the system's temporary folder].")
@click.option("--dest", "dst_dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Folder the copies land in, e.g. on another disk [--dir].")
@click.option("--chunk", type=SIZE, default="1M", show_default=True, help="Bytes per chunk (a multiple of 4K).")
@click.option("--slots", type=click.IntRange(1, 1024), default=16, show_default=True,
              help="Chunks in the ring between the reader and the writer (the transfers' inflight).")
@click.option("--direct", is_flag=True, help="O_DIRECT for ours, iflag=direct oflag=direct for dd.")
@click.option("--cold", is_flag=True, help="Flush the source and drop its cached pages before every copy.")
@click.option("--repetitions", type=click.IntRange(1), default=3, show_default=True, help="Alternating repetitions.")
@click.option("--json", "as_json", is_flag=True, help="Print the full figures as JSON.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Result file [results/baseline-HOST-TIME.json].")
def pipeline_cmd(size, src_dir, dst_dir, chunk, slots, direct, cold, repetitions, as_json, output):
    """Will the disks and CPU, not the NIC, set the limit? The rdma transports' file
    pipeline with the network taken out, beside dd.

    Copies one file from --dir to --dest with the same C pipeline a transfer runs
    (one thread reads and digests each chunk into a ring, another digests and
    writes it: verified end to end) and with `dd bs=1M`, alternating, in the same
    run. Prints GB/s and CPU-seconds per GB of each and the ratio (target: ours
    >= 0.9x dd). No RDMA device or lab needed.

    \b
    Examples:
      rdmabench pipeline --size 4G
      rdmabench pipeline --size 32G --dir /srv/storage --dest /srv/work --direct --cold
    """
    from .pipeline import run_pipeline, to_result

    r = run_pipeline(size, repetitions, src_dir, dst_dir, chunk=chunk, slots=slots, direct=direct, cold=cold,
                     progress=lambda msg: click.echo(msg, err=True))
    path = to_result(r).publish(output)
    if as_json:
        click.echo(json.dumps(r, indent=1))
        return click.echo(f"result file: {path}", err=True)
    mode = ", ".join(m for m, on in (("O_DIRECT", direct), ("cold source", cold)) if on) or "page cache"
    click.echo(f"file {format_size(size)} from {r['source_dir']} to {r['destination_dir']} ({mode}), "
               f"{repetitions} repetitions each, medians:")
    click.echo(f"  {'':<22} {'GB/s':>7} {'CPU-s/GB':>9}")
    for key, name, note in (("rdmabench", "rdmabench pipeline", f"verified; chunk {format_size(chunk)} x {slots} slots"),
                            ("dd", "dd bs=1M", "no verification")):
        click.echo(f"  {name:<22} {r[key]['median_gbytes_per_s']:>7.3f} {r[key]['median_cpu_s_per_gb']:>9.3f}  ({note})")
    click.echo(f"  ratio {r['ratio']:.3f} (target >= {r['target']}): {'meets' if r['meets_target'] else 'MISSES'}")
    click.echo(f"result file: {path}")
