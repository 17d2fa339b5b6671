"""`rdmabench run --config`: the scenario matrix, one row per transfer, one result file.

Who holds the data at each hand-off (two hosts; on one host both are local folders):
    pc1-pc2   storage (playing the PC1 worker) -> worker (PC2)
    finalize  worker (after PC2)               -> storage (long-term storage)
    c1-c2     worker (C1)                      -> storage (the C2 worker)
For each transfer the transport's passive end starts on one host, its active end moves
the items from the other, and both hosts meter their CPU over the move. Every row says
whether the receiver verified the bytes; a transfer that fails verification fails the run.
An rdma row also carries the raw bandwidth of the link at its settings and its share of it
(efficiency.py, measured before the transfers); the raw measurements are rows of the result too.
"""

from __future__ import annotations

from typing import Callable

from .. import transports
from ..config import HANDOFF_STAGE, Scenario
from ..errors import RdmabenchError
from ..results import context
from ..results.model import Result
from ..results.row import make as make_row
from . import efficiency
from .hosts import LocalHost, RemoteHost
from .measure import MIB, throughput_mibps

SOURCE_IS_STORAGE = {"pc1-pc2": True, "finalize": False, "c1-c2": False}


class TransferFailed(RdmabenchError):
    pass


def run(scenario: Scenario, worker: LocalHost, storage: LocalHost | RemoteHost, *, device: str | None = None,
        peer_context: dict | None = None, options: dict | None = None, raw: efficiency.Raw | None = None,
        progress: Callable[[str, int, int], None] = lambda msg, i, n: None) -> Result:
    """Run the whole plan; `storage` is a LocalHost (one host) or a RemoteHost (`rdmabench serve`); `raw`:
    the raw bandwidth measured for this run's rdma transfers (efficiency.measure), None when none was."""
    workloads: dict = {}
    rows = []
    plan = scenario.plan()  # every pair in it can run: config.load refused any other
    for i, (handoff, shape, transport, rep, variant) in enumerate(plan):
        name = f"{transport} {variant.label}" if variant else transport
        progress(f"{handoff} {shape.label} {name} #{rep + 1}", i, len(plan))
        source, dest = (storage, worker) if SOURCE_IS_STORAGE[handoff] else (worker, storage)
        key = (handoff, shape)
        if key not in workloads:
            number = 1 + len(workloads)  # each hand-off's sector its own number: stages never share a folder
            workloads[key] = source.generate(shape.sector_size, HANDOFF_STAGE[handoff], str(shape.scale),
                                             scenario.miner, number)
        descs = workloads[key]
        rows.append(transfer(handoff, shape, transport, rep, descs, source, dest, worker, storage, options or {},
                              variant, raw))
    rows += raw.all_rows() if raw else []
    ctx = context.collect(device, (options or {}).get("gid_index")) if device else context.collect()
    return Result(kind="transfer", context=ctx, peer_context=peer_context,
                  options={"config": str(scenario.path), "scenario": scenario.raw, **(options or {})}, rows=rows)


def _ends(caps: transports.Capabilities, kind: str, source, dest, worker, storage, options: dict):
    """(active host, passive host or None, the transfer's options): decided by the capabilities alone."""
    pull = source is storage  # towards the worker
    if caps.needs_export and options.get("nfs_export"):  # pulls read the storage root, pushes land in the work root
        options = {**options, "export": f"{options['nfs_export']}/{'storage' if pull else 'work'}",
                   "export_root": options["nfs_export"]}  # the NFSv4 pseudo-root: v4 mounts /storage, /work
    if caps.client_only:  # the worker runs both directions; the other end is a server rdmabench does not start
        return worker, None, {**options, "direction": "pull" if pull else "push"}
    active = source if caps.active_side(kind) == "source" else dest
    return active, (dest if active is source else source), options


def transfer(handoff, shape, transport, rep, descs, source, dest, worker, storage, options, variant=None,
              raw=None, sync: Callable[[str], None] | None = None) -> dict:
    """One verified transfer and its row. ``sync("ready")`` is called once both ends are set up, just before
    the meters start, and ``sync("moved")`` once they stopped: a cluster run starts several workers' moves
    together there (cluster.fanin)."""
    sync = sync or (lambda point: None)
    caps = transports.capabilities(transport)
    if variant is not None:  # an [nfs] combination: its version and mount options for this transfer alone
        options = {**options, **variant.options()}
    kind = descs[0]["kind"]
    active, passive, options = _ends(caps, kind, source, dest, worker, storage, options)
    if not caps.in_place:
        dest.expect(descs)  # what does not exist there yet is this run's to clean up afterwards
    info = passive.start_passive(transport, kind, options) if passive else None
    try:
        if options.get("cold"):  # every transport alike: the source's pages dropped before the clock starts
            source.drop_cache(descs)
        sync("ready")
        for host in (worker, storage):
            host.meter_start()
        records = active.move(transport, descs, info, options)
        moved = sum(r["bytes"] for r in records)
        cpu = {"client": worker.meter_stop(moved), "server": storage.meter_stop(moved)}
        sync("moved")
    finally:
        observed = passive.stop_passive() if passive else {}
    received = {o["item"]: o for o in observed.get("received", [])}
    verified = all(r["verified"] and received.get(r["item"], {}).get("verified", True) for r in records)
    if not caps.in_place:
        dest.cleanup(descs)
    if not verified:
        name = f"{transport} {variant.label}" if variant else transport
        raise TransferFailed(f"{handoff} {shape.label} over {name}: the receiver could not verify the bytes "
                             f"({[r['item'] for r in records if not r['verified']]})")
    return _row(handoff, shape, transport, rep, descs, source, dest, active, records, cpu, verified, options,
                variant, raw)


