"""The commands that read what others wrote: compare, report, jobs. Parse, call, print; the work is in
rdmabench.results (frames, compare, report, plots) and rdmabench.jobs (logparse, whatif)."""

from __future__ import annotations

from pathlib import Path

import click

from .errors import RdmabenchError

RESULT = click.Path(exists=True, dir_okay=False, path_type=Path)
LATENCY_METRICS = {"p50": "lat_p50_us", "mean": "lat_mean_us", "p99": "lat_p99_us", "p99.9": "lat_p99_9_us",
                   "min": "lat_min_us", "max": "lat_max_us"}


def _fail(err: Exception):
    raise click.ClickException(str(err)) from None


@click.command("compare")
@click.argument("results", nargs=-1, required=True, type=RESULT)
@click.option("--format", "fmt", type=click.Choice(["text", "md"]), default="text", show_default=True,
              help="text: an aligned table for the terminal; md: Markdown tables.")
@click.option("--latency", type=click.Choice(list(LATENCY_METRICS)), default="p50", show_default=True,
              help="The latency figure latency tests are judged by.")
def compare_cmd(results, fmt, latency):
    """Compare result files: each later file against the first, like with like.

    Verbs rows pair on test and message size (bandwidth judged by the average
    MiB/s, latency by the p50 unless --latency says otherwise); transfer rows
    on hand-off, transport and sector size. Per pair: both means with their
    spread (standard deviation over repetitions), the ratio B/A, and Welch's
    t-test at 95% over the repetitions ("n/a: one run" when either side has
    a single repetition). Warns when a spread exceeds 10% of its mean and
    when the runs differ in device, MTU, link layer, hardware vs emulation or
    kernel.

    \b
    Example:
      rdmabench compare results/before.json results/after.json --format md
    """
    from .results import compare, frames

    if len(results) < 2:
        raise click.UsageError("give at least two result files: the first is the baseline")
    try:
        c = compare.compare(frames.load(results), latency_metric=LATENCY_METRICS[latency])
    except RdmabenchError as err:
        _fail(err)
    click.echo(compare.render_markdown(c) if fmt == "md" else compare.render_text(c), nl=False)


