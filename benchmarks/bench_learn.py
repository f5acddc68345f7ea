"""Fitting time and accuracy: ``jtwin.learn.fit`` (optax L-BFGS, autodiff gradients) vs
``scipy.optimize.minimize`` (L-BFGS-B, finite-difference gradients) on the same likelihood.

Problems: the building with 1 and 3 zones (15-min samples, 10% missing), MLE of (C_air, C_wall,
R_aw) per zone (P = 3 and 9 parameters) through the Kalman filter; both minimise the same jitted negative log-likelihood per
measurement from the same start.  Reported: wall time (jtwin cold = incl. compilation, warm
= a second fit on another log of the same shape), objective evaluations, final loss, relative
parameter error against the truth, and the ratios scipy / jtwin.

    .venv/bin/python benchmarks/bench_learn.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

import jtwin  # noqa: F401  (float64)
from jtwin.learn import fit, make_problem, synthetic_log
from jtwin.learn.params import flatten
from jtwin.models.library import BuildingRC, load_tmy3_greensboro

DT = 0.25
TRAINABLE = ("log_c_air", "log_c_wall", "log_r_aw")


def to_model(p):
    return p.to_linear(DT, 0.02, 0.1)


def make_log(seed: int, steps: int, zones: int):
    rng = np.random.default_rng(seed)
    ds = load_tmy3_greensboro().disturbances(0, steps, DT)
    us = np.repeat(rng.choice([0.0, 6.0], (steps // 4 + 1, zones)), 4, axis=0)[:steps]
    x0 = jnp.full(2 * zones, 15.0)
    return synthetic_log(to_model(BuildingRC(zones)), jax.random.PRNGKey(seed), x0, us, ds, dropout=0.1)


def run_jtwin(init, log):
    start = time.perf_counter()
    res = fit(init, log, mean0=jnp.full(2 * init.zones, 15.0), to_model=to_model, trainable=TRAINABLE, hessian="gradient", progress=False)
    elapsed = time.perf_counter() - start
    return res, elapsed


def run_scipy(init, log):
    problem, theta = make_problem(init, log, mean0=jnp.full(2 * init.zones, 15.0), to_model=to_model, trainable=TRAINABLE)
    flat, unflatten = flatten(theta)
    loss = jax.jit(lambda z: problem.loss(unflatten(z)))
    loss(flat).block_until_ready()  # compile outside the timing
    start = time.perf_counter()
    out = scipy.optimize.minimize(lambda z: float(loss(jnp.asarray(z))), np.asarray(flat), method="L-BFGS-B",
                                  options=dict(maxiter=500, ftol=1e-12, gtol=1e-7))
    return out, time.perf_counter() - start


def bench_case(zones: int, steps: int) -> dict:
    """Fit one building size with both optimisers; the record of times, losses and errors."""
    truth = np.tile(np.log([1.0, 10.0, 0.5])[:, None], (1, zones)).ravel()  # scalar_names order: kind, then zone
    init = BuildingRC(zones, c_air=1.3, c_wall=7.0, r_aw=0.7)
    _, cold = run_jtwin(init, make_log(1, steps, zones))
    log = make_log(2, steps, zones)
    res, warm = run_jtwin(init, log)
    sp, sp_time = run_scipy(init, log)
    jt_est, sp_est = res.laplace.estimate, sp.x
    return dict(
        problem=f"building {zones} zone(s), {steps} samples (dt {DT} h, 10% missing), MLE of C_air, C_wall, R_aw via the KF",
        parameters=int(truth.size),
        jtwin=dict(
            optimizer="optax L-BFGS (zoom line search), autodiff gradients",
            cold_s=cold, warm_s=warm, epochs=res.epochs, status=res.status,
            final_loss=float(res.train_loss[-1]),
            max_rel_error_vs_truth=float(np.max(np.abs(np.exp(jt_est - truth) - 1))),
        ),
        scipy=dict(
            optimizer="scipy L-BFGS-B, finite-difference gradients (same jitted loss)",
            time_s=sp_time, nfev=int(sp.nfev), nit=int(sp.nit), success=bool(sp.success),
            final_loss=float(sp.fun),
            max_rel_error_vs_truth=float(np.max(np.abs(np.exp(sp_est - truth) - 1))),
        ),
        ratio_time_scipy_over_jtwin_warm=sp_time / warm,
        final_loss_difference_scipy_minus_jtwin=float(sp.fun - res.train_loss[-1]),
        max_abs_parameter_difference=float(np.max(np.abs(sp_est - jt_est))),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter logs")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "learn.json"))
    args = parser.parse_args()
    steps = 1000 if args.quick else 4000
    cases = [bench_case(zones, steps) for zones in (1, 3)]
    record = dict(
        cases=cases,
        note="jtwin warm time includes the Laplace Hessian (2P gradient evaluations); scipy's does not",
        platform=dict(jax=jax.__version__, device=str(jax.devices()[0]), python=platform.python_version()),
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2))
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