def _row(handoff, shape, transport, rep, descs, source, dest, active, records, cpu, verified, options=None,
         variant=None, raw=None) -> dict:
    """The result row of one transfer (the only place one is built): its time is the sum of the moves' wall
    times (measure.timed_move), CPU-seconds per GB are derived by results.row.make. A row of an [nfs]
    variant has the measured key "variant" (its label) and detail "nfs": what was asked, what the kernel
    applied (per item in the records' extra.mount) and every difference. An rdma row's share of the raw
    bandwidth comes from efficiency.fields."""
    moved = sum(r["bytes"] for r in records)
    seconds = sum(r["seconds"] for r in records)
    options = options or {}
    measured = {"handoff": handoff, "transport": transport, "sector": shape.label}
    extra = {}
    if variant is not None:
        measured["variant"] = variant.label
        extra["nfs"] = nfs_detail(variant, records)
    tput = throughput_mibps(moved, seconds)
    return make_row(measured, "throughput_MiBps",
                    tput, repetition=rep, bytes=moved, seconds=seconds,
                    cpu={**cpu, "roles": {"client": "worker", "server": "storage"}},
                    detail={"sector_size": shape.sector_size, "scale": str(shape.scale),
                            "files": sum(d.get("files", 1) for d in descs), "verified": verified,
                            "source": getattr(source, "name", "?"), "destination": getattr(dest, "name", "?"),
                            "cold": bool(options.get("cold")),
                            # what checked the bytes: "stream" (digested as they passed), "stream+reread" or "reread"
                            "verification": "/".join(sorted({r.get("extra", {}).get("verification", "stream")
                                                             for r in records})),
                            **{k: options[k] for k in ("chunk", "inflight", "streams", "parallel", "verify", "direct")
                               if k in options},
                            "active_end": getattr(active, "name", "?"), **extra, "items": records,
                            **efficiency.fields(transport, tput, records, options, raw)})


APPLIED = ("vers", "proto", "port", "nconnect", "rsize", "wsize")


def nfs_detail(variant, records: list[dict]) -> dict:
    """An [nfs] variant's row detail: requested, applied (as /proc/mounts showed it; a list when the
    items' mounts differed) and changed ({option: {requested, applied}} over all the items)."""
    seen = []
    changed: dict = {}
    for r in records:
        mount = (r.get("extra") or {}).get("mount") or {}
        applied = {k: mount.get(k) for k in APPLIED}
        if applied not in seen:
            seen.append(applied)
        for key, diff in ((r.get("extra") or {}).get("changed") or {}).items():
            changed.setdefault(key, diff)
    return {"requested": variant.requested, "applied": seen[0] if len(seen) == 1 else seen, "changed": changed}


def _cpu_cell(values: list[float]) -> str:
    """Mean CPU-s/GB over the repetitions that have one; n/a when none has (nothing moved)."""
    if not values:
        return "n/a"
    return f"{sum(values) / len(values):.2f}"


def render(rows: list[dict]) -> str:
    """Per hand-off and transport (an [nfs] variant its own line): mean time, throughput, CPU at both ends,
    verification, and for rdma the raw bandwidth at the same settings and the share of it reached; then
    every mount option the kernel applied otherwise than asked, and the raw measurements."""
    import statistics

    groups: dict = {}
    raws = [r for r in rows if "handoff" not in r["measured"]]
    for r in rows:
        m = r["measured"]
        if "handoff" not in m:
            continue
        name = f"{m['transport']} {m['variant']}" if m.get("variant") else m["transport"]
        groups.setdefault((m["handoff"], m["sector"], name), []).append(r)
    width = max([11] + [len(k[2]) for k in groups])
    head = (f"{'hand-off':<9} {'sector':<18} {'transport':<{width}} {'reps':>4} {'MiB':>9} {'time s':>8} "
            f"{'MiB/s':>9} {'CPU s/GB worker':>16} {'CPU s/GB storage':>17}  verified {'raw MiB/s':>10} {'of raw':>7}")
    lines = [head]
    notes = {}
    for (handoff, sector_label, name), rs in groups.items():
        secs = [r["seconds"] for r in rs]
        tput = [r["value"] for r in rs]
        spread = f"±{statistics.stdev(tput):.1f}" if len(tput) > 1 else ""
        per_gb = [(r["cpu"] or {}).get("per_gb") for r in rs]
        cw, cs = (_cpu_cell([p[k] for p in per_gb if p]) for k in ("client_process", "server_process"))
        raw, of_raw = efficiency.cells(rs)
        lines.append(f"{handoff:<9} {sector_label:<18} {name:<{width}} {len(rs):>4} {rs[0]['bytes'] / MIB:>9.1f} "
                     f"{statistics.fmean(secs):>8.3f} {statistics.fmean(tput):>9.1f}{spread:<7} {cw:>9} "
                     f"{cs:>17}  {'yes' if all(r['detail']['verified'] for r in rs) else 'NO':<8} {raw:>10} "
                     f"{of_raw:>7}".rstrip())
        for r in rs:
            for key, diff in ((r["detail"].get("nfs") or {}).get("changed") or {}).items():
                notes.setdefault(name, {})[key] = diff
    lines.append("CPU s/GB: process CPU-seconds per GB moved at each end (system-wide figures are in the result file)")
    for name, diffs in notes.items():
        told = ", ".join(f"{k}={d['applied'] if d['applied'] is not None else '(not shown)'} (asked {d['requested']})"
                         for k, d in diffs.items())
        lines.append(f"{name}: the kernel applied {told}")
    lines += efficiency.legend(rows, raws)
    return "\n".join(lines)
