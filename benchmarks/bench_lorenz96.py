"""UKF on Lorenz-96: jtwin vs filterpy (accuracy and per-step time), batched throughput, cost vs state dimension.

1. Lorenz-96, n = 40, F = 8, dt = 0.05 (RK4, 4 substeps), every variable observed with unit
   noise, process noise std 0.1: jtwin's jitted UKF and filterpy's UnscentedKalmanFilter
   (MerweScaledSigmaPoints with the same alpha=1, beta=2, kappa=0) filter the *same* data;
   RMSE (after a 100-step spin-up) and per-step wall time side by side (goal: RMSE within 2%,
   per-step >= 200x faster).
2. Batched throughput: S scenarios x T steps of a UKF on a 4-state nonlinear model (two
   coupled pendulums, two angle-sine measurements; ``jax.vmap`` of ``run_filter``), in
   scenario-steps per second (default 10,000 x 1,000).
3. Per-step cost vs n = 4 ... 128: XLA flop count and wall time of one jitted UKF step
   (via ``jtwin.schedule.measure_step_cost``, fitted ``k n^3``) and the scan-amortised step time.

Times are the best (minimum) of several repeats on both sides, in wall-clock and CPU (process)
seconds: this machine's two cores are shared, and contention inflates single runs by up to 10x;
the 1-minute load average before and after section 1 is recorded with its numbers.
Writes benchmarks/results/estimation_lorenz96.json.

    .venv/bin/python benchmarks/bench_lorenz96.py [--quick]
"""

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from filterpy.kalman import MerweScaledSigmaPoints, UnscentedKalmanFilter

import jtwin  # noqa: F401  (float64)
from jtwin import schedule
from jtwin.estimation import UKF, run_filter
from jtwin.models import FunctionModel
from jtwin.models.library import lorenz96_model

FORCING, DT, SUBSTEPS, Q_STD, R_STD, SPIN_UP = 8.0, 0.05, 4, 0.1, 1.0, 100


def lorenz96_rk4_numpy(x, dt):
    """Reference transition for filterpy: classical RK4 with SUBSTEPS fixed steps (numpy)."""

    def field(x):
        return (np.roll(x, -1) - np.roll(x, 2)) * np.roll(x, 1) - x + FORCING

    h = dt / SUBSTEPS
    for _ in range(SUBSTEPS):
        k1 = field(x)
        k2 = field(x + 0.5 * h * k1)
        k3 = field(x + 0.5 * h * k2)
        k4 = field(x + h * k3)
        x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x


def make_data(model, key, steps, batch=None):
    """A spun-up initial state on the attractor, then ``steps`` noisy steps (truth xs, measurements ys)."""
    n = model.state_dim
    k_init, k_spin, k_sim = jax.random.split(key, 3)

    def one(k):
        a, b, c = jax.random.split(k, 3)
        x0 = FORCING + jax.random.normal(a, (n,))
        spun = model.simulate(b, x0, 500, noise=False).xs[-1]
        return model.simulate(c, spun, steps)

    if batch is None:
        return jax.jit(one)(k_sim)
    return jax.jit(jax.vmap(one))(jax.random.split(k_sim, batch))


def timed(fn, repeats: int) -> tuple[float, float]:
    """Best (minimum) wall and CPU seconds of ``fn()`` (run to completion) over ``repeats`` calls."""
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn())
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return float(np.min(wall)), float(np.min(cpu))


def rmse(means, xs):
    return float(np.sqrt(np.mean((np.asarray(means)[SPIN_UP:] - np.asarray(xs)[SPIN_UP:]) ** 2)))


