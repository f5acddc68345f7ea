"""A building twin served over HTTP, closing the loop with a simulated plant, through a kill -9.

The Kalman + LQR step of ``jtwin.serve.demo`` for the 3-zone building is exported
(``jax.export``, CPU and CUDA in one artifact), the standalone runtime (jax + numpy +
standard library only) is copied next to it and started as a separate process with a
durable ``--state-dir``.  The client simulates the plant ``x⁺ = A x + B u + E d(t) + w``,
``y = H x + v`` for three days hourly: every hour it POSTs ``{t, y}`` (one thermometer
dropping out now and then, sent as ``null``) and applies the returned heating power ``u``.
After 30 hours the server is killed with SIGKILL mid-request and restarted; the client
retries the unanswered step and carries on.  The same loop is then rerun in process with
the jitted step: the served inputs must equal it (max |Δu| printed).

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

import jax
import jax.numpy as jnp
import numpy as np

import jtwin.serve as serve

HOURS, KILL_AT, SETPOINT = 72, 30, 21.0


def start(runtime_dir: Path, artifact: Path, state_dir: Path):
    argv = [sys.executable, "-m", "jtwin_runtime", str(artifact), "--port", "0", "--state-dir", str(state_dir)]
    proc = subprocess.Popen(argv, cwd=runtime_dir, stdout=subprocess.PIPE, text=True)
    port = int(re.search(r":(\d+) ", proc.stdout.readline()).group(1))
    return proc, port


def post(port: int, path: str, body: dict) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", path, body=json.dumps(body))
    out = json.loads(conn.getresponse().read())
    conn.close()
    return out


def main() -> None:
    step, state0 = serve.building_demo(3)
    model = step.model
    rng = np.random.default_rng(0)
    w = rng.normal(size=(HOURS, model.state_dim)) @ np.asarray(model.Q_factor).T
    v = rng.normal(size=(HOURS, model.output_dim)) @ np.asarray(model.R_factor).T
    x = np.array([19.0, 19.0, 19.0, 17.0, 17.0, 17.0])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        artifact = tmp / "building.jtx"
        artifact.write_bytes(serve.export_step(step, state0, jnp.zeros(3), jnp.asarray(0.0), platforms=("cpu", "cuda")))
        serve.write_runtime(tmp)
        proc, port = start(tmp, artifact, tmp / "state")
        post(port, "/twins/office", {})
        ys, us, latency, restarts = [], [], [], 0
        for k in range(HOURS):
            t = float(k)
            y = np.asarray(model.H) @ x + v[k]
            y_json = [None if (k % 7 == 3 and i == 1) else float(y[i]) for i in range(3)]
            body = {"t": t, "y": y_json}
            if k == KILL_AT:  # the request is sent, then the server dies before answering
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("POST", "/twins/office/step", body=json.dumps(body))
                proc.kill()
                proc.wait()
                conn.close()
                proc, port = start(tmp, artifact, tmp / "state")
                restarts += 1
            start_t = time.perf_counter()
            out = post(port, "/twins/office/step", body)
            latency.append(time.perf_counter() - start_t)
            u = np.asarray(out["u"])
            x = np.asarray(model.transition(jnp.asarray(x), jnp.asarray(u), t, step.disturbance(jnp.asarray(t)))) + w[k]
            ys.append(y_json)
            us.append(u)
        final = json.loads(_get(port, "/twins/office"))
        proc.terminate()
        proc.wait()

    jitted = jax.jit(lambda s, y, t: step(s, y, t))
    state, us_ref = state0, []
    for k, y in enumerate(ys):
        u, state = jitted(state, jnp.array([np.nan if e is None else e for e in y]), jnp.asarray(float(k)))
        us_ref.append(np.asarray(u))
    us, us_ref = np.array(us), np.array(us_ref)
    temps = np.array([[np.nan if e is None else e for e in y] for y in ys])
    print(f"served {HOURS} hourly steps, {restarts} kill -9 + restart at hour {KILL_AT}, "
          f"final step count {final['step']}")
    print(f"max |u_served - u_in_process| = {np.max(np.abs(us - us_ref)):.1e} kW")
    print(f"zone temperature, last 48 h: mean {np.nanmean(temps[-48:]):.2f} degC (setpoint {SETPOINT}), "
          f"RMS error {np.sqrt(np.nanmean((temps[-48:] - SETPOINT) ** 2)):.2f} degC")
    print(f"heating energy {us.sum():.1f} kWh, peak {us.sum(1).max():.1f} kW")
    print(f"HTTP step latency: median {1e3 * np.median(latency):.1f} ms, max {1e3 * np.max(latency):.1f} ms")


def _get(port: int, path: str) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path)
    data = conn.getresponse().read()
    conn.close()
    return data


if __name__ == "__main__":
    main()
