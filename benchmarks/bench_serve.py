"""Serving a twin step: latency of the loaded jax.export artifact vs the in-process jitted step, and HTTP load.

The step is the configured building twin's (configs/building.toml: KF + MPC with horizon 24,
solved by ADMM inside the step), ``(state, y, t, d) -> (u, state)``.

1. In process, same inputs: ``jax.jit(twin.step)`` (the reference) against the loaded artifact
   called like the original (``loaded(state, y, t, d)``: argument checks + dispatch) and on
   flat leaves (``loaded.call_flat``, the server's path).  Goal: loaded within 1.2x.
   Two sizes of the building (3 and 12 zones), on a warm-started state (after 8 hourly steps).
2. Over HTTP on 127.0.0.1: ``python -m jtwin.serve`` in a subprocess, ``clients`` concurrent
   keep-alive clients each stepping its own twin ``steps`` times with ``{t, y, d}``; client-side
   latency p50/p99, throughput, errors and lost steps; durable (``--state-dir``, fsync per step)
   and in-memory; plus one client alone (no contention), durable and in-memory.

The machine's load average is recorded: on this shared 2-core machine the step's latency
depends on it (XLA's worker threads wait for a core).

Writes benchmarks/results/serve.json.

    .venv/bin/python benchmarks/bench_serve.py [--quick | --load]

``--load`` runs only the bounded load test (8 and 64 durable clients, loopback).
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
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jtwin
import jtwin.serve as serve
from jtwin.config import load_config
from jtwin.run import build_twin

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "building.toml"
WARM_STEPS = 8


def building_twin(zones):
    """The configured twin on a building of ``zones`` zones, its artifact and its served initial state."""
    cfg = load_config(str(CONFIG))
    cfg.plant.params["zones"] = zones
    model = cfg.plant.build()
    twin = build_twin(cfg, model)
    state0 = twin.init(jnp.full(model.state_dim, 20.0), jnp.eye(model.state_dim))
    data = serve.export_twin(twin, state0)
    return twin, state0, data


def forecast(t, horizon):
    """Outdoor temperature 5 ± 5 degC over a day and midday sun [horizon, 2], from hour ``t``."""
    phase = 2 * np.pi * (t + np.arange(horizon)) / 24 - np.pi / 2
    return np.column_stack([5 + 5 * np.sin(phase), np.maximum(0.0, 0.5 * np.sin(phase))])


def block_us(fn, calls):
    """Mean time per call (µs) over ``calls`` blocking calls."""
    start = time.perf_counter()
    for _ in range(calls):
        jax.block_until_ready(fn())
    return (time.perf_counter() - start) / calls * 1e6


def in_process(zones, repeats, block_s=0.2):
    """Best (and median) of ``repeats`` interleaved blocks of about ``block_s`` seconds per side."""
    twin, state0, data = building_twin(zones)
    loaded = serve.load_step(data)
    state = serve.arrays_to_tree(loaded.example("state"), state0)  # the served state's dtypes
    jitted = jax.jit(lambda s, y, t, d: twin.step(s, y, t, d))
    y = jnp.full(zones, 20.5)
    for k in range(WARM_STEPS):  # a warm-started state, as in steady serving
        _, state = jitted(state, y, jnp.asarray(float(k)), jnp.asarray(forecast(k, twin.horizon)))
    t, d = jnp.asarray(float(WARM_STEPS)), jnp.asarray(forecast(WARM_STEPS, twin.horizon))
    leaves = jax.tree.leaves((state, y, t, d))
    u_ref, s_ref = jitted(state, y, t, d)
    u, s = loaded(state, y, t, d)
    err = max(float(np.max(np.abs(np.asarray(u) - np.asarray(u_ref)), initial=0.0)),
              *(float(np.max(np.abs(np.asarray(s[p], float) - np.asarray(r, float)), initial=0.0))
                for p, r in serve.tree_to_arrays(s_ref).items()))
    fns = {"jit": lambda: jitted(state, y, t, d), "loaded": lambda: loaded(state, y, t, d),
           "loaded_flat": lambda: loaded.call_flat(leaves)}
    for fn in fns.values():
        fn()  # compile
    calls = max(2, round(block_s / (block_us(fns["jit"], 2) * 1e-6)))
    times = {name: [] for name in fns}
    for _ in range(repeats):  # interleave the sides so machine load hits all alike; keep each side's best block
        for name, fn in fns.items():
            times[name].append(block_us(fn, calls))
    us = {name: min(v) for name, v in times.items()}
    return {
        "zones": zones,
        "state_dim": 2 * zones,
        "horizon": twin.horizon,
        "admm_iterations": int(s_ref.plan.iterations),
        "calls_per_block": calls,
        "jit_us": us["jit"],
        "loaded_us": us["loaded"],
        "loaded_flat_us": us["loaded_flat"],
        "jit_us_median": float(np.median(times["jit"])),
        "loaded_flat_us_median": float(np.median(times["loaded_flat"])),
        "ratio_loaded_vs_jit": us["loaded"] / us["jit"],
        "ratio_flat_vs_jit": us["loaded_flat"] / us["jit"],
        "max_abs_difference_u_and_state": err,
    }


def start_server(artifact, state_dir, cache):
    argv = [sys.executable, "-m", "jtwin.serve", str(artifact), "--port", "0"]
    argv += ["--state-dir", str(state_dir)] if state_dir else []
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(cache), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    port = int(re.search(r":(\d+) ", line).group(1))
    return proc, port


def http_load(artifact, state_dir, clients, steps, prefix, cache, horizon, time_limit_s=None):
    """``clients`` keep-alive clients, each stepping its own twin up to ``steps`` times (and for at most
    ``time_limit_s`` seconds): throughput, client/server latency, errors, and steps acknowledged but missing."""
    proc, port = start_server(artifact, state_dir, cache)
    rng = np.random.default_rng(0)
    ys = (21 + 0.5 * rng.normal(size=(steps, 3))).tolist()
    bodies = [{"t": float(k + 1), "y": y, "d": forecast(k + 1, horizon).tolist()} for k, y in enumerate(ys)]
    warm = http.client.HTTPConnection("127.0.0.1", port, timeout=300)  # one untimed step: the server's first is slow
    for path, body in ((f"/twins/{prefix}warm", {}), (f"/twins/{prefix}warm/step", bodies[0])):
        warm.request("POST", path, body=json.dumps(body))
        warm.getresponse().read()
    warm.close()
    deadline = None if time_limit_s is None else time.perf_counter() + time_limit_s

    def client(i):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)

        def post(path, body):
            conn.request("POST", path, body=json.dumps(body))
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())

        errors = int(post(f"/twins/{prefix}{i}", {})[0] != 201)
        lat, acked = [], 0
        for body in bodies:
            if deadline is not None and time.perf_counter() > deadline:
                break
            start = time.perf_counter()
            status, out = post(f"/twins/{prefix}{i}/step", body)
            lat.append(time.perf_counter() - start)
            errors += status != 200
            acked += status == 200
        conn.request("GET", f"/twins/{prefix}{i}")
        done = json.loads(conn.getresponse().read())["step"]
        conn.close()
        return lat, errors, acked - done

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
        "steps": int(sum(len(r[0]) for r in results)),
        "wall_s": wall,
        "throughput_steps_per_s": sum(len(r[0]) for r in results) / wall,
        "client_latency_ms": {"p50": float(np.percentile(lat_ms, 50)), "p99": float(np.percentile(lat_ms, 99)),
                              "max": float(lat_ms.max())},
        "server_latency_ms": {k: server_lat[k] for k in ("p50", "p99")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls and 100 instead of 500 steps per client")
    parser.add_argument("--load", action="store_true", help="only the bounded load test: 8 and 64 durable clients")
    args = parser.parse_args()
    if args.load:
        return load_test()
    repeats, steps = (5, 100) if args.quick else (15, 500)
    report = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "jax": jax.__version__,
                    "backend": jax.default_backend(), "jtwin": jtwin.__version__,
                    "load_average_at_start": os.getloadavg()},
        "quick": args.quick,
        "step": f"{CONFIG.relative_to(REPO)}: Twin.step (KF + MPC), arguments (state, y, t, d)",
        "in_process": [in_process(z, repeats) for z in (3, 12)],
    }
    for row in report["in_process"]:
        print(f"in-process n={row['state_dim']:>2} ({row['admm_iterations']} ADMM it.): jit {row['jit_us']:.0f} us, "
              f"loaded {row['loaded_us']:.0f} us ({row['ratio_loaded_vs_jit']:.2f}x), "
              f"flat {row['loaded_flat_us']:.0f} us "
              f"({row['ratio_flat_vs_jit']:.2f}x), max |diff| {row['max_abs_difference_u_and_state']:.1e}")
    twin, state0 = serve.twin_from_config(str(CONFIG))
    with tempfile.TemporaryDirectory() as tmp:
        artifact, cache = Path(tmp) / "step.jtx", Path(tmp) / "jax-cache"
        artifact.write_bytes(serve.export_twin(twin, state0))
        runs = [("durable", Path(tmp) / "state", 8), ("memory", None, 8), ("single", Path(tmp) / "state1", 1),
                ("single", None, 1)]
        report["http"] = [http_load(artifact, d, c, steps, prefix, cache, twin.horizon) for prefix, d, c in runs]
    report["machine"]["load_average_at_end"] = os.getloadavg()
    for row in report["http"]:
        lat = row["client_latency_ms"]
        print(f"HTTP {row['clients']} clients x {row['steps_per_client']} steps, durable={row['durable']}: "
              f"p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms, {row['throughput_steps_per_s']:.0f} steps/s, "
              f"errors {row['errors']}, lost {row['lost_steps']}")
    out = REPO / "benchmarks" / "results" / "serve.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


LOAD_RUNS = ((8, 40), (64, 8))  # (clients, steps per client): 320 and 512 steps, each run at most 120 s


def load_test() -> None:
    """Loopback load test of the durable server (fsync per step): 8 and 64 concurrent clients, bounded in steps
    and time; merged into benchmarks/results/serve.json under ``load``."""
    twin, state0 = serve.twin_from_config(str(CONFIG))
    start_load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        artifact, cache = Path(tmp) / "step.jtx", Path(tmp) / "jax-cache"
        artifact.write_bytes(serve.export_twin(twin, state0))
        rows = [
            http_load(artifact, Path(tmp) / f"state{c}", c, n, f"c{c}-", cache, twin.horizon, time_limit_s=120)
            for c, n in LOAD_RUNS
        ]
    for row in rows:
        lat = row["client_latency_ms"]
        print(f"load {row['clients']} clients: {row['steps']} steps in {row['wall_s']:.1f} s, "
              f"{row['throughput_steps_per_s']:.0f} steps/s, p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms, "
              f"errors {row['errors']}, lost {row['lost_steps']}")
    out = REPO / "benchmarks" / "results" / "serve.json"
    report = json.loads(out.read_text()) if out.exists() else {}
    report["load"] = {"load_average": [start_load, os.getloadavg()], "cpus": os.cpu_count(), "runs": rows}
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