def accuracy_and_speed(steps: int) -> dict:
    load_before = os.getloadavg()[0]
    model = lorenz96_model(n=40, forcing=FORCING, dt=DT, substeps=SUBSTEPS, q_std=Q_STD, r_std=R_STD)
    traj = make_data(model, jax.random.PRNGKey(0), steps)
    xs, ys = np.asarray(traj.xs), np.asarray(traj.ys)
    mean0 = xs[0] + np.random.default_rng(0).normal(size=40)
    cov0 = np.eye(40)

    # The model's arrays are arguments, as in a serving loop (closed-over constants could be folded).
    params, static = eqx.partition(model, eqx.is_array)
    run = jax.jit(lambda params, ys: run_filter(UKF(), eqx.combine(params, static), mean0, cov0, ys))

    def filt(ys):
        return run(params, ys)

    t0 = time.perf_counter()
    res = jax.block_until_ready(filt(ys))
    compile_s = time.perf_counter() - t0
    jt_wall, jt_cpu = (t / steps for t in timed(lambda: filt(ys), 10))

    # One assimilation step as its own jitted call (update + predict), as a serving loop runs it.
    est = UKF()

    @eqx.filter_jit
    def single(model, belief, y):
        post, info = est.update(model, belief, y, jnp.zeros(0), 0.0)
        return est.predict(model, post, jnp.zeros(0), 0.0), post.mean

    belief = est.init(jnp.asarray(mean0), jnp.asarray(cov0))
    jt_call = timed(lambda: single(model, belief, ys[0]), 50)[0]

    points = MerweScaledSigmaPoints(40, alpha=1.0, beta=2.0, kappa=0.0)
    ukf = UnscentedKalmanFilter(40, 40, DT, lambda x: x, lorenz96_rk4_numpy, points)
    ukf.x, ukf.P, ukf.Q, ukf.R = mean0.copy(), cov0.copy(), np.asarray(model.Q), np.asarray(model.R)
    ukf.sigmas_f = points.sigma_points(ukf.x, ukf.P)
    fp_means, chunk = [], 50
    steps_iter = iter(range(steps))

    def filterpy_chunk():  # the whole sequence is filtered once, timed in chunks of 50 steps
        for _ in range(chunk):
            k = next(steps_iter)
            ukf.update(ys[k])
            fp_means.append(ukf.x.copy())
            ukf.predict()

    fp_wall, fp_cpu = (t / chunk for t in timed(filterpy_chunk, steps // chunk))

    jt_rmse, fp_rmse = rmse(res.means, xs), rmse(fp_means, xs)
    return {
        "load_average_1min_before_after": [load_before, os.getloadavg()[0]],
        "n": 40,
        "steps": steps,
        "rmse_jtwin": jt_rmse,
        "rmse_filterpy": fp_rmse,
        "rmse_ratio_jtwin_over_filterpy": jt_rmse / fp_rmse,
        "max_abs_mean_difference": float(np.max(np.abs(np.asarray(res.means) - np.array(fp_means)))),
        "observation_noise_std": R_STD,
        "per_step_seconds_jtwin_scan": jt_wall,
        "per_step_cpu_seconds_jtwin_scan": jt_cpu,
        "per_step_seconds_jtwin_single_call": jt_call,
        "per_step_seconds_filterpy": fp_wall,
        "per_step_cpu_seconds_filterpy": fp_cpu,
        "speedup_scan_wall": fp_wall / jt_wall,
        "speedup_scan_cpu": fp_cpu / jt_cpu,
        "speedup_single_call_wall": fp_wall / jt_call,
        "compile_seconds": compile_s,
        "rmse_goal_met": jt_rmse <= 1.02 * fp_rmse,
        "speed_goal_met": fp_wall / jt_wall >= 200,
    }


class CoupledPendulums(eqx.Module):
    """Two pendulums coupled by a torsion spring, explicit Euler over dt = 0.05 (4 states)."""

    coupling: jax.Array

    def __call__(self, x, u, t):
        th1, w1, th2, w2 = x
        torque = self.coupling * jnp.sin(th2 - th1)
        return jnp.stack(
            [th1 + 0.05 * w1, w1 + 0.05 * (-9.81 * jnp.sin(th1) + torque),
             th2 + 0.05 * w2, w2 + 0.05 * (-9.81 * jnp.sin(th2) - torque)]
        )


def batched_throughput(scenarios: int, steps: int) -> dict:
    model = FunctionModel(
        CoupledPendulums(jnp.asarray(0.5)), lambda x, u, t: jnp.sin(x[::2]), 1e-4 * np.eye(4), 0.01 * np.eye(2), dt=0.05
    )
    keys = jax.random.split(jax.random.PRNGKey(1), scenarios)
    x0 = jax.vmap(lambda k: jax.random.normal(k, (4,)))(keys)
    traj = jax.jit(jax.vmap(lambda k, x: model.simulate(k, x, steps)))(keys, x0)

    @eqx.filter_jit
    def filt(model, mean0, ys):
        def one(m0, y):
            res = run_filter(UKF(), model, m0, 0.1 * jnp.eye(4), y)
            return res.log_likelihood, res.means[-1]

        return jax.vmap(one)(mean0, ys)

    t0 = time.perf_counter()
    jax.block_until_ready(filt(model, x0, traj.ys))
    compile_and_first = time.perf_counter() - t0
    wall, cpu = timed(lambda: filt(model, x0, traj.ys), 1)
    ll, last = filt(model, x0, traj.ys)
    return {
        "model": "coupled pendulums (4 states, 2 measurements), UKF alpha=1 beta=2 kappa=0",
        "state_dim": 4,
        "scenarios": scenarios,
        "steps": steps,
        "seconds": wall,
        "cpu_seconds": cpu,
        "scenario_steps_per_second": scenarios * steps / wall,
        "scenario_steps_per_cpu_second": scenarios * steps / cpu,
        "first_call_seconds_including_compile": compile_and_first,
        "final_step_rmse": float(jnp.sqrt(jnp.mean((last - traj.xs[:, -1]) ** 2))),
        "all_finite": bool(jnp.all(jnp.isfinite(ll))),
    }


def cost_vs_dimension(ns, steps: int) -> dict:
    def make_step(n):
        # The model's arrays are arguments (not constants XLA could fold); its functions are static.
        step, (model, *rest) = schedule.filter_step(UKF(), lorenz96_model(n=n, q_std=Q_STD, r_std=R_STD))
        params, static = eqx.partition(model, eqx.is_array)
        return (lambda params, *a: step(eqx.combine(params, static), *a)), (params, *rest)

    cost = schedule.measure_step_cost(make_step, ns, repeats=10)
    amortised = []
    for n in ns:
        model = lorenz96_model(n=n, q_std=Q_STD, r_std=R_STD)
        ys = make_data(model, jax.random.PRNGKey(n), steps).ys
        mean0, cov0 = FORCING * jnp.ones(n), jnp.eye(n)
        filt = eqx.filter_jit(lambda model, ys: run_filter(UKF(), model, mean0, cov0, ys).log_likelihood)
        jax.block_until_ready(filt(model, ys))
        amortised.append(timed(lambda: filt(model, ys), 3)[0] / steps)
    return {
        "ns": [int(n) for n in cost.ns],
        "flops_per_step": cost.flops.tolist(),
        "seconds_per_step_single_call": cost.seconds.tolist(),
        "seconds_per_step_scan": amortised,
        "k_fit_flops_over_n3": cost.k,
        "achieved_flops_per_s_at_max_n": cost.flops_per_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and scenarios")
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    steps = 300 if args.quick else 1000
    scenarios, batch_steps = (1000, 200) if args.quick else (10_000, 1000)
    ns = [4, 8, 16, 32, 64] if args.quick else [4, 8, 16, 32, 64, 128]

    results = {
        "benchmark": "UKF on Lorenz-96: jtwin vs filterpy, batched throughput, cost vs n",
        "quick": args.quick,
        "machine": {"platform": platform.platform(), "jax": jax.__version__, "devices": str(jax.devices())},
        "lorenz96_n40": accuracy_and_speed(steps),
    }
    print(json.dumps(results["lorenz96_n40"], indent=2))
    results["batched_throughput"] = batched_throughput(scenarios, batch_steps)
    print(json.dumps(results["batched_throughput"], indent=2))
    results["cost_vs_dimension"] = cost_vs_dimension(ns, 200)
    print(json.dumps(results["cost_vs_dimension"], indent=2))
    out = Path(__file__).parent / "results" / "estimation_lorenz96.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