@click.command("report")
@click.argument("results", nargs=-1, required=True, type=RESULT)
@click.option("--output", "-o", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for report.html, report.md and the PNGs (made if missing).")
@click.option("--jobs", "jobs", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              metavar="LOG", help="A Lotus job tracker log (jobs-YYYY-MM-DD.log; repeat for more days): adds "
                                  "sectors a day today and with each transport.")
@click.option("--sector-size", metavar="SIZE",
              help="With --jobs: the sector size of the what-if (2KiB, 8MiB, 512MiB, 32GiB or 64GiB). "
                   "Default: the biggest real sector size the transfers were measured for.")
def report_cmd(results, out, jobs, sector_size):
    """Write an HTML and a Markdown report of result files.

    \b
    The page, in order:
    1. The decision: per hand-off (pc1-pc2, finalize, c1-c2) at the real
       sector size, each transport's time for one sector, throughput,
       speedup against Lotus's HTTP fetch and CPU-seconds per GB at the
       worker and the storage host. Figures from scaled runs (32GiB@1/16384)
       are projections, marked, with the model stated; a live fetch from
       your own Lotus/Curio worker, where a file has one, is the baseline.
       One table per hand-off per real size present, the biggest first.
    2. With --jobs LOG: sectors a day today and with each transport (the
       logs' mean task durations plus each hand-off's fetch), at
       --sector-size.
    3. The plots, each with a table of its numbers: bandwidth against
       message size, latency CDFs, one transfer-time chart per hand-off (as
       measured), the RDMA transfers against the link's raw bandwidth,
       CPU-seconds per GB; then the context of every run.

    Only what the files contain is shown; the page says what is missing.
    report.html is self-contained (plots inline); report.md links the PNGs
    written beside it. Runs not measured on hardware are flagged, on the
    page and on every decision table they feed.

    \b
    Examples:
      rdmabench report results/*.json -o report/
      rdmabench report results/T.json -o report/ --jobs jobs-2024-05-01.log --jobs jobs-2024-05-02.log
    """
    from .jobs import logparse, whatif
    from .results import frames, report

    if sector_size and not jobs:
        raise click.UsageError("--sector-size is the what-if's: give it with --jobs LOG")
    try:
        log = logparse.read(jobs) if jobs else None
        sector = whatif.sector_bytes(sector_size) if sector_size else None
        page = report.write(report.build(frames.load(results), log.jobs if log else None, sector, len(jobs)), out)
    except RdmabenchError as err:
        _fail(err)
    for problem in log.problems if log else ():
        click.echo(f"rdmabench report: {problem}", err=True)
    click.echo(str(page))


@click.command("jobs")
@click.argument("logs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--by", type=click.Choice(["worker", "host"]), help="One table per worker or per host.")
@click.option("--format", "fmt", type=click.Choice(["text", "md"]), default="text", show_default=True)
@click.option("--what-if", "what_if", type=RESULT, metavar="RESULT.json",
              help="A transfer result: how long each hand-off's fetch takes with each measured transport, "
                   "and what that does to a sector's time in the pipeline.")
@click.option("--sector-size", default="32GiB", show_default=True, metavar="SIZE",
              help="With --what-if: 2KiB, 8MiB, 512MiB, 32GiB or 64GiB.")
def jobs_cmd(logs, by, fmt, what_if, sector_size):
    """Task durations from Lotus job tracker logs (jobs-YYYY-MM-DD.log).

    Per task type (AP, PC1, PC2, C1, C2, FIN, GET, ...): count, mean, p50,
    p95, max and total. A line that does not parse is reported on stderr with
    its file and line number and skipped.

    With --what-if RESULT.json (a transfer result from `rdmabench run
    --config`): the bytes Lotus moves per hand-off for --sector-size, divided
    by each transport's measured throughput, against today's HTTP fetch
    (JSON-RPC for the C1 output); and a sector's pipeline time (mean task
    durations + fetches) with each. Throughputs measured on soft-RoCE or
    under emulation make it illustrative only, and the output says so.

    \b
    Examples:
      rdmabench jobs /var/log/lotus/jobs-2024-05-*.log --by worker
      rdmabench jobs jobs-*.log --what-if results/transfer-worker-20240504.json --sector-size 32GiB
    """
    from .jobs import logparse, whatif
    from .jobs.durations import format_seconds
    from .results.compare import md_table, text_table

    try:
        log = logparse.read(logs)
        w = None
        if what_if:  # everything checked before anything is printed
            from .results import frames

            w = whatif.compute(log.jobs, frames.load([what_if]), whatif.sector_bytes(sector_size))
    except RdmabenchError as err:
        _fail(err)
    for problem in log.problems:
        click.echo(f"rdmabench jobs: {problem}", err=True)
    table = md_table if fmt == "md" else text_table
    s = logparse.summary(log.jobs, by=by)
    click.echo(f"{len(log.jobs)} jobs from {len(logs)} log file{'s' if len(logs) != 1 else ''}"
               + (f", {len(log.problems)} malformed line{'s' if len(log.problems) != 1 else ''} skipped"
                  if log.problems else ""))
    groups = [(None, s)] if not by else list(s.groupby(by, sort=False))
    for name, g in groups:
        click.echo("")
        if name is not None:
            click.echo(f"### {by} {name}\n" if fmt == "md" else f"{by} {name}:")
        click.echo(table(["task", "count", "mean", "p50", "p95", "max", "total"],
                         [[r["task"], str(r["count"])] + [format_seconds(r[k]) for k in
                                                           ("mean_s", "p50_s", "p95_s", "max_s", "total_s")]
                          for r in g.to_dict("records")]))
    if w is not None:
        click.echo("")
        click.echo(whatif.render(w, markdown=fmt == "md"), nl=False)
