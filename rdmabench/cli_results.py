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
@click.option("--by", type=click.Choice(["worker", "host"]), help="Job logs: one table per worker or per host.")
@click.option("--format", "fmt", type=click.Choice(["text", "md"]), default="text", show_default=True)
@click.option("--host", metavar="NAME",
              help="Daemon log: the host it comes from, the destination of its fetches (default: the host in "
                   "a journalctl prefix, else the file's name: worker-3.log is worker-3). One log only.")
@click.option("--fetches", "each", is_flag=True, help="Daemon logs: list every fetch, not only the pairs.")
@click.option("--what-if", "what_if", type=RESULT, metavar="RESULT.json",
              help="A transfer result: how long each hand-off's fetch takes with each measured transport, "
                   "and what that does to a sector's time in the pipeline (needs a job tracker log).")
@click.option("--sector-size", default="32GiB", show_default=True, metavar="SIZE",
              help="With --what-if: 2KiB, 8MiB, 512MiB, 32GiB or 64GiB.")
def jobs_cmd(logs, by, fmt, host, each, what_if, sector_size):
    """Task durations from Lotus job tracker logs, fetch throughput from
    Lotus, lotus-worker and Curio logs. Each file is read as the kind it is.

    Job tracker logs (jobs-YYYY-MM-DD.log, under $LOTUS_MINER_JOB_LOG_PATH):
    per task type (AP, PC1, PC2, C1, C2, FIN, GET, ...) count, mean, p50,
    p95, max and total.

    Daemon logs: the 'Fetch done' line Lotus (v1.17.2 on) and Curio write
    after every sector fetch gives its bytes, seconds and MiB/s; per host
    pair (source: the URL's host; destination: the log's host) count, bytes,
    seconds and the mean, p50, min and max MiB/s. Older Lotus logs only a
    fetch's start: those are counted, their throughput said to be unknown.
    Console and JSON (GOLOG_LOG_FMT=json) formats, journalctl prefix or not.
    Where the logs are:

    \b
      journalctl -u lotus-worker -o short-iso > worker-3.log   (one per host)
      journalctl -u lotus-miner > miner-1.log
      /var/log/curio/curio.log    (Curio's systemd unit: GOLOG_FILE)
      /var/log/lotus/miner.log    (Lotus's lotus-miner.service)

    A line that does not parse (in a daemon log: a fetch line; other lines
    are not read) is reported on stderr with its file and line number and
    skipped. A file with nothing to report (no job line, no fetch line,
    empty) is named on stderr and the command exits 1.

    With --what-if RESULT.json (a transfer result from `rdmabench run
    --config`): the bytes Lotus moves per hand-off for --sector-size, divided
    by each transport's measured throughput, against today's HTTP fetch
    (JSON-RPC for the C1 output); and a sector's pipeline time (mean task
    durations + fetches) with each. Throughputs measured on soft-RoCE or
    under emulation make it illustrative only, and the output says so.

    \b
    Examples:
      rdmabench jobs /var/log/lotus/jobs-2024-05-*.log --by worker
      rdmabench jobs worker-*.log --fetches --format md
      rdmabench jobs /var/log/curio/curio.log --host sealer-2
      rdmabench jobs jobs-*.log --what-if results/transfer-worker-20240504.json --sector-size 32GiB
    """
    from .jobs import fetchlog, logparse, readlogs, whatif
    from .jobs.durations import format_seconds
    from .results.compare import md_table, text_table

    try:
        found = readlogs.read(logs, host=host)
        daemon = sorted(set(found.fetches["file"]))  # the daemon logs with fetches
        if host and len(daemon) > 1:
            raise click.UsageError(f"--host names the host of one daemon log; {len(daemon)} given: name each "
                                   "file after its host (worker-3.log) or run once per log")
        log = found.jobs
        w = None
        if what_if:  # everything checked before anything is printed
            from .results import frames

            if log.jobs.empty:
                raise click.UsageError("--what-if needs a job tracker log with jobs (the task durations)")
            w = whatif.compute(log.jobs, frames.load([what_if]), whatif.sector_bytes(sector_size))
    except RdmabenchError as err:
        _fail(err)
    for problem in found.problems:
        click.echo(f"rdmabench jobs: {problem}", err=True)
    table = md_table if fmt == "md" else text_table
    plural = lambda n, word: f"{n} {word}{('es' if word.endswith('ch') else 's') if n != 1 else ''}"  # noqa: E731
    job_files = [f for f, k in found.kinds.items() if k == readlogs.JOB]
    if job_files:
        s = logparse.summary(log.jobs, by=by)
        click.echo(f"{plural(len(log.jobs), 'job')} from {plural(len(job_files), 'log file')}"
                   + (f", {plural(len(log.problems), 'malformed line')} skipped" if log.problems else ""))
        groups = [(None, s)] if not by else list(s.groupby(by, sort=False))
        for name, g in groups:
            click.echo("")
            if name is not None:
                click.echo(f"### {by} {name}\n" if fmt == "md" else f"{by} {name}:")
            click.echo(table(["task", "count", "mean", "p50", "p95", "max", "total"],
                             [[r["task"], str(r["count"])] + [format_seconds(r[k]) for k in
                                                               ("mean_s", "p50_s", "p95_s", "max_s", "total_s")]
                              for r in g.to_dict("records")]))
    if len(found.fetches):
        if job_files:
            click.echo("")
        kinds = sorted({found.kinds[f] for f in daemon})
        click.echo(f"{plural(len(found.fetches), 'fetch')} from {plural(len(daemon), 'daemon log')} "
                   f"({', '.join(kinds)})"
                   + (f", {plural(len(found.fetch_problems), 'malformed fetch line')} skipped"
                      if found.fetch_problems else ""))
        click.echo("")
        click.echo(fetchlog.render(found.fetches, table, markdown=fmt == "md", each=each), nl=False)
    if w is not None:
        click.echo("")
        click.echo(whatif.render(w, markdown=fmt == "md"), nl=False)
    if found.empty:
        for message in found.empty:
            click.echo(f"rdmabench jobs: {message}", err=True)
        raise SystemExit(1)
