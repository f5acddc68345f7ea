"""Chance constraints: Monte-Carlo violation rates (20,000 runs, numpy) of plans with Gaussian tightening."""

import numpy as np
import pytest
from scipy import stats

from jtwin.qp import is_successful
from jtwin.control import ChanceMPC
from jtwin.uncertainty import Polytope, bonferroni, gaussian_backoff, propagate_covariance

A = np.array([[1.0, 0.2], [0.0, 0.9]])
B = np.array([[0.0], [0.2]])
Q, R = np.diag([1.0, 0.1]), np.array([[0.01]])
X = Polytope.box([-np.inf, -0.8], [1.0, 0.8])
U = Polytope.box([-3.0], [3.0])
NOISE = np.diag([2e-3, 4e-3])
MEAN, COV0 = np.array([0.0, 0.0]), np.diag([0.01, 0.005])
EPS, RUNS, N = 0.1, 20000, 10


def _rates(mpc, sol, seed):
    """Per-step violation rates [N, rows] and joint rates [N] of u = v + K(x − z) around the plan."""
    rng = np.random.default_rng(seed)
    z, v, K = np.asarray(sol.x), np.asarray(sol.u), np.asarray(mpc.K)
    x = rng.multivariate_normal(MEAN, COV0, RUNS)
    state_viol, input_viol = [], []
    for t in range(N):
        u = v[t] + (x - z[t]) @ K.T
        input_viol.append(u @ U.H.T > U.h)
        x = x @ A.T + u @ B.T + rng.multivariate_normal(np.zeros(2), NOISE, RUNS)
        state_viol.append(x @ X.H.T > X.h)  # x_{t+1}
    viol = np.concatenate([np.asarray(state_viol), np.asarray(input_viol)], axis=2)  # [N, RUNS, rows]
    return viol.mean(axis=1), viol.any(axis=2).mean(axis=1)


@pytest.fixture(scope="module")
def plans():
    ind = ChanceMPC(A, B, N, Q, R, X, U, NOISE, eps=EPS, xref=[2.0, 0.0])
    joint = ChanceMPC(A, B, N, Q, R, X, U, NOISE, eps=EPS, joint=True, xref=[2.0, 0.0])
    return ind, joint, ind.solve(MEAN, COV0), joint.solve(MEAN, COV0), ind.nominal.solve(MEAN)


def test_backoffs_match_closed_form():
    K = np.array([[-1.0, -2.0]])
    Phi = A + B @ K
    covs = np.asarray(propagate_covariance(Phi, COV0, NOISE, 3))
    S = COV0
    for t in range(4):
        np.testing.assert_allclose(covs[t], S, atol=1e-15)
        S = Phi @ S @ Phi.T + NOISE
    b = np.asarray(gaussian_backoff(X.H, covs, 0.05))
    np.testing.assert_allclose(b, stats.norm.ppf(0.95) * np.sqrt(np.einsum("rn,tnk,rk->tr", X.H, covs, X.H)), rtol=1e-12)
    assert bonferroni(0.1, 4) == 0.025
    with pytest.raises(ValueError, match="eps"):
        gaussian_backoff(X.H, covs, 0.7)


def test_individual_chance_constraints_hold(plans):
    ind, _, sol, _, plain = plans
    assert bool(is_successful(sol.status)) and bool(is_successful(plain.status))
    rates, _ = _rates(ind, sol, 0)
    se = np.sqrt(EPS * (1 - EPS) / RUNS)
    assert rates.max() <= EPS + 3 * se
    assert rates.max() >= EPS - 3 * se  # the constraint binds: the tightening is not loose
    rates_plain, _ = _rates(ind, plain, 0)
    assert rates_plain.max() > 3 * EPS  # without tightening: far above ε


def test_joint_chance_constraints_hold(plans):
    _, joint, _, sol, _ = plans
    assert bool(is_successful(sol.status))
    _, any_rate = _rates(joint, sol, 1)
    se = np.sqrt(EPS * (1 - EPS) / RUNS)
    assert any_rate.max() <= EPS + 3 * se
