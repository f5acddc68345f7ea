"""The configured building twin served over HTTP, closing the loop with a simulated plant, through a kill -9.

The twin of ``configs/building.toml`` (Kalman filter + MPC with an energy price and a demand
charge, horizon 24 h) is exported (``jax.export``, CPU and CUDA in one artifact), the standalone
runtime (jax + numpy + standard library only) is copied next to it and started as a separate
process with a durable ``--state-dir``.  The client simulates the plant ``x⁺ = A x + B u + E d + w``,
``y = H x + v`` for three January days hourly on real weather (TMY3, Greensboro NC): every hour
it POSTs ``{t, y, d}`` (``d``: the next 24 h of weather as the forecast; one thermometer
dropping out now and then, sent as ``null``) and applies the returned heating power ``u``.
After 30 hours the server is killed with SIGKILL mid-request and restarted; the client
retries the unanswered step and carries on.  The same loop is then rerun in process with
the jitted ``Twin.step``: the served inputs must equal it (max |Δu| printed).

    .venv/bin/python experiments/serve_building.py
"""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import equinox as eqx
import jax.numpy as jnp
import numpy as np

import jtwin.serve as serve
from jtwin import Twin
from jtwin.config import load_config
from jtwin.models.library import load_tmy3_greensboro

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "building.toml"
HOURS, KILL_AT = 72, 30


def start(runtime_dir: Path, artifact: Path, state_dir: Path):
    argv = [sys.executable, "-m", "jtwin_runtime", str(artifact), "--port", "0", "--state-dir", str(state_dir)]
    proc = subprocess.Popen(argv, cwd=runtime_dir, stdout=subprocess.PIPE, text=True)
    port = int(re.search(r":(\d+) ", proc.stdout.readline()).group(1))
    return proc, port


def request(port: int, method: str, path: str, body: dict | None = None) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(method, path, body=None if body is None else json.dumps(body))
    out = json.loads(conn.getresponse().read())
    conn.close()
    return out


def main() -> None:
    cfg = load_config(str(CONFIG))
    twin, state0 = serve.twin_from_config(str(CONFIG))
    model, N = twin.model, twin.horizon
    weather = load_tmy3_greensboro().disturbances(cfg.weather.start_hour, HOURS + N, model.dt)
    rng = np.random.default_rng(0)
    w = rng.normal(size=(HOURS, model.state_dim)) @ np.asarray(model.Q_factor).T
    v = rng.normal(size=(HOURS, model.output_dim)) @ np.asarray(model.R_factor).T
    x = np.asarray(cfg.simulation.x0) - 1.0  # the building starts 1 degC colder than the twin believes
    bodies, us, latency, restarts = [], [], [], 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        artifact = tmp / "building.jtx"
        artifact.write_bytes(serve.export_twin(twin, state0, platforms=("cpu", "cuda")))
        serve.write_runtime(tmp)
        proc, port = start(tmp, artifact, tmp / "state")
        request(port, "POST", "/twins/office", {})
        for k in range(HOURS):
            t = k * model.dt
            y = np.asarray(model.H) @ x + v[k]
            y_json = [None if (k % 7 == 3 and i == 1) else float(y[i]) for i in range(len(y))]
            body = {"t": t, "y": y_json, "d": weather[k : k + N].tolist()}
            if k == KILL_AT:  # the request is sent, then the server dies before answering
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                conn.request("POST", "/twins/office/step", body=json.dumps(body))
                proc.kill()
                proc.wait()
                conn.close()
                proc, port = start(tmp, artifact, tmp / "state")
                restarts += 1
            start_t = time.perf_counter()
            out = request(port, "POST", "/twins/office/step", body)
            latency.append(time.perf_counter() - start_t)
            u = np.asarray(out["u"])
            x = np.asarray(model.transition(jnp.asarray(x), jnp.asarray(u), t, jnp.asarray(weather[k]))) + w[k]
            bodies.append(body)
            us.append(u)
        final = request(port, "GET", "/twins/office")
        proc.terminate()
        proc.wait()

    step = eqx.filter_jit(Twin.step)
    state, us_ref = state0, []
    for b in bodies:
        y = jnp.array([np.nan if e is None else e for e in b["y"]])
        u, state = step(twin, state, y, jnp.asarray(b["t"], jnp.float64), jnp.asarray(b["d"]))
        us_ref.append(np.asarray(u))
    us, us_ref = np.array(us), np.array(us_ref)
    temps = np.array([[np.nan if e is None else e for e in b["y"]] for b in bodies])
    c = cfg.controller
    print(f"served {HOURS} hourly steps, {restarts} kill -9 + restart at hour {KILL_AT}, "
          f"final step count {final['step']}")
    print(f"max |u_served - u_in_process| = {np.max(np.abs(us - us_ref)):.1e} kW")
    print(f"zone temperature, last 48 h: mean {np.nanmean(temps[-48:]):.2f} degC (band {c.xmin}-{c.xmax}), "
          f"below band {np.mean(temps[-48:] < c.xmin - 0.5):.0%} of readings (by > 0.5 degC)")
    print(f"heating energy {us.sum() * model.dt:.1f} kWh, peak {us.sum(1).max():.1f} kW "
          f"(demand charge above {c.rho} kW)")
    print(f"HTTP step latency: median {1e3 * np.median(latency):.1f} ms, max {1e3 * np.max(latency):.1f} ms")


if __name__ == "__main__":
    main()
