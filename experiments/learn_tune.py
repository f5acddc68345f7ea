"""Closed-loop tuning of a mismatched twin's MPC weights (``jtwin.learn.tune``), judged on held-out scenarios.

Plant: two masses coupled by a spring (4 states, force on the first mass, both positions
measured, a disturbance force on the second), discretised exactly at dt = 0.2.  The twin
(Kalman filter + MPC, horizon 10, |u| <= 2) predicts with a spring 40% too stiff and starts
from badly chosen weights (R = 5: sluggish).  The closed-loop KPI is the mean over scenarios
and samples of ``(x1 − 1)² + (x3 − 0.5)² + 0.01 u²``.

``tune`` adjusts log diag Q and log diag R by Adam on the gradient through plant, filter and
MPC (implicit QP derivatives) over 32 training scenarios, keeps the weights with the best loss
on 32 validation scenarios, and the result is reported on 128 *test* scenarios with other
noise, forecast errors and initial states that tuning never saw.

    .venv/bin/python experiments/learn_tune.py [--steps 60]
"""

from __future__ import annotations

import argparse

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jtwin as jt
from jtwin.learn import TrackingCost, TuneProblem, TwinParameters, tune
from jtwin.simulate import make_scenarios
from jtwin.twin import Twin

SAMPLES, HORIZON, DT = 40, 10, 0.2
XREF = np.array([1.0, 0.0, 0.5, 0.0])
COV0 = 0.05 * np.eye(4)


def two_masses(k: float) -> jt.models.LinearModel:
    """Spring constant ``k`` between the masses; damping 0.1; noise std 0.01 (process), 0.05 (sensors)."""
    Ac = np.array([[0, 1, 0, 0], [-k, -0.1, k, 0], [0, 0, 0, 1], [k, 0, -k, -0.1]], float)
    Bc, Ec = np.array([[0], [1.0], [0], [0]]), np.array([[0], [0], [0], [0.5]])
    H = np.array([[1.0, 0, 0, 0], [0, 0, 1.0, 0]])
    return jt.models.LinearModel.from_continuous(Ac, Bc, H, 1e-4 * np.eye(4), 2.5e-3 * np.eye(2), DT, Ec=Ec)


def scenarios(seed: int, count: int, x0) -> jt.simulate.Scenario:
    d = 0.3 * np.sin(np.arange(SAMPLES + HORIZON) / 4.0 + seed)[:, None]
    x0 = jnp.asarray(x0, float)
    return make_scenarios(jax.random.PRNGKey(seed), count, x0, jnp.asarray(d), 1, x0_std=0.3, forecast_std=0.1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=60, help="optimiser steps")
    args = ap.parse_args()

    plant = two_masses(1.0)
    twin = Twin.from_linear_model(
        two_masses(1.4), jt.estimation.KF(), HORIZON, Q=np.eye(4), R=5.0 * np.eye(1), xref=XREF,
        umin=-2.0, umax=2.0, eps_abs=1e-6, eps_rel=1e-6,
    )  # fmt: skip
    objective = TrackingCost(XREF, q=[1.0, 0.0, 1.0, 0.0], r=0.01)
    train, validation, test = scenarios(0, 32, np.zeros(4)), scenarios(1, 32, np.zeros(4)), scenarios(2, 128, [-0.5, 0, 0.5, 0])

    result = tune(
        twin, plant, train, objective, ("controller.Q", "controller.R"), samples=SAMPLES, cov0=COV0,
        optimizer=optax.adam(0.1), steps=args.steps, validation=validation, chunk=8,
    )  # fmt: skip
    print(result.summary())

    def test_kpi(t: Twin) -> tuple[float, float]:
        params = TwinParameters.select(t, ("controller.Q", "controller.R"))
        problem = TuneProblem(params, plant, jnp.asarray(COV0), objective, SAMPLES, None)
        value, unsolved = eqx.filter_jit(problem.loss)(params.initial(), test)
        return float(value), float(unsolved)

    (before, u0), (after, u1) = test_kpi(twin), test_kpi(result.twin)
    i = result.best_step
    print(f"{'KPI':<28}{'before':>10}{'after':>10}{'change':>9}")
    for name, a, b in (
        ("training (32 scenarios)", result.train_loss[0], result.train_loss[i]),
        ("validation (32)", result.validation_loss[0], result.validation_loss[i]),
        ("held-out test (128)", before, after),
    ):
        print(f"{name:<28}{a:>10.4f}{b:>10.4f}{100 * (b / a - 1):>8.1f}%")
    print(f"MPC solves not solved on the test set: {u0:.1%} before, {u1:.1%} after")


if __name__ == "__main__":
    main()
