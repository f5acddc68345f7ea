"""Confidence sets from least squares (coverage by simulation) and multi-model (epistemic) robust MPC."""

import numpy as np
import pytest

from jtwin.qp import is_successful
from jtwin.control import PolytopicMPC
from jtwin.uncertainty import ConfidenceEllipsoid, Polytope, box_vertices, least_squares_confidence


@pytest.mark.parametrize("noise_std", [0.3, None])
def test_least_squares_confidence_coverage(noise_std):
    rng = np.random.default_rng(0)
    theta, delta, trials = np.array([0.8, -0.5]), 0.1, 2000
    hits = 0
    for _ in range(trials):
        Phi = rng.normal(size=(15, 2))
        y = Phi @ theta + 0.3 * rng.normal(size=15)
        hits += bool(least_squares_confidence(Phi, y, delta, noise_std).contains(theta))
    se = np.sqrt(delta * (1 - delta) / trials)
    assert abs(hits / trials - (1 - delta)) < 3 * se


def test_confidence_set_shrinks_and_validates():
    rng = np.random.default_rng(1)
    widths = []
    for T in (20, 80, 320):
        Phi = np.ones((T, 1))
        lo, hi = least_squares_confidence(Phi, 0.5 * Phi[:, 0] + 0.1 * rng.normal(size=T), 0.05, 0.1).box()
        widths.append(hi[0] - lo[0])
    assert widths[0] > widths[1] > widths[2]
    # known σ: half-width σ·√(χ²₁(0.95)/T) = 0.1·1.95996/√T
    np.testing.assert_allclose(widths, 2 * 0.1 * 1.959963984540054 / np.sqrt([20, 80, 320]), rtol=1e-9)
    assert box_vertices([0, 1], [2, 3]).tolist() == [[0, 1], [0, 3], [2, 1], [2, 3]]
    E = ConfidenceEllipsoid(np.zeros(2), np.diag([4.0, 1.0]))
    assert E.contains(E.samples(rng, 100)).all() and E.box()[1].tolist() == [2.0, 1.0]
    with pytest.raises(ValueError, match="rank"):
        least_squares_confidence(np.ones((5, 2)), np.ones(5))


A = np.array([[1.0, 0.2], [0.0, 0.9]])
X = Polytope.box([-np.inf, -np.inf], [1.0, np.inf])
U = Polytope.box([-3.0], [3.0])


def _B(b):
    return np.array([[0.0], [b]])


def test_multi_model_mpc_holds_for_every_parameter_in_the_set():
    b_hat = 0.2

    def plan(lo, hi):
        models = (np.stack([A, A]), np.stack([_B(lo), _B(hi)]))
        mpc = PolytopicMPC(A, _B(b_hat), 8, np.diag([1.0, 0.1]), np.array([[0.01]]), X, U, models=models, xref=[2.0, 0.0])
        return mpc.solve(np.zeros(2))

    def worst_x1(u, bs):
        worst = -np.inf
        for b in bs:  # open-loop rollouts of the true system for parameters drawn from the set
            x = np.zeros(2)
            for uk in u:
                x = A @ x + _B(b) @ uk
                worst = max(worst, x[0])
        return worst

    bs = np.random.default_rng(2).uniform(0.1, 0.3, 200)
    wide, narrow, nominal = plan(0.1, 0.3), plan(0.15, 0.25), plan(b_hat, b_hat)
    assert all(bool(is_successful(s.status)) for s in (wide, narrow, nominal))
    assert worst_x1(np.asarray(wide.u), bs) <= 1.0 + 1e-6
    assert worst_x1(np.asarray(nominal.u), bs) > 1.0 + 1e-3  # nominal-only planning is not robust
    # conservatism shrinks with the set: the nominal cost decreases
    assert float(nominal.objective) < float(narrow.objective) < float(wide.objective)
