"""UKF on Lorenz-96: jtwin (library model and a user-written model) vs filterpy, batched throughput, cost vs n.

1. Lorenz-96, n = 40, F = 8, dt = 0.05 (RK4, 4 substeps), every variable observed with unit
   noise, process noise std 0.1: jtwin's jitted UKF on the library's ``lorenz96_model`` (an
   ``ODEModel``), on the same RK4 step written as a user writes it (a plain function with
   ``jnp.roll`` and four unrolled substeps, in a ``FunctionModel``) and filterpy's
   UnscentedKalmanFilter (MerweScaledSigmaPoints with the same alpha=1, beta=2, kappa=0) filter
   the *same* data; RMSE (after a 100-step spin-up) and per-step wall time side by side (goals:
   RMSE within 2% of filterpy's, per-step >= 200x faster for both models, the user model within
   1.3x of the library model).
2. Batched throughput: S scenarios x T steps of a UKF on a 4-state nonlinear model (two
   coupled pendulums, two angle-sine measurements; ``jax.vmap`` of ``run_filter``), in
   scenario-steps per second (default 10,000 x 1,000).
3. Per-step cost vs n = 4 ... 128: XLA flop count and wall time of one jitted UKF step
   (via ``jtwin.schedule.measure_step_cost``, fitted ``k n^3``) and the scan-amortised step time.
4. The user model vs the library model and filterpy at n = 10, 40, 160: XLA flops of one UKF
   step with the user model (the arithmetic both models run; XLA counts a loop body once, so
   its count for the library model's stage loop is lower than what runs) and the per-step times.
5. The same for the EKF (Jacobians of the user's function) and a vmapped UKF over 32 scenarios at
   n = 40: library model, user model, and the user model with staging disabled (the slow path
   of issue #21), per step.

Times are the best (minimum) of several repeats on both sides, in wall-clock and CPU (process)
seconds, jtwin's models timed alternately: this machine's two cores are shared, and contention
inflates single runs by up to 10x; the 1-minute load average before and after section 1 is
recorded with its numbers.  Writes benchmarks/results/estimation_lorenz96.json (all sections)
or benchmarks/results/lorenz96_<sections>.json (``--sections``).

    .venv/bin/python benchmarks/bench_lorenz96.py [--quick] [--sections n40 scaling ekf_batched]
"""

import argparse
import contextlib
import json
import os
import platform
import time
import warnings
from pathlib import Path
from unittest import mock

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from filterpy.kalman import MerweScaledSigmaPoints, UnscentedKalmanFilter

import jtwin  # noqa: F401  (float64)
from jtwin import schedule
from jtwin.estimation import EKF, UKF, extended, run_filter, unscented
from jtwin.models import FunctionModel
from jtwin.models.library import lorenz96_model

FORCING, DT, SUBSTEPS, Q_STD, R_STD, SPIN_UP = 8.0, 0.05, 4, 0.1, 1.0, 100


def lorenz96_rk4(x, xp=np):
    """One sample period of Lorenz-96 as a user writes it: classical RK4, SUBSTEPS unrolled steps of a
    field built from ``roll`` (``xp`` = numpy for filterpy, ``jax.numpy`` for the FunctionModel)."""

    def field(x):
        return (xp.roll(x, -1) - xp.roll(x, 2)) * xp.roll(x, 1) - x + FORCING

    h = DT / SUBSTEPS
    for _ in range(SUBSTEPS):
        k1 = field(x)
        k2 = field(x + 0.5 * h * k1)
        k3 = field(x + 0.5 * h * k2)
        k4 = field(x + h * k3)
        x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x


def user_model(n: int) -> FunctionModel:
    """Lorenz-96 as a user's ``FunctionModel`` (:func:`lorenz96_rk4` in jax.numpy), noise as ``lorenz96_model``."""
    return FunctionModel(
        lambda x, u, t: lorenz96_rk4(x, jnp), lambda x, u, t: x, Q_STD**2 * np.eye(n), R_STD**2 * np.eye(n), dt=DT
    )


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
    return timed_alternately([fn], repeats)[0]


