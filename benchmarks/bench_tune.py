"""Cost of a closed-loop gradient: ``value_and_grad`` of a batched closed-loop KPI vs the forward pass.

The KPI (:class:`jtwin.learn.TrackingCost`, mean over scenarios and samples) is differentiated
w.r.t. the MPC weights (log-diagonals of Q and R, :func:`jtwin.learn.tune`'s parametrisation)
through plant, Kalman filter and MPC (implicit KKT gradients of every QP solve).  Measured, with
all three functions compiled ahead of time (``jax.jit(...).lower(...).compile()``):

* seconds of the forward pass, of ``value_and_grad`` without checkpointing and with
  ``jax.checkpoint`` over time chunks; ratio gradient / forward (goal <= 5);
* XLA's memory analysis of each compiled function (temporary, argument and output bytes):
  the peak working memory with and without checkpointing.

Twins (``--twin``):

* ``small``: a damped double integrator (2 states, 1 input, position measured, a disturbance),
  KF + MPC (horizon 10, input box), the plant's B 0.7x the twin's;
* ``building``: ``configs/building.toml`` (6 states, 3 heaters, KF + MPC horizon 24 with ℓ1,
  demand-charge hinge and soft comfort band, real weather, dropouts) via ``jtwin.run.build_twin``.

    .venv/bin/python benchmarks/bench_tune.py [--twin small|building] [--scenarios 10000] [--steps 48] [--chunk 8]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import jtwin as jt
from jtwin.config import load_config
from jtwin.learn import TrackingCost, TuneProblem, TwinParameters
from jtwin.models.library import load_tmy3_greensboro
from jtwin.run import build_twin, prior_covariance
from jtwin.simulate import make_scenarios
from jtwin.twin import Twin

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "tune.json"


def small_setup(scenarios: int, steps: int):
    """``(plant, twin, batch, cov0, objective)`` of the double integrator."""
    A, B = np.array([[1.0, 0.1], [0.0, 0.95]]), np.array([[0.005], [0.1]])
    E, H = np.array([[0.0], [0.05]]), np.array([[1.0, 0.0]])
    plant = jt.models.LinearModel(A, B, H, 1e-4 * np.eye(2), 1e-3 * np.eye(1), E=E)
    model = jt.models.LinearModel(A, 0.7 * B, H, 1e-4 * np.eye(2), 1e-3 * np.eye(1), E=E)
    xref, horizon = np.array([1.0, 0.0]), 10
    twin = Twin.from_linear_model(
        model, jt.estimation.KF(), horizon, Q=np.diag([1.0, 0.1]), R=0.1 * np.eye(1), xref=xref, umin=-2.0, umax=2.0
    )
    d = 0.5 * np.sin(np.arange(steps + horizon) / 3.0)[:, None]
    batch = make_scenarios(jax.random.PRNGKey(0), scenarios, jnp.zeros(2), jnp.asarray(d), 1, x0_std=0.3)
    return plant, twin, batch, 0.05 * np.eye(2), TrackingCost(xref, q=[1.0, 0.0], r=0.01)


def building_setup(scenarios: int, steps: int):
    """``(plant, twin, batch, cov0, objective)`` of ``configs/building.toml``: comfort tracking + energy."""
    cfg = load_config(ROOT / "configs" / "building.toml")
    model = cfg.plant.build()
    twin = build_twin(cfg, model)
    d = load_tmy3_greensboro().disturbances(cfg.weather.start_hour, steps + twin.horizon, model.dt)
    sim = cfg.simulation
    batch = make_scenarios(
        jax.random.PRNGKey(sim.seed), scenarios, jnp.asarray(sim.x0), jnp.asarray(d), model.input_dim,
        x0_std=sim.x0_std, forecast_std=np.asarray(sim.forecast_std), dropout=sim.dropout,
    )  # fmt: skip
    mpc = twin.controller
    objective = TrackingCost(mpc.xref[0], q=jnp.diag(mpc.Q), l1=cfg.controller.alpha)
    return model, twin, batch, prior_covariance(cfg, model.state_dim), objective


def compiled(fn, *args):
    """``(compiled function, seconds to compile, memory analysis in bytes)``."""
    start = time.perf_counter()
    exe = jax.jit(fn).lower(*args).compile()
    mem = exe.memory_analysis()
    memory = {k: int(getattr(mem, f"{k}_size_in_bytes")) for k in ("temp", "argument", "output", "generated_code")}
    return exe, time.perf_counter() - start, memory


def timed(exe, *args, repeats: int) -> float:
    """Best of ``repeats`` runs (compiled ahead of time: no warm-up needed)."""
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(exe(*args))
        best = min(best, time.perf_counter() - start)
    return best


def gradient_functions(params, plant, cov0, objective, steps, chunk):
    """``(loss(θ, arrays, batch), value_and_grad of it, arrays)`` of the closed-loop problem."""
    problem = TuneProblem(params, plant, jnp.asarray(cov0), objective, steps, chunk)
    dyn, static = eqx.partition(problem, eqx.is_array)
    loss = lambda th, dyn, sc: eqx.combine(dyn, static).loss(th, sc)[0]  # noqa: E731
    return loss, jax.value_and_grad(loss), dyn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--twin", choices=("small", "building"), default="small")
    ap.add_argument("--scenarios", type=int, default=None, help="default 10000 (small), 8 (building)")
    ap.add_argument("--steps", type=int, default=48)
    ap.add_argument("--chunk", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--memory-steps", default="48,192,768", help="rollout lengths of the memory-only comparison")
    args = ap.parse_args()
    scenarios = args.scenarios or (10_000 if args.twin == "small" else 8)
    setup = small_setup if args.twin == "small" else building_setup

    plant, twin, batch, cov0, objective = setup(scenarios, args.steps)
    params = TwinParameters.select(twin, ("controller.Q", "controller.R"))
    theta = params.initial()
    result = {
        "benchmark": "value_and_grad of a closed-loop KPI (plant + KF + MPC) vs the forward pass",
        "twin": args.twin,
        "scenarios": scenarios,
        "steps": args.steps,
        "horizon": twin.horizon,
        "chunk": args.chunk,
        "tuned": list(params.values(theta)),
    }
    for label, chunk in (("plain", None), ("checkpointed", args.chunk)):
        loss, vg, dyn = gradient_functions(params, plant, cov0, objective, args.steps, chunk)
        if label == "plain":  # the forward pass does not depend on the chunking
            exe, compile_s, memory = compiled(loss, theta, dyn, batch)
            seconds = timed(exe, theta, dyn, batch, repeats=args.repeats)
            result["forward"] = {"seconds": seconds, "compile_seconds": compile_s, "memory_bytes": memory}
            print("forward", result["forward"], flush=True)
        exe, compile_s, memory = compiled(vg, theta, dyn, batch)
        seconds = timed(exe, theta, dyn, batch, repeats=args.repeats)
        ratio = seconds / result["forward"]["seconds"]
        result[f"value_and_grad_{label}"] = {
            "seconds": seconds, "ratio_to_forward": ratio, "compile_seconds": compile_s, "memory_bytes": memory,
        }  # fmt: skip
        print(label, result[f"value_and_grad_{label}"], flush=True)
    result["goal_ratio"] = 5.0

    # memory only (compiled, not run): XLA temp bytes of value_and_grad as the rollout grows
    scaling = []
    for steps in (int(s) for s in args.memory_steps.split(",") if s):
        chunk = max(1, round(steps**0.5))
        plant, twin, batch, cov0, objective = setup(scenarios, steps)
        row = {"steps": steps, "chunk": chunk}
        for label, c in (("plain", None), ("checkpointed", chunk)):
            _, vg, dyn = gradient_functions(params, plant, cov0, objective, steps, c)
            row[f"{label}_temp_bytes"] = compiled(vg, theta, dyn, batch)[2]["temp"]
        print("memory", row, flush=True)
        scaling.append(row)
    result["memory_scaling"] = scaling
    device = jax.devices()[0]
    result["machine"] = f"{platform.machine()}, {jax.device_count()} {device.platform} device(s), {device.device_kind}"
    result["jax"] = jax.__version__
    print(json.dumps(result, indent=2))
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[args.twin] = result
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
