"""Measured estimator cost: XLA flop counts vs closed forms, fitted k, achieved flop/s and n_max.

For each step function, ``k`` is fitted on small ``n`` from XLA's cost analysis
and checked on a held-out larger ``n`` (prediction error); the achieved flop
rate comes from wall time; ``n_max`` applies the spec's EDF formula (T = 20 ms,
U_other = 0.5, τ = 0.5 ms) with the measured k and F, beside the spec's assumed
k = 200, F = 1 GFLOP/s (n_max = 36).  Steps: the covariance prediction
``A P Aᵀ + Q`` (closed form 4n³ + n² flops), a Kalman covariance update with a
Cholesky solve, and jtwin's own KF step (when jtwin.estimation is built).
Writes benchmarks/results/schedule.json.

    .venv/bin/python benchmarks/bench_schedule.py [--quick]
"""

import argparse
import json
import platform
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jtwin as jt
from jtwin import schedule

PERIOD, U_OTHER, TAU = 0.020, 0.5, 0.0005


def covariance_predict(n):
    rng = np.random.default_rng(n)
    return (lambda a, p, q: a @ p @ a.T + q), (jnp.asarray(rng.normal(size=(n, n))), jnp.eye(n), jnp.eye(n))


def kalman_covariance(n):
    rng = np.random.default_rng(n)

    def step(a, p, h, r):
        p = a @ p @ a.T
        s = h @ p @ h.T + r
        gain = jax.scipy.linalg.cho_solve((jnp.linalg.cholesky(s), True), h @ p).T
        return p - gain @ s @ gain.T

    return step, (jnp.asarray(rng.normal(size=(n, n))), 2 * jnp.eye(n), jnp.eye(n), jnp.eye(n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    args = parser.parse_args()
    fit_ns, held_out = ([8, 16, 24, 32], 64) if args.quick else ([16, 32, 48, 64, 96], 192)
    steps = {"covariance_predict": covariance_predict, "kalman_covariance_update": kalman_covariance}
    if hasattr(jt.estimation, "run_filter"):
        steps["jtwin_KF_step"] = schedule.estimator_step_factory(jt.estimation.KF())
    results = {}
    for name, make_step in steps.items():
        cost = schedule.measure_step_cost(make_step, fit_ns, repeats=20)
        flops_held, seconds_held = schedule.measure_step(*make_step(held_out), repeats=20)
        entry = {
            "fit_ns": fit_ns,
            "flops": cost.flops.tolist(),
            "seconds": cost.seconds.tolist(),
            "k": cost.k,
            "achieved_flops_per_s": cost.flops_per_s,
            "held_out_n": held_out,
            "held_out_flops_measured": flops_held,
            "held_out_flops_predicted": float(cost.predict_flops(held_out)),
            "held_out_flops_rel_error": float(cost.predict_flops(held_out) / flops_held - 1),
            "held_out_seconds_measured": seconds_held,
            "held_out_seconds_predicted": float(cost.predict_seconds(held_out)),
            "n_max_measured_k_and_F": schedule.max_state_dim(cost.k, cost.flops_per_s, PERIOD, U_OTHER, TAU),
        }
        if name == "covariance_predict":
            closed = [4.0 * n**3 + n**2 for n in fit_ns]
            entry["closed_form_flops"] = closed
            entry["max_rel_error_vs_closed_form"] = float(np.max(np.abs(cost.flops / closed - 1)))
        results[name] = entry
    out = {
        "benchmark": "schedule: XLA-measured k n^3 cost model and n_max (T=20 ms, U_other=0.5, tau=0.5 ms)",
        "quick": args.quick,
        "spec_example_n_max": schedule.max_state_dim(200, 1e9, PERIOD, U_OTHER, TAU),
        "steps": results,
        "versions": {"jax": jax.__version__, "backend": jax.default_backend()},
        "machine": platform.processor() or platform.machine(),
    }
    path = Path(__file__).parent / "results" / "schedule.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