def timed_alternately(fns, repeats: int) -> list[tuple[float, float]]:
    """Best wall and CPU seconds of each of ``fns``, called in turn ``repeats`` times (so load spikes hit all)."""
    wall, cpu = np.full((len(fns), repeats), np.inf), np.full((len(fns), repeats), np.inf)
    for r in range(repeats):
        for i, fn in enumerate(fns):
            w, c = time.perf_counter(), time.process_time()
            jax.block_until_ready(fn())
            wall[i, r], cpu[i, r] = time.perf_counter() - w, time.process_time() - c
    return [(float(w), float(c)) for w, c in zip(wall.min(axis=1), cpu.min(axis=1))]


def rmse(means, xs):
    return float(np.sqrt(np.mean((np.asarray(means)[SPIN_UP:] - np.asarray(xs)[SPIN_UP:]) ** 2)))


def scan_filter(model, mean0, cov0):
    """``ys -> FilterResult``: jtwin's UKF over a sequence, jitted with the model's arrays as arguments
    (as in a serving loop; closed-over constants could be folded)."""
    params, static = eqx.partition(model, eqx.is_array)
    run = jax.jit(lambda params, ys: run_filter(UKF(), eqx.combine(params, static), mean0, cov0, ys))
    return lambda ys: run(params, ys)


