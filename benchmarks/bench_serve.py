"""Serving a twin step: latency of the loaded jax.export artifact vs the in-process jitted step, and HTTP load.

1. In process, same inputs: ``jax.jit(step)`` (the reference) against the loaded artifact
   called like the original (``loaded(state, y, t)``: argument checks + dispatch) and on
   flat leaves (``loaded.call_flat``, the server's path).  Goal: loaded within 1.2x.
   Two sizes of the Kalman + LQR building step (3 and 12 zones).
2. Over HTTP on 127.0.0.1: ``python -m jtwin.serve`` in a subprocess, ``clients`` concurrent
   keep-alive clients each stepping its own twin ``steps`` times; client-side latency
   p50/p99, throughput, errors and lost steps; durable (``--state-dir``, fsync per step)
   and in-memory; plus one client alone (no contention), durable and in-memory.

Writes benchmarks/results/serve.json.

    .venv/bin/python benchmarks/bench_serve.py [--quick]
"""

import argparse
import http.client
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jtwin
import jtwin.serve as serve

REPO = Path(__file__).resolve().parents[1]


def block_us(fn, calls):
    """Mean time per call (µs) over ``calls`` blocking calls."""
    start = time.perf_counter()
    for _ in range(calls):
        jax.block_until_ready(fn())
    return (time.perf_counter() - start) / calls * 1e6


def in_process(zones, calls, repeats):
    step, state0 = serve.building_demo(zones)
    y = jnp.full(zones, 20.5)
    t = jnp.asarray(1.0)
    jitted = jax.jit(lambda s, y, t: step(s, y, t))
    loaded = serve.load_step(serve.export_step(step, state0, y, t))
    leaves = jax.tree.leaves((state0, y, t))
    u_ref = np.asarray(jitted(state0, y, t)[0])
    err = float(np.max(np.abs(np.asarray(loaded(state0, y, t)[0]) - u_ref)))
    fns = {"jit": lambda: jitted(state0, y, t), "loaded": lambda: loaded(state0, y, t),
           "loaded_flat": lambda: loaded.call_flat(leaves)}
    for fn in fns.values():
        fn()  # compile
    times = {name: [] for name in fns}
    for _ in range(repeats):  # interleave the sides so machine load hits all alike; keep each side's best block
        for name, fn in fns.items():
            times[name].append(block_us(fn, calls))
    us = {name: min(v) for name, v in times.items()}
    return {
        "zones": zones,
        "state_dim": 2 * zones,
        "jit_us": us["jit"],
        "loaded_us": us["loaded"],
        "loaded_flat_us": us["loaded_flat"],
        "ratio_loaded_vs_jit": us["loaded"] / us["jit"],
        "ratio_flat_vs_jit": us["loaded_flat"] / us["jit"],
        "max_abs_u_difference": err,
    }


def start_server(artifact, state_dir):
    argv = [sys.executable, "-m", "jtwin.serve", str(artifact), "--port", "0"]
    argv += ["--state-dir", str(state_dir)] if state_dir else []
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    port = int(re.search(r":(\d+) ", line).group(1))
    return proc, port


def http_load(artifact, state_dir, clients, steps, prefix):
    proc, port = start_server(artifact, state_dir)
    rng = np.random.default_rng(0)
    ys = (21 + 0.5 * rng.normal(size=(steps, 3))).tolist()

    def client(i):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

        def post(path, body):
            conn.request("POST", path, body=json.dumps(body))
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())

        errors = int(post(f"/twins/{prefix}{i}", {})[0] != 201)
        lat = []
        for k, y in enumerate(ys):
            start = time.perf_counter()
            status, out = post(f"/twins/{prefix}{i}/step", {"t": float(k + 1), "y": y})
            lat.append(time.perf_counter() - start)
            errors += status != 200
        conn.request("GET", f"/twins/{prefix}{i}")
        done = json.loads(conn.getresponse().read())["step"]
        conn.close()
        return lat, errors, steps - done

    try:
        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            results = list(pool.map(client, range(clients)))
        wall = time.perf_counter() - start
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", "/metrics")
        server_lat = json.loads(conn.getresponse().read())["latency_ms"]["POST /twins/{id}/step"]
        conn.close()
    finally:
        proc.terminate()
        proc.wait()
    lat_ms = np.concatenate([r[0] for r in results]) * 1e3
    return {
        "clients": clients,
        "steps_per_client": steps,
        "durable": state_dir is not None,
        "errors": int(sum(r[1] for r in results)),
        "lost_steps": int(sum(r[2] for r in results)),
        "throughput_steps_per_s": clients * steps / wall,
        "client_latency_ms": {"p50": float(np.percentile(lat_ms, 50)), "p99": float(np.percentile(lat_ms, 99)),
                              "max": float(lat_ms.max())},
        "server_latency_ms": {k: server_lat[k] for k in ("p50", "p99")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls and 100 instead of 500 steps per client")
    args = parser.parse_args()
    calls, repeats, steps = (50, 40, 100) if args.quick else (50, 150, 500)
    report = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "jax": jax.__version__,
                    "backend": jax.default_backend(), "jtwin": jtwin.__version__},
        "quick": args.quick,
        "in_process": [in_process(z, calls, repeats) for z in (3, 12)],
    }
    for row in report["in_process"]:
        print(f"in-process n={row['state_dim']:>2}: jit {row['jit_us']:.1f} us, loaded {row['loaded_us']:.1f} us "
              f"({row['ratio_loaded_vs_jit']:.2f}x), flat {row['loaded_flat_us']:.1f} us "
              f"({row['ratio_flat_vs_jit']:.2f}x), |du| {row['max_abs_u_difference']:.1e}")
    step, state0 = serve.building_demo(3)
    with tempfile.TemporaryDirectory() as tmp:
        artifact = Path(tmp) / "step.jtx"
        artifact.write_bytes(serve.export_step(step, state0, jnp.full(3, 20.5), jnp.asarray(0.0)))
        report["http"] = [
            http_load(artifact, Path(tmp) / "state", 8, steps, "durable"),
            http_load(artifact, None, 8, steps, "memory"),
            http_load(artifact, Path(tmp) / "state1", 1, steps, "single"),
            http_load(artifact, None, 1, steps, "single"),
        ]
    for row in report["http"]:
        lat = row["client_latency_ms"]
        print(f"HTTP {row['clients']} clients x {row['steps_per_client']} steps, durable={row['durable']}: "
              f"p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms, {row['throughput_steps_per_s']:.0f} steps/s, "
              f"errors {row['errors']}, lost {row['lost_steps']}")
    out = REPO / "benchmarks" / "results" / "serve.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
