"""Exact prox operators and FISTA against cvxpy (CLARABEL)."""

import cvxpy as cp
import jax
import jax.numpy as jnp
import numpy as np

from jtwin.qp import is_successful
from jtwin.qp.fista import fista, power_iteration
from jtwin.qp.prox import prox_hinge, prox_l1_box, prox_l1_box_hinge


def test_composite_prox_matches_cvxpy():
    rng = np.random.default_rng(0)
    prox = jax.jit(prox_l1_box_hinge)
    for _ in range(12):
        m = 4
        v, c = 2.0 * rng.normal(size=m), rng.normal(size=m)
        t, alpha, beta, rho = 0.7, rng.uniform(0, 1), rng.uniform(0, 3), 0.5 * rng.normal()
        lo, hi = -rng.uniform(0.2, 2, m), rng.uniform(0.2, 2, m)
        x = cp.Variable(m)
        obj = alpha * cp.norm1(x) + beta * cp.pos(c @ x - rho) + cp.sum_squares(x - v) / (2 * t)
        cp.Problem(cp.Minimize(obj), [x >= lo, x <= hi]).solve(
            solver=cp.CLARABEL, tol_gap_abs=1e-11, tol_gap_rel=1e-11, tol_feas=1e-11
        )
        np.testing.assert_allclose(prox(v, t, alpha, lo, hi, beta, c, rho), x.value, atol=1e-6)


def test_simple_proxes_match_closed_forms():
    v = jnp.array([-2.0, -0.1, 0.05, 1.5])
    np.testing.assert_allclose(prox_l1_box(v, 0.5, 0.4, -1.0, 1.0), [-1.0, 0.0, 0.0, 1.0])
    c = jnp.array([1.0, 1.0, 0.0, 0.0])
    # c'v = -2.1 <= rho: unchanged; large c'v: full step; in between: onto the hyperplane
    np.testing.assert_allclose(prox_hinge(v, 1.0, 1.0, c, 0.0), v)
    w = jnp.array([3.0, 3.0, 0.0, 0.0])
    np.testing.assert_allclose(prox_hinge(w, 1.0, 1.0, c, 0.0), [2.0, 2.0, 0.0, 0.0])
    np.testing.assert_allclose(prox_hinge(w, 1.0, 10.0, c, 1.0), [0.5, 0.5, 0.0, 0.0])


def test_fista_with_restart_matches_cvxpy():
    rng = np.random.default_rng(1)
    n = 15
    M = rng.normal(size=(n, n))
    H = M @ M.T / n + 0.05 * np.eye(n)
    g = rng.normal(size=n)
    L = power_iteration(lambda v: H @ v, jnp.asarray(rng.normal(size=n)))
    assert np.linalg.eigvalsh(H).max() <= float(L) <= 1.05 * np.linalg.eigvalsh(H).max()
    prox = lambda v, t: prox_l1_box(v, t, 0.3, -1.0, 1.0)  # noqa: E731
    x = cp.Variable(n)
    cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, H) + g @ x + 0.3 * cp.norm1(x)), [x >= -1, x <= 1]).solve(
        solver=cp.CLARABEL
    )
    sols = [fista(lambda z: H @ z + g, prox, jnp.zeros(n), L, max_iter=5000, tol=1e-11, restart=r) for r in (True, False)]
    for sol in sols:
        assert bool(is_successful(sol.status))
        np.testing.assert_allclose(sol.x, x.value, atol=1e-6)
    assert int(sols[0].iterations) < int(sols[1].iterations)  # adaptive restart pays off
