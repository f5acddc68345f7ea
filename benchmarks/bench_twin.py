"""Batched closed-loop evaluation: jtwin's building twin vs the same loop written per scenario in Python.

Twin: 3-zone building (6 states, 3 heaters), Kalman filter + MPC over a 24 h horizon with an
energy price (ℓ1), a demand charge (hinge) and a soft comfort band, real January weather,
96 hourly steps, forecast errors and 5% sensor dropouts (``configs/building.toml``).

* jtwin: ``jtwin.simulate.simulate`` — one jitted, vmapped, scanned run over all scenarios.
  Run twice: the config's float64 twin, and the same twin with its MPC in float32
  (``[controller] precision = "float32"``; model and Kalman filter stay float64).
* reference: how users of do-mpc / python-control write it — a Python loop per scenario with
  filterpy's ``KalmanFilter`` and OSQP on the MPC's sparse QP (built independently below with
  scipy.sparse; ``q, l, u`` updated and warm started every step), timed on a sample of
  scenarios and extrapolated linearly (its cost is per scenario-step).  Timed twice, with
  OSQP's defaults and with ρ tuned for this QP (ρ₀ = 0.01, adaptive tolerance 2); the
  speedup is reported against the faster of the two.

Both loops see the same plant, noise and forecasts; the first scenarios' inputs are compared.

    .venv/bin/python benchmarks/bench_twin.py [--scenarios 10000] [--ref-scenarios 8] [--steps 96]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import osqp
import scipy.linalg
import scipy.sparse as sp
from filterpy.kalman import KalmanFilter

import jtwin as jt
from jtwin.config import load_config
from jtwin.models.library import load_tmy3_greensboro
from jtwin.run import build_twin
from jtwin.simulate import make_scenarios, scenario_noise, simulate

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "twin_building.json"


def sparse_mpc(model, c, N):
    """OSQP data of the building MPC, written independently of jtwin (z = [x_1..x_N, u_0..u_{N-1}, h, s]).

    J = Σ_{t=1}^{N-1} (x_t−r)ᵀQ(x_t−r) + (x_N−r)ᵀQ_N(x_N−r) + Σ_t u_tᵀRu_t + α Σ u_t (u ≥ 0)
        + β Σ_t h_t + w Σ s  with  h_t ≥ 0, h_t ≥ 1ᵀu_t − ρ,  xmin − s ≤ T x_t ≤ xmax + s, s ≥ 0.
    Returns (P, q_fn, A, l_fn, u_fn) where the *_fn take (x0, d [N, p]).
    """
    A, B, E, H = (np.asarray(a) for a in (model.A, model.B, model.E, model.H))
    n, m = B.shape
    meas = np.flatnonzero(np.any(H != 0, axis=0))
    k = meas.size
    Q = np.diag(np.where(np.isin(np.arange(n), meas), c.q, 0.0))
    R = c.r * np.eye(m)
    QN = scipy.linalg.solve_discrete_are(A, B, Q, R)
    r = np.where(np.isin(np.arange(n), meas), c.setpoint, 0.0)
    nx, nu, nh, ns = N * n, N * m, N, N * k
    nz = nx + nu + nh + ns
    P = sp.block_diag([sp.kron(sp.eye(N - 1), 2 * Q), 2 * QN, sp.kron(sp.eye(N), 2 * R), sp.csc_matrix((nh + ns, nh + ns))])
    q_fixed = np.concatenate([np.zeros(nx), c.alpha * np.ones(nu), c.beta * np.ones(nh), c.soft_penalty * np.ones(ns)])
    q_x = np.concatenate([np.tile(-2 * Q @ r, N - 1), -2 * QN @ r])
    # dynamics: x_{t+1} − A x_t − B u_t = E d_t (+ A x_0 for t = 0)
    Ax = sp.eye(nx) - sp.kron(sp.eye(N, k=-1), A)
    Au = -sp.kron(sp.eye(N), B)
    dyn = sp.hstack([Ax, Au, sp.csc_matrix((nx, nh + ns))])
    ubox = sp.hstack([sp.csc_matrix((nu, nx)), sp.eye(nu), sp.csc_matrix((nu, nh + ns))])
    hinge = sp.hstack([sp.csc_matrix((nh, nx)), -sp.kron(sp.eye(N), np.ones((1, m))), sp.eye(nh), sp.csc_matrix((nh, ns))])
    hpos = sp.hstack([sp.csc_matrix((nh, nx + nu)), sp.eye(nh), sp.csc_matrix((nh, ns))])
    T = sp.kron(sp.eye(N), sp.csr_matrix((np.ones(k), (np.arange(k), meas)), shape=(k, n)))
    band_hi = sp.hstack([T, sp.csc_matrix((ns, nu + nh)), -sp.eye(ns)])
    band_lo = sp.hstack([T, sp.csc_matrix((ns, nu + nh)), sp.eye(ns)])
    spos = sp.hstack([sp.csc_matrix((ns, nx + nu + nh)), sp.eye(ns)])
    Aqp = sp.vstack([dyn, ubox, hinge, hpos, band_hi, band_lo, spos]).tocsc()
    inf = np.inf

    def bounds(x0, d):
        beq = (d @ E.T).ravel()
        beq[:n] += A @ x0
        lo = np.concatenate([beq, np.full(nu, c.umin), np.full(nh, -c.rho), np.zeros(nh), np.full(ns, -inf), np.full(ns, c.xmin), np.zeros(ns)])
        hi = np.concatenate([beq, np.full(nu, c.umax), np.full(nh, inf), np.full(nh, inf), np.full(ns, c.xmax), np.full(ns, inf), np.full(ns, inf)])
        return lo, hi

    return P.tocsc(), np.concatenate([q_x, np.zeros(nu + nh + ns)]) + q_fixed, Aqp, bounds, nx, m


def reference_loop(model, cfg, scen, noise, steps, cov0, **osqp_settings):
    """One scenario, the Python way: filterpy KF + OSQP warm-started; returns inputs [steps, m].

    ``noise``: the scenario's (w, v, dropped) for every step, drawn beforehand (numpy), so the
    loop is timed without JAX calls."""
    c = cfg.controller
    N = c.horizon
    P, q, Aqp, bounds, nx, m = sparse_mpc(model, c, N)
    A, B, E, H = (np.asarray(a) for a in (model.A, model.B, model.E, model.H))
    kf = KalmanFilter(dim_x=A.shape[0], dim_z=H.shape[0], dim_u=B.shape[1] + E.shape[1])
    kf.x, kf.P = np.asarray(scen.mean0, float).copy(), cov0.copy()
    kf.F, kf.B, kf.H, kf.Q, kf.R = A, np.hstack([B, E]), H, np.asarray(model.Q), np.asarray(model.R)
    solver = osqp.OSQP()
    lo, hi = bounds(kf.x, np.zeros((N, E.shape[1])))
    solver.setup(
        P, q, Aqp, lo, hi, eps_abs=c.eps, eps_rel=c.eps, max_iter=c.max_iter, verbose=False, polishing=False,
        **osqp_settings,
    )  # fmt: skip
    x = np.asarray(scen.x0, float)
    d_true = np.asarray(scen.d)
    forecast_all = d_true + np.asarray(scen.forecast_error)
    us = []
    for k in range(steps):
        w, v, dropped = (a[k] for a in noise)
        y = H @ x + v
        if not dropped.all():  # filterpy updates all rows: drop the missing ones by hand
            keep = ~dropped
            kf.dim_z = int(keep.sum())
            kf.update(y[keep], R=np.asarray(model.R)[np.ix_(keep, keep)], H=H[keep])
            kf.dim_z = H.shape[0]
        forecast = forecast_all[k : k + N].copy()
        forecast[0] = d_true[k]
        lo, hi = bounds(kf.x, forecast)
        solver.update(l=lo, u=hi)
        res = solver.solve()
        u = res.x[nx : nx + m]
        us.append(u)
        kf.predict(u=np.concatenate([u, d_true[k]]))
        x = A @ x + B @ u + E @ d_true[k] + w
    return np.array(us)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", type=int, default=10_000)
    ap.add_argument("--ref-scenarios", type=int, default=8)
    ap.add_argument("--steps", type=int, default=96)
    ap.add_argument("--chunk", type=int, default=24)
    args = ap.parse_args()

    cfg = load_config(ROOT / "configs" / "building.toml")
    model = cfg.plant.build()
    twin = build_twin(cfg, model)
    N, n = twin.horizon, model.state_dim
    d = load_tmy3_greensboro().disturbances(cfg.weather.start_hour, args.steps + N, model.dt)
    sim = cfg.simulation
    batch = make_scenarios(
        jax.random.PRNGKey(sim.seed), args.scenarios, jnp.asarray(sim.x0), jnp.asarray(d), model.input_dim,
        x0_std=sim.x0_std, forecast_std=np.asarray(sim.forecast_std), dropout=sim.dropout,
    )  # fmt: skip
    cov0 = cfg.estimator.cov0 * np.eye(n)

    def timed(tw):
        """Compile (one chunk on the same batch, excluded), then time the whole run."""
        jax.block_until_ready(simulate(model, tw, batch, args.chunk, cov0, chunk=args.chunk).x)
        start = time.perf_counter()
        result = simulate(model, tw, batch, args.steps, cov0, chunk=args.chunk, progress=True)
        jax.block_until_ready(result.x)
        return result, time.perf_counter() - start

    out, t_jtwin = timed(twin)
    jtwin_rate = args.scenarios * args.steps / t_jtwin
    twin32 = twin.with_controller_dtype(jnp.float32)  # [controller] precision = "float32"
    out32, t_32 = timed(twin32)

    scens = [jax.tree_util.tree_map(lambda a: np.asarray(a[i]), batch) for i in range(args.ref_scenarios)]
    draw = jax.jit(jax.vmap(lambda s, k: scenario_noise(model, s, k), in_axes=(None, 0)))
    noises = [tuple(np.asarray(a) for a in draw(s, jnp.arange(args.steps))) for s in scens]

    def reference(**osqp_settings):
        start = time.perf_counter()
        diffs = []
        for i, (scen, noise) in enumerate(zip(scens, noises)):
            u_ref = reference_loop(model, cfg, scen, noise, args.steps, cov0, **osqp_settings)
            diffs.append(float(np.max(np.abs(u_ref - np.asarray(out.u[i])))))
        return time.perf_counter() - start, diffs

    t_ref, diffs = reference()  # OSQP's defaults, as users write it
    # OSQP's rho tuned for this QP (its adaptive rule parks rho near 0.1 here; 0.01 is ~3x faster)
    t_tuned, _ = reference(rho=0.01, adaptive_rho_tolerance=2.0)
    ref_rate = args.ref_scenarios * args.steps / min(t_ref, t_tuned)  # the faster reference
    kpis = jt.kpi.summarize(jt.kpi.scenario_kpis(out, twin.controller, model.dt))
    kpis32 = jt.kpi.summarize(jt.kpi.scenario_kpis(out32, twin32.controller, model.dt))
    compared = ("tracking_rmse", "energy", "peak_demand", "violation_magnitude", "solver_failures")
    result = {
        "benchmark": "building twin closed loop (KF + MPC horizon 24), jtwin batched vs Python loop (filterpy + OSQP)",
        "scenarios": args.scenarios,
        "steps": args.steps,
        "jtwin_seconds": t_jtwin,
        "jtwin_scenario_steps_per_s": jtwin_rate,
        "reference_scenarios_timed": args.ref_scenarios,
        "reference_seconds": t_ref,
        "reference_osqp_rho_0.01_seconds": t_tuned,
        "reference_scenario_steps_per_s": ref_rate,
        "reference_extrapolated_seconds": args.scenarios * args.steps / ref_rate,
        "speedup": jtwin_rate / ref_rate,
        "max_abs_u_difference_first_scenarios": max(diffs),
        "solver_failures": kpis["solver_failures"]["mean"],
        "float32_controller": {
            "jtwin_seconds": t_32,
            "jtwin_scenario_steps_per_s": args.scenarios * args.steps / t_32,
            "speedup": args.scenarios * args.steps / t_32 / ref_rate,
            "max_abs_u_difference_vs_float64_twin": float(np.max(np.abs(np.asarray(out32.u) - np.asarray(out.u)))),
            "mean_kpis": {k: float(kpis32[k]["mean"]) for k in compared},
            "float64_mean_kpis": {k: float(kpis[k]["mean"]) for k in compared},
        },
        "machine": f"{platform.machine()}, {jax.device_count()} {jax.devices()[0].platform} device(s)",
        "jax": jax.__version__,
    }
    print(json.dumps(result, indent=2))
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
