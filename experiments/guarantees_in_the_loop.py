"""Guarantees with the Kalman filter in the loop: nominal, tube and chance twins side by side (issue #17).

Plant (Mayne, Seron & Raković 2005): ``x⁺ = Ax + Bu + w``, double integrator, ``x₂ ≤ 2``, ``|u| ≤ 1``,
both states measured, ``y = x + v``; ``w`` uniform in ``[−0.05, 0.05]²`` (half the sequences on its
vertices), ``v`` uniform in ``[−0.02, 0.02]²``.  Each twin runs a Kalman filter (noise covariances
the uniform laws' variances, started at its steady-state covariance) and acts on its estimate:

* **nominal**: the tube controller's nominal MPC without tightening (``TubeMPC(tighten=False)``);
* **tube**: output-feedback tube MPC — constraints tightened by the estimation-error set ``E`` and
  the tube of the estimate's disturbance ``Ŵ`` (:func:`jtwin.control.output_feedback_tube_sets`):
  a hard guarantee for every bounded ``w, v``;
* **chance**: :class:`jtwin.control.ChanceMPC` at ``ε = 0.05`` per row, planning from the filter's
  mean and covariance at every step, with the uniform law's variance ``w̄²/3`` as its noise model;
  **chance-w2** the same with ``w̄²`` (the variance of the sequences on W's vertices).

Prints hard-constraint violations (sequences with any violation), the worst per-step violation
rate of ``x₂ ≤ 2`` (with its 95% Clopper–Pearson upper bound) and the mean closed-loop cost
``Σ xᵀQx + uᵀRu``.  ``python experiments/guarantees_in_the_loop.py [--sequences 10000]``.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

import jtwin as jt
from jtwin.control import ChanceMPC, TubeMPC, output_feedback_tube_sets, steady_state_gain
from jtwin.simulate import noise_closed_loops
from jtwin.twin import Twin
from jtwin.uncertainty import Polytope

jax.config.update("jax_enable_x64", True)

A = np.array([[1.0, 1.0], [0.0, 1.0]])
B = np.array([[0.5], [1.0]])
Q, R = np.eye(2), np.array([[0.01]])
X = Polytope.box([-np.inf, -np.inf], [np.inf, 2.0])
U = Polytope.box([-1.0], [1.0])
X0 = np.array([-5.0, -2.0])
W_HALF, V_HALF, EPS, HORIZON = 0.05, 0.02, 0.05, 9


def twins():
    """The three twins and the KF's steady-state covariance."""
    q, r = W_HALF**2 / 3, V_HALF**2 / 3
    G, P = steady_state_gain(A, np.eye(2), q * np.eye(2), r * np.eye(2))
    Wb, Vb = (Polytope.box([-h] * 2, [h] * 2) for h in (W_HALF, V_HALF))
    E, W_hat, X_tight = output_feedback_tube_sets(A, np.eye(2), G, Wb, Vb, X)
    model = jt.models.LinearModel(A, B, np.eye(2), q * np.eye(2), r * np.eye(2))
    kf = jt.estimation.KF()
    controllers = {
        "nominal": TubeMPC(A, B, HORIZON, Q, R, X, U, W_hat, tighten=False),
        "tube": TubeMPC(A, B, HORIZON, Q, R, X_tight, U, W_hat),
        "chance": ChanceMPC(A, B, HORIZON, Q, R, X, U, q * np.eye(2), eps=EPS),
        # the vertex sequences have variance w̄² per entry, three times the uniform law's: a chance twin told so
        "chance-w2": ChanceMPC(A, B, HORIZON, Q, R, X, U, W_HALF**2 * np.eye(2), eps=EPS),
    }
    return {name: Twin(model, kf, c, gate=None) for name, c in controllers.items()}, P, E


def main(sequences: int, steps: int, seed: int, only: list[str] | None = None):
    rng = np.random.default_rng(seed)
    w = rng.uniform(-W_HALF, W_HALF, (sequences, steps, 2))
    w[: sequences // 2] = W_HALF * np.sign(w[: sequences // 2])
    v = rng.uniform(-V_HALF, V_HALF, (sequences, steps, 2))
    tw, P, E = twins()
    print(f"{sequences} sequences x {steps} steps; |w| <= {W_HALF}, |v| <= {V_HALF}; eps = {EPS}; "
          f"estimation-error bound h_E(x2) = {float(E.support(np.array([[0.0, 1.0]]))[0]):.4f}")  # fmt: skip
    print(f"{'twin':8s} {'sequences violating':>20s} {'worst per-step rate':>20s} {'95% upper':>10s} {'mean cost':>10s} {'time':>7s}")
    for name, twin in tw.items():
        if only and name not in only:
            continue
        t0 = time.perf_counter()
        xs, us = (np.asarray(a) for a in noise_closed_loops(twin, A, B, X0, jnp.asarray(P), w, v))
        elapsed = time.perf_counter() - t0
        state_viol = xs[:, 1:, 1] > 2.0 + 1e-9  # [S, T]
        hard = state_viol.any(axis=1) | (np.abs(us) > 1.0 + 1e-9).any(axis=(1, 2))
        per_step = state_viol.mean(axis=0)
        k = int(np.argmax(per_step))
        count = int(state_viol[:, k].sum())
        upper = 1.0 if count == sequences else float(stats.beta.ppf(0.975, count + 1, sequences - count))
        cost = (np.einsum("stn,nm,stm->s", xs[:, :-1], Q, xs[:, :-1]) + np.einsum("stn,nm,stm->s", us, R, us)).mean()
        print(f"{name:8s} {int(hard.sum()):>20d} {per_step[k]:>20.4f} {upper:>10.4f} {cost:>10.2f} {elapsed:>6.0f}s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", help="run only these twins (nominal, tube, chance, chance-w2)")
    args = parser.parse_args()
    main(args.sequences, args.steps, args.seed, args.only)