def filterpy_filter(model, mean0, cov0, ys, chunk: int) -> tuple[np.ndarray, float, float]:
    """filterpy's UKF over ``ys`` (update with ys[k], then predict), timed in chunks of ``chunk`` steps:
    ``(filtered means, best wall and CPU seconds per step)``."""
    n = model.state_dim
    points = MerweScaledSigmaPoints(n, alpha=1.0, beta=2.0, kappa=0.0)
    ukf = UnscentedKalmanFilter(n, model.output_dim, DT, lambda x: x, lambda x, dt: lorenz96_rk4(x, np), points)
    ukf.x, ukf.P, ukf.Q, ukf.R = mean0.copy(), cov0.copy(), np.asarray(model.Q), np.asarray(model.R)
    ukf.sigmas_f = points.sigma_points(ukf.x, ukf.P)
    means, steps_iter = [], iter(range(len(ys)))

    def filterpy_chunk():  # the whole sequence is filtered once, timed in chunks
        for _ in range(chunk):
            k = next(steps_iter)
            ukf.update(ys[k])
            means.append(ukf.x.copy())
            ukf.predict()

    wall, cpu = (t / chunk for t in timed(filterpy_chunk, len(ys) // chunk))
    return np.array(means), wall, cpu


def assimilation_step(model, mean, cov, y):
    """``(fn, args)``: one assimilation step (UKF update with ``y``, then predict) as a serving loop runs it,
    the model's arrays an argument; ``fn(*args)`` returns the predicted mean and covariance."""
    est, (params, static) = UKF(), eqx.partition(model, eqx.is_array)

    def fn(params, mean, cov, y):
        model = eqx.combine(params, static)
        post, _ = est.update(model, est.init(mean, cov), y, jnp.zeros(0), 0.0)
        prior = est.predict(model, post, jnp.zeros(0), 0.0)
        return prior.mean, prior.cov

    return fn, (params, jnp.asarray(mean), jnp.asarray(cov), jnp.asarray(y))


def accuracy_and_speed(steps: int) -> dict:
    load_before = os.getloadavg()[0]
    model = lorenz96_model(n=40, forcing=FORCING, dt=DT, substeps=SUBSTEPS, q_std=Q_STD, r_std=R_STD)
    traj = make_data(model, jax.random.PRNGKey(0), steps)
    xs, ys = np.asarray(traj.xs), np.asarray(traj.ys)
    mean0 = xs[0] + np.random.default_rng(0).normal(size=40)
    cov0 = np.eye(40)

    filters = {"library": scan_filter(model, mean0, cov0), "user": scan_filter(user_model(40), mean0, cov0)}
    results, compile_s = {}, {}
    for name, filt in filters.items():
        t0 = time.perf_counter()
        results[name] = jax.block_until_ready(filt(ys))
        compile_s[name] = time.perf_counter() - t0
    (lib_wall, lib_cpu), (user_wall, user_cpu) = (
        (w / steps, c / steps) for w, c in timed_alternately([lambda f=f: f(ys) for f in filters.values()], 10)
    )

    step, step_args = assimilation_step(model, mean0, cov0, ys[0])
    step = jax.jit(step)
    jt_call = timed(lambda: step(*step_args), 50)[0]

    fp_means, fp_wall, fp_cpu = filterpy_filter(model, mean0, cov0, ys, chunk=50)
    lib_rmse, user_rmse, fp_rmse = rmse(results["library"].means, xs), rmse(results["user"].means, xs), rmse(fp_means, xs)
    return {
        "load_average_1min_before_after": [load_before, os.getloadavg()[0]],
        "n": 40,
        "steps": steps,
        "rmse_jtwin": lib_rmse,
        "rmse_jtwin_user_model": user_rmse,
        "rmse_filterpy": fp_rmse,
        "rmse_ratio_jtwin_over_filterpy": lib_rmse / fp_rmse,
        "rmse_ratio_user_model_over_filterpy": user_rmse / fp_rmse,
        "max_abs_mean_difference": float(np.max(np.abs(np.asarray(results["library"].means) - fp_means))),
        "max_abs_mean_difference_user_model_vs_filterpy": float(np.max(np.abs(np.asarray(results["user"].means) - fp_means))),
        "max_abs_mean_difference_user_vs_library_model": float(
            np.max(np.abs(np.asarray(results["user"].means) - np.asarray(results["library"].means)))
        ),
        "observation_noise_std": R_STD,
        "per_step_seconds_jtwin_scan": lib_wall,
        "per_step_cpu_seconds_jtwin_scan": lib_cpu,
        "per_step_seconds_user_model_scan": user_wall,
        "per_step_cpu_seconds_user_model_scan": user_cpu,
        "per_step_seconds_jtwin_single_call": jt_call,
        "per_step_seconds_filterpy": fp_wall,
        "per_step_cpu_seconds_filterpy": fp_cpu,
        "speedup_scan_wall": fp_wall / lib_wall,
        "speedup_scan_cpu": fp_cpu / lib_cpu,
        "speedup_user_model_scan_wall": fp_wall / user_wall,
        "speedup_user_model_scan_cpu": fp_cpu / user_cpu,
        "user_over_library_model_time_wall": user_wall / lib_wall,
        "user_over_library_model_time_cpu": user_cpu / lib_cpu,
        "speedup_single_call_wall": fp_wall / jt_call,
        "compile_seconds": compile_s["library"],
        "compile_seconds_user_model": compile_s["user"],
        "rmse_goal_met": max(lib_rmse, user_rmse) <= 1.02 * fp_rmse,
        "speed_goal_met": fp_wall / lib_wall >= 200,
        "user_model_speed_goal_met": fp_wall / user_wall >= 200 and user_wall <= 1.3 * lib_wall,
    }


def user_model_vs_dimension(ns, steps: int) -> dict:
    """Section 4: per-step flops and times of the user model, the library model and filterpy at each n."""
    rows = []
    for n in ns:
        model, user = lorenz96_model(n=n, q_std=Q_STD, r_std=R_STD), user_model(n)
        traj = make_data(model, jax.random.PRNGKey(n), steps)
        ys, mean0, cov0 = np.asarray(traj.ys), np.asarray(traj.xs[0]) + 1.0, np.eye(n)
        filters = [scan_filter(m, mean0, cov0) for m in (model, user)]
        for filt in filters:
            jax.block_until_ready(filt(ys))
        (lib_wall, _), (user_wall, _) = ((w / steps, c / steps) for w, c in timed_alternately(
            [lambda f=f: f(ys) for f in filters], 5))
        step, args = assimilation_step(user, mean0, cov0, ys[0])
        flops = schedule.xla_flops(jax.jit(step).lower(*args).compile())
        fp_steps = min(steps, 20 if n > 100 else 100)
        _, fp_wall, _ = filterpy_filter(model, mean0, cov0, ys[:fp_steps], chunk=10)
        rows.append({
            "n": n,
            "flops_per_step_user_model": flops,
            "per_step_seconds_user_model_scan": user_wall,
            "per_step_seconds_library_model_scan": lib_wall,
            "per_step_seconds_filterpy": fp_wall,
            "achieved_flops_per_s_user_model": flops / user_wall,
            "user_over_library_model_time": user_wall / lib_wall,
            "speedup_user_model_over_filterpy": fp_wall / user_wall,
            "speedup_library_model_over_filterpy": fp_wall / lib_wall,
        })
    return {"steps": steps, "rows": rows}


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


@contextlib.contextmanager
def staging_disabled():
    """The filters' model calls without :func:`jtwin.estimation.staging.staged` (what issue #21 measured)."""
    with mock.patch.object(extended, "staged", lambda fn: fn), mock.patch.object(unscented, "staged", lambda fn: fn):
        yield


def ekf_and_batched(steps: int, scenarios: int) -> dict:
    """Section 5: the EKF (Jacobians of the model) and a vmapped UKF (``scenarios`` sequences) on Lorenz-96
    n = 40 with the library model, the user model, and the user model with staging disabled; per-step
    (per scenario-step for the batch) best wall seconds, timed alternately, and the largest difference
    of the filtered means from the library model's."""
    n = 40
    model, user = lorenz96_model(n=n, forcing=FORCING, dt=DT, substeps=SUBSTEPS, q_std=Q_STD, r_std=R_STD), user_model(n)
    single = make_data(model, jax.random.PRNGKey(5), steps)
    batch = make_data(model, jax.random.PRNGKey(6), steps, batch=scenarios)
    mean0, cov0 = np.asarray(single.xs[0]) + 1.0, np.eye(n)
    means0 = np.asarray(batch.xs[:, 0]) + 1.0

    def ekf(m):
        params, static = eqx.partition(m, eqx.is_array)
        run = jax.jit(lambda params, ys: run_filter(EKF(), eqx.combine(params, static), mean0, cov0, ys).means)
        return lambda: run(params, single.ys)

    def vmapped(m):
        params, static = eqx.partition(m, eqx.is_array)
        one = lambda params, m0, ys: run_filter(UKF(), eqx.combine(params, static), m0, cov0, ys).means  # noqa: E731
        run = jax.jit(jax.vmap(one, in_axes=(None, 0, 0)))
        return lambda: run(params, means0, batch.ys)

    out = {"n": n, "steps": steps, "scenarios": scenarios, "load_average_1min_before": os.getloadavg()[0]}
    for name, make, per in (("ekf", ekf, steps), ("batched_ukf", vmapped, steps * scenarios)):
        fns = {"library": make(model), "user": make(user)}
        with staging_disabled():
            fns["user_unstaged"] = make(user)
            unstaged_means = jax.block_until_ready(fns["user_unstaged"]())  # compiled without staging
        means = {k: np.asarray(jax.block_until_ready(f())) for k, f in fns.items() if k != "user_unstaged"}
        times = dict(zip(fns, (w / per for w, _ in timed_alternately(list(fns.values()), 5))))
        out[name] = {
            "seconds_per_step_library_model": times["library"],
            "seconds_per_step_user_model": times["user"],
            "seconds_per_step_user_model_unstaged": times["user_unstaged"],
            "user_over_library_model_time": times["user"] / times["library"],
            "unstaged_over_staged_user_model_time": times["user_unstaged"] / times["user"],
            "max_abs_mean_difference_user_vs_library": float(np.max(np.abs(means["user"] - means["library"]))),
            "max_abs_mean_difference_unstaged_vs_library": float(np.max(np.abs(np.asarray(unstaged_means) - means["library"]))),
        }
    out["load_average_1min_after"] = os.getloadavg()[0]
    return out


SECTIONS = ("n40", "batched", "dimension", "scaling", "ekf_batched")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and scenarios")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections to run")
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    steps = 300 if args.quick else 1000
    scenarios, batch_steps = (1000, 200) if args.quick else (10_000, 1000)
    ns = [4, 8, 16, 32, 64] if args.quick else [4, 8, 16, 32, 64, 128]

    results = {
        "benchmark": "UKF on Lorenz-96: jtwin (library and user-written model) vs filterpy, batched throughput, cost vs n",
        "quick": args.quick,
        "machine": {"platform": platform.platform(), "jax": jax.__version__, "devices": str(jax.devices())},
    }
    sections = {
        "n40": ("lorenz96_n40", lambda: accuracy_and_speed(steps)),
        "batched": ("batched_throughput", lambda: batched_throughput(scenarios, batch_steps)),
        "dimension": ("cost_vs_dimension", lambda: cost_vs_dimension(ns, 200)),
        "scaling": ("user_model_vs_dimension", lambda: user_model_vs_dimension([10, 40, 160], 200)),
        "ekf_batched": ("ekf_and_batched_user_model", lambda: ekf_and_batched(100 if args.quick else 500, 8 if args.quick else 32)),
    }
    for section in args.sections:
        key, run = sections[section]
        results[key] = run()
        print(json.dumps(results[key], indent=2))
    name = "estimation_lorenz96" if set(args.sections) == set(SECTIONS) else "lorenz96_" + "_".join(args.sections)
    out = Path(__file__).parent / "results" / f"{name}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
