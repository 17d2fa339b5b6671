"""The end-of-run table, in perftest's column order, with our extra columns after.

Bandwidth (ib_*_bw): #bytes #iterations BW peak BW average MsgRate, where our
"peak" is the labelled best window (see metrics.py), MiB/s as perftest's MB/sec.
Latency (ib_*_lat): #bytes #iterations t_min t_max t_typical t_avg t_stdev 99% 99.9%,
where t_typical is the median (p50), then our p99.99. CPU: cores busy at each
end, system-wide (qperf's count) and in the rdmabench process; system-wide "n/a" where the
test ran too briefly for /proc/stat's ticks to mean anything (the process figure is exact).
"% of line": BW average over the path's physical limit (rdmabench.linerate), "-" where none is known.
"windows": the bandwidth of the run's full windows (1 s, or --interval), min/median/max.
"""

from __future__ import annotations

from itertools import groupby

from ..linerate import share

BW_HEAD = ["#bytes", "#iterations", "BW best window[MiB/sec]", "BW average[MiB/sec]", "MsgRate[Mpps]",
           "CPU client sys/proc", "CPU server sys/proc", "% of line", "windows min/median/max[MiB/sec]"]
LAT_HEAD = ["#bytes", "#iterations", "t_min[usec]", "t_max[usec]", "t_typical[usec]", "t_avg[usec]",
            "t_stdev[usec]", "99% percentile[usec]", "99.9% percentile[usec]", "99.99%[usec]",
            "CPU client sys/proc", "CPU server sys/proc"]


def _cpu(row: dict, side: str) -> str:
    cpu = (row.get("cpu") or {}).get(side)
    if not cpu:
        return "-"
    fmt = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731  (n/a: too short for /proc/stat's ticks)
    return f"{fmt(cpu['system']['busy_cores'])}/{fmt(cpu['process']['cores'])}"


def _share(share: float | None) -> str:
    """The share of the path's physical limit reached (detail share_of_line_rate); "-" where none is known."""
    return "-" if share is None else f"{share * 100:.1f}%"


def _windows(d: dict) -> str:
    """Bandwidth over the run's full windows (metrics.windows): "-" for a run shorter than two windows."""
    if d.get("bw_window_median_MiBps") is None:
        return "-"
    return "/".join(f"{d[k]:.2f}" for k in ("bw_window_min_MiBps", "bw_window_median_MiBps", "bw_window_max_MiBps"))


def _fmt(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.rjust(w) for cell, w in zip(r, widths)) for r in rows]


def render(rows: list[dict]) -> str:
    """Verbs rows (results.row shape): their figures are in each row's detail."""
    out = []
    for (test, rep_key), group in groupby(rows, key=lambda r: (r["measured"]["test"], r["detail"].get("engine"))):
        group = list(group)
        latency = "lat_p50_us" in group[0]["detail"]
        first = group[0]["detail"]
        out.append(f"---- {test}" + (f" {first['atomic']}" if first.get("atomic") else "")
                   + f" ({rep_key} engine, {first.get('connect')}"
                   + (", bidirectional" if first.get("bidir") else "")
                   + (f", tclass {first['tclass']}" if first.get("tclass") else "")
                   + (f", sl {first['sl']}" if first.get("sl") else "") + ") ----")
        table = [LAT_HEAD if latency else BW_HEAD]
        for row in group:
            r = row["detail"]
            size = str(row["measured"]["size"])
            n = str(r.get("iterations") or r.get("ops") or r.get("samples"))
            if latency:
                table.append([size, n] + [f"{r[k]:.2f}" for k in (
                    "lat_min_us", "lat_max_us", "lat_p50_us", "lat_mean_us", "lat_stdev_us", "lat_p99_us",
                    "lat_p99_9_us", "lat_p99_99_us")] + [_cpu(row, "client"), _cpu(row, "server")])
            else:
                peak = r.get("bw_best_window_MiBps")
                table.append([size, n, f"{peak:.2f}" if peak else "-", f"{r['bw_avg_MiBps']:.2f}",
                              f"{r['msg_rate_Mpps']:.6f}", _cpu(row, "client"), _cpu(row, "server"),
                              _share(r.get("share_of_line_rate")), _windows(r)])
        out.extend(_fmt(table))
    return "\n".join(out)


def window_line(test: str, size: int, w: dict, line_rate: dict | None = None) -> str:
    """The live line for one window (ep.run's on_window dict): its bandwidth, or its latency percentiles."""
    head = f"  {test} {size} B  t={w['t_s']:8.1f} s"
    if w.get("latency"):
        if not w["samples"]:
            return f"{head}  no operation completed in the last {w['seconds']:.1f} s"
        return (f"{head}  {w['samples']:>9} ops  p50 {w['lat_p50_ns'] / 1000:8.2f} us  "
                f"p99 {w['lat_p99_ns'] / 1000:8.2f} us  max {w['lat_max_ns'] / 1000:8.2f} us")
    seconds = w["seconds"] or float("nan")
    mibps = w["ops"] * size / seconds / (1 << 20)
    part = share(mibps * (1 << 20) * 8 / 1e9, line_rate)
    return (f"{head}  {mibps:10.2f} MiB/s  {w['ops'] / seconds / 1e6:.6f} Mpps"
            + (f"  {_share(part)} of line" if part is not None else ""))
