"""Crafted result files with known answers, built through the results model (Result(...).save).

`python tests/unit/data/crafted.py DIR` writes them to DIR (useful to look at a report by hand:
`rdmabench report DIR/*.json -o /tmp/r`); the tests build their own copies in tmp_path.

The rows are written as schema 1 had them (flat, by kind) and converted by row.from_v1, the path an old
file takes. The .json files beside this one are schema 1 files, written before the one row shape, and kept
as they are so that reading old files stays tested (test_results.py).

Known answers:
- verbs A vs B, write_bw 64 KiB: 1000±10 vs 1200±10 MiB/s over 3 repetitions: ratio 1.2, significant.
- write_bw 1 MiB: 2000±100 vs 2020±100: ratio 1.01, not significant (Welch p ~ 0.82).
- write_lat 2 B: A has 3 repetitions, B one: "n/a: one run".
- read_bw 64 KiB in B: 800, 1000, 1200: spread 20% of the mean (warned).
- B ran at active MTU 1024 and kernel 6.12 where A had 4096 and 6.1 (warned).
- transfer: http 100 MiB/s, rdma-write 400 MiB/s, nfs-rdma 250 MiB/s (pc1-pc2 and finalize), C1->C2 over
  http (JSON-RPC) 10 MiB/s and rdma-write 50 MiB/s; measured on rxe under emulation.
- transfer with raw figures (schema 2 rows, built as the runner builds them): pc1-pc2 rdma-write 400 MiB/s
  against a raw write_bw of 500 MiB/s (1 MiB x 1 QP x depth 16): 80%; rdma-read 300 against read_bw 600: 50%;
  http 100 with no raw figure; the raw rows themselves. With raw_failed, no raw row and the reason instead.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from rdmabench.results.model import Result  # noqa: E402
from rdmabench.results.row import from_v1  # noqa: E402

MiB = 1 << 20


def context(hostname="storage-1", kernel="6.1.0-18-amd64", device="mlx5_0", driver="mlx5_core", mtu=4096,
            link_layer="Ethernet", environment="hardware", virtualization="none", firmware="16.35.2000",
            rate="100 Gb/sec (4X EDR)") -> dict:
    return {
        "host": {"hostname": hostname, "kernel": kernel, "os": "Debian GNU/Linux 12 (bookworm)",
                 "cpu_model": "AMD EPYC 7543P 32-Core Processor", "cpu_count": 64, "rdma_core": "44.0-2", "perftest": "4.5-0.20",
                 "rdmabench": "0.1.0", "virtualization": virtualization},
        "device": {"name": device, "driver": driver, "firmware": firmware, "link_layer": link_layer,
                   "active_mtu": mtu, "gid_type": "RoCE v2", "rate": rate},
        "environment": environment,
        "hardware": environment == "hardware",
    }


def emulated_context(hostname="worker") -> dict:
    return context(hostname=hostname, kernel="6.12.12-amd64", device="rxe0", driver="rdma_rxe", mtu=4096,
                   environment="soft-RoCE (rxe) under emulation (QEMU TCG): ratios only, not a hardware figure",
                   virtualization="tcg", firmware=None, rate="10 Gb/sec (1X QDR)")


def cpu(seconds: float, busy: float, proc: float) -> dict:
    return {"elapsed_s": seconds, "cores": 64,
            "system": {"busy_cores": busy / seconds, "busy_s": busy},
            "process": {"user_s": proc * 0.2, "system_s": proc * 0.8, "cores": proc / seconds}}


def v2(kind: str, rows: list[dict]) -> list[dict]:
    return [from_v1(kind, r) for r in rows]


def bw_row(test: str, size: int, rep: int, mibps: float, qps: int = 1) -> dict:
    seconds = 1.0
    moved = int(mibps * MiB * seconds)
    gb = moved / 1e9
    return {"test": test, "size": size, "repetition": rep, "qps": qps, "engine": "native", "connect": "oob",
            "bidir": False, "iterations": 5000, "duration_s": None,
            "bw_avg_MiBps": mibps, "bw_avg_Gbps": mibps * MiB * 8 / 1e9, "msg_rate_Mpps": mibps * MiB / size / 1e6,
            "bw_best_window_MiBps": mibps * 1.02, "seconds": seconds, "bytes": moved,
            "cpu": {"client": cpu(seconds, 0.8, 0.7), "server": cpu(seconds, 0.1, 0.02)},
            "cpu_s_per_gb": {"client_system": 0.8 / gb, "client_process": 0.7 / gb,
                             "server_system": 0.1 / gb, "server_process": 0.02 / gb}}


def lat_row(test: str, size: int, rep: int, p50: float, n: int = 400, seed: int = 0) -> dict:
    rnd = random.Random(seed)
    samples = sorted(p50 + rnd.expovariate(1 / (0.05 * p50)) - 0.05 * p50 * 0.69 for _ in range(n))
    q = lambda f: samples[min(n - 1, int(f * n))]  # noqa: E731
    return {"test": test, "size": size, "repetition": rep, "qps": 1, "engine": "native", "connect": "oob",
            "bidir": False, "iterations": n, "duration_s": None,
            "lat_min_us": samples[0], "lat_p50_us": p50, "lat_mean_us": sum(samples) / n, "lat_p99_us": q(0.99),
            "lat_p99_9_us": q(0.999), "lat_p99_99_us": samples[-1], "lat_max_us": samples[-1],
            "lat_stdev_us": 0.05 * p50, "samples_us": samples, "samples_truncated": False,
            "cpu": {"client": cpu(0.01, 0.01, 0.01), "server": cpu(0.01, 0.01, 0.01)}}


def verbs_a() -> Result:
    rows = []
    for rep, (v64, v1m, lat) in enumerate(zip([1000, 1010, 990], [2000, 2100, 1900], [2.0, 2.1, 1.9])):
        rows += [bw_row("write_bw", 65536, rep, v64), bw_row("write_bw", MiB, rep, v1m),
                 bw_row("read_bw", 65536, rep, 950 + rep), lat_row("write_lat", 2, rep, lat, seed=rep)]
    return Result(kind="verbs", context=context(), options={"tests": ["write_bw", "read_bw", "write_lat"], "repeat": 3},
                  rows=v2("verbs", rows), created="2024-05-01T10:00:00+00:00")


def verbs_b() -> Result:
    rows = []
    for rep, (v64, v1m, rd) in enumerate(zip([1200, 1210, 1190], [2020, 2120, 1920], [800, 1000, 1200])):
        rows += [bw_row("write_bw", 65536, rep, v64), bw_row("write_bw", MiB, rep, v1m),
                 bw_row("read_bw", 65536, rep, rd)]
    rows.append(lat_row("write_lat", 2, 0, 1.5, seed=7))
    return Result(kind="verbs", context=context(mtu=1024, kernel="6.12.12-amd64"),
                  options={"tests": ["write_bw", "read_bw", "write_lat"], "repeat": 3}, rows=v2("verbs", rows),
                  created="2024-05-02T10:00:00+00:00")


def verbs_sweep() -> Result:
    """A sweep for the report: three bandwidth tests, 2 B .. 8 MiB, two repetitions; latency at three sizes."""
    rows = []
    for rep in range(2):
        for test, peak in (("write_bw", 11000), ("read_bw", 10500), ("send_bw", 10000)):
            for p in range(1, 24, 2):
                size = 1 << p
                rows.append(bw_row(test, size, rep, peak * size / (size + 4096) * (1 + 0.01 * rep)))
        for test, base in (("write_lat", 1.6), ("read_lat", 3.2), ("send_lat", 1.9)):
            for size in (2, 4096, 65536):
                rows.append(lat_row(test, size, rep, base + size / 12500, seed=rep * 100 + size % 97))
    return Result(kind="verbs", context=context(hostname="worker-1"), options={"tests": "all", "repeat": 2},
                  rows=v2("verbs", rows), created="2024-05-03T10:00:00+00:00")


TRANSFER_MIBPS = {
    ("pc1-pc2", "http"): 100.0, ("pc1-pc2", "rdma-write"): 400.0, ("pc1-pc2", "nfs-rdma"): 250.0,
    ("finalize", "http"): 100.0, ("finalize", "rdma-write"): 400.0, ("finalize", "nfs-rdma"): 250.0,
    ("c1-c2", "http"): 10.0, ("c1-c2", "rdma-write"): 50.0,
}
TRANSFER_BYTES = {"pc1-pc2": 41_943_008, "finalize": 8_407_392 + 2000, "c1-c2": 281_000}  # 8 MiB sector


def transfer_result(emulated: bool = True, mibps: dict | None = None) -> Result:
    rows = []
    for (handoff, transport), rate in (mibps or TRANSFER_MIBPS).items():
        for rep, wobble in enumerate((0.98, 1.0, 1.02)):
            moved = TRANSFER_BYTES[handoff]
            thr = rate * wobble
            seconds = moved / (thr * MiB)
            gb = moved / 1e9
            cs = {"http": 2.0}.get(transport, 0.3)
            rows.append({"handoff": handoff, "transport": transport, "sector": "8MiB", "scale": 1.0,
                         "repetition": rep, "bytes": moved, "seconds": seconds, "throughput_MiBps": thr,
                         "verified": True, "files": 1 if handoff == "c1-c2" else 14,
                         "cpu": {"client": cpu(seconds, cs * gb, cs * gb * 0.6),
                                 "server": cpu(seconds, cs * gb * 0.8, cs * gb * 0.5)},
                         "cpu_s_per_gb": {"client_system": cs, "client_process": cs * 0.6,
                                          "server_system": cs * 0.8, "server_process": cs * 0.5}})
    ctx = emulated_context() if emulated else context(hostname="worker-1")
    return Result(kind="transfer", context=ctx, peer_context=emulated_context("storage") if emulated else context(),
                  options={"config": "configs/sealing-8MiB.toml", "repeat": 3}, rows=v2("transfer", rows),
                  created="2024-05-04T10:00:00+00:00")


RAW_MIBPS = {"write_bw": 500.0, "read_bw": 600.0}


def meter(seconds: float, busy: float, proc: float) -> dict:
    """A CpuMeter figure as schema 2 keeps it (process CPU-seconds included)."""
    m = cpu(seconds, busy, proc)
    return {**m, "measurable": True, "process": {**m["process"], "cpu_s": proc}}
RAW_TRANSFER_MIBPS = {"http": 100.0, "rdma-write": 400.0, "rdma-read": 300.0}
RAW_OPTIONS = {"chunk": MiB, "inflight": 16, "streams": 1}


def raw_measurements(failed: bool = False):
    """The efficiency.Raw a run would have measured for RAW_TRANSFER_MIBPS's rdma transports."""
    from rdmabench.perf.client import make_row
    from rdmabench.transfer import efficiency

    raw = efficiency.Raw(between="worker -> storage's rdmabench serve at 10.77.2.1:18515")
    setup = {"qps": 1, "engine": "native", "connect": "oob", "bidir": False, "iters": 0, "duration": 2.0,
             "validate": False}
    for s in efficiency.planned(RAW_TRANSFER_MIBPS, RAW_OPTIONS):
        if failed:
            raw.failed[s] = f"raw {s.test} at {s.size} B x 1 QP(s) x depth 16 not measured: no answer from 10.77.2.1"
            continue
        moved = int(RAW_MIBPS[s.test] * MiB * 2)
        engine = {"bytes": moved, "ops": moved // s.size, "t_start_ns": 0, "t_end_ns": 2_000_000_000}
        r = make_row(s.test, s.size, 0, setup, engine, meter(2.0, 0.5, 0.4), {}, meter(2.0, 0.1, 0.05))
        raw.rows[s] = efficiency.raw_row(r, s, 8, raw.between, remote=True)
    return raw


def transfer_with_raw(raw_failed: bool = False) -> Result:
    from rdmabench.results.row import make
    from rdmabench.transfer import efficiency

    raw = raw_measurements(raw_failed)
    rows = []
    for transport, rate in RAW_TRANSFER_MIBPS.items():
        for rep, wobble in enumerate((0.98, 1.0, 1.02)):
            moved = TRANSFER_BYTES["pc1-pc2"]
            thr = rate * wobble
            seconds = moved / (thr * MiB)
            extra = {"chunk": MiB, "inflight": 16, "registered_bytes": 16 * MiB} if transport != "http" else {}
            records = [{"transport": transport, "item": "sealed/s-t01000-1", "bytes": moved, "verified": True,
                        "digest": "0" * 32, "wire_bytes": moved, "extra": extra, "phases": {}, "seconds": seconds}]
            rows.append(make({"handoff": "pc1-pc2", "transport": transport, "sector": "8MiB"}, "throughput_MiBps",
                             thr, repetition=rep, bytes=moved, seconds=seconds,
                             cpu={"client": meter(seconds, 0.3, 0.2), "server": meter(seconds, 0.2, 0.1)},
                             detail={"sector_size": 8 * MiB, "scale": "1", "files": 14, "verified": True,
                                     "items": records,
                                     **efficiency.fields(transport, thr, records, RAW_OPTIONS, raw)}))
    return Result(kind="transfer", context=emulated_context(), peer_context=emulated_context("storage"),
                  options={"config": "configs/default.toml", **RAW_OPTIONS}, rows=rows + raw.all_rows(),
                  created="2024-05-05T10:00:00+00:00")


def save_all(folder: Path) -> dict[str, Path]:
    folder = Path(folder)
    return {name: make().save(folder / f"{name}.json") for name, make in
            (("verbs-a", verbs_a), ("verbs-b", verbs_b), ("verbs-sweep", verbs_sweep),
             ("transfer-rxe", transfer_result), ("transfer-raw", transfer_with_raw))}


if __name__ == "__main__":
    for name, path in save_all(Path(sys.argv[1])).items():
        print(path)
