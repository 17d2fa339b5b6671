"""Alternating write_lat pairs in the one-guest lab: perftest and rdmabench variants, one JSON line per run.

Runs inside the lab guest (docs/write-lat-one-guest.md), e.g.
  rdmabench lab -- "python scripts/lat_pairs.py $RDMABENCH_RESULTS/pairs.jsonl 12 perftest,local,peer"
usage: python scripts/lat_pairs.py OUT.jsonl ROUNDS VARIANT[,VARIANT...]   (LATEXP_ITERS: iterations, 1000)
variants:
  perftest          ib_write_lat local (server + client processes), t_typical
  perftest-U        the same with -U: every round trip, for p50 per 1000 (modes over time)
  perftest-c0s1/-c1s0  pinned with taskset (client CPU, server CPU)
  local             rdmabench run -t write_lat, no --peer (before 940f883: far end a thread of this process)
  local-nonuma      same with --no-numa
  local-cqmod1      same with --cq-mod 1 (every WRITE signaled, as ib_write_lat)
  local-cpu0        same with --cpu 0
  local-cpu1        same with --cpu 1
  peer              rdmabench run --peer 127.0.0.1 against a background `rdmabench serve`
  peer-nonuma       same with --no-numa
Each round runs every variant once, order rotating per round.
"""
import json
import os
import re
import subprocess
import sys
import time

DEV = os.environ["RDMABENCH_DEVICE"]
GID = os.environ["RDMABENCH_GID_INDEX"]
IP = os.environ["RDMABENCH_IP"]
ITERS = os.environ.get("LATEXP_ITERS", "1000")
SIZE = os.environ.get("LATEXP_SIZE", "2")
EXTRA = os.environ.get("LATEXP_EXTRA", "").split()


def perftest_u():
    srv = subprocess.Popen(["ib_write_lat", "-d", DEV, "-x", GID, "-s", SIZE, "-n", ITERS, "-p", "18525", "-F"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(1.0)
    out = subprocess.run(["ib_write_lat", "-d", DEV, "-x", GID, "-s", SIZE, "-n", ITERS, "-p", "18525", "-F", "-U",
                          "127.0.0.1"], capture_output=True, text=True, timeout=300).stdout
    srv.communicate(timeout=60)
    sm = [float(m[1]) for m in re.finditer(r"^\d+, ([0-9.]+)$", out, re.M)]
    m = re.search(r"^\s*\d+\s+\d+\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)", out, re.M)
    if not m or not sm:
        return {"error": out[-500:]}
    return {"value": float(m[3]), "min": float(m[1]), "avg": float(m[4]), "n": len(sm),
            "p_per_1000": [round(sorted(sm[i:i + 1000])[500], 2) for i in range(0, len(sm) - 999, 1000)],
            "over_1ms": len([v for v in sm if v > 1000])}


def perftest(cs=None):
    pin = lambda c: ["taskset", "-c", str(c)] if c is not None else []
    srv = subprocess.Popen([*pin(cs and cs[1]), "ib_write_lat", "-d", DEV, "-x", GID, "-s", SIZE, "-n", ITERS, "-p", "18525", "-F"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(1.0)
    out = subprocess.run([*pin(cs and cs[0]), "ib_write_lat", "-d", DEV, "-x", GID, "-s", SIZE, "-n", ITERS, "-p", "18525", "-F",
                          "127.0.0.1"], capture_output=True, text=True, timeout=300).stdout
    srv.communicate(timeout=60)
    m = re.search(r"^\s*\d+\s+\d+\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)", out, re.M)
    if not m:
        return {"error": out[-500:]}
    return {"value": float(m[3]), "min": float(m[1]), "avg": float(m[4])}


def ours(extra):
    out = "/tmp/latexp.json"
    cmd = ["rdmabench", "run", "-t", "write_lat", "-s", SIZE, "-n", ITERS, "-d", DEV, "-o", out, *EXTRA, *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if done.returncode:
        return {"error": (done.stdout + done.stderr)[-800:]}
    r = json.load(open(out))
    row = r["rows"][0]
    d = row["detail"]
    sm = d["samples_us"]
    return {"head": [round(v) for v in sm[:12]], "over_1ms": [i for i, v in enumerate(sm) if v > 1000][:20],
            "p_per_200": [round(sorted(sm[i:i + 200])[100], 2) for i in range(0, len(sm) - 199, 200)],
            "p_per_1000": [round(sorted(sm[i:i + 1000])[500], 2) for i in range(0, len(sm) - 999, 1000)],
            "value": row["value"], "min": d["lat_min_us"], "avg": d["lat_mean_us"], "placement": d.get("placement"),
            "cpu": row.get("cpu")}


VARIANTS = {
    "perftest": perftest,
    "perftest-U": perftest_u,
    "perftest-c0s1": lambda: perftest((0, 1)),
    "perftest-c1s0": lambda: perftest((1, 0)),
    "local": lambda: ours([]),
    "local-nonuma": lambda: ours(["--no-numa"]),
    "local-cqmod1": lambda: ours(["--cq-mod", "1"]),
    "local-cpu0": lambda: ours(["--cpu", "0"]),
    "local-cpu1": lambda: ours(["--cpu", "1"]),
    "peer": lambda: ours(["--peer", "127.0.0.1"]),
    "peer-nonuma": lambda: ours(["--peer", "127.0.0.1", "--no-numa"]),
}


def main():
    path, rounds, names = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
    serve = None
    if any(n.startswith("peer") for n in names):
        serve = subprocess.Popen(["rdmabench", "serve", "--bind", "127.0.0.1", "-d", DEV],
                                 stdout=open("/tmp/serve.log", "w"), stderr=subprocess.STDOUT)
        time.sleep(3)
    try:
        with open(path, "a") as f:
            for rnd in range(rounds):
                order = names[rnd % len(names):] + names[:rnd % len(names)]
                for n in order:
                    t = time.time()
                    res = VARIANTS[n]()
                    if n.startswith("perftest") and "error" in res:  # perftest's clock misfired (inf): once more
                        res = VARIANTS[n]()
                    res.update(variant=n, round=rnd, wall=time.time() - t, t=t, t_end=time.time(), extra=EXTRA)
                    f.write(json.dumps(res) + "\n")
                    f.flush()
                    print(f"{rnd} {n:14s} {res.get('value', res.get('error'))}", flush=True)
    finally:
        if serve:
            serve.terminate()
            serve.wait()


if __name__ == "__main__":
    main()
