"""solve_qp against OSQP and cvxpy (independent references), infeasibility, batching, validation."""

import cvxpy as cp
import jax
import jax.numpy as jnp
import numpy as np
import osqp
import pytest
import scipy.sparse as sp

from jtwin.qp import (
    is_successful,
    solve_qp,
    status_name,
)

TIGHT = dict(eps_abs=1e-9, eps_rel=1e-9, max_iter=20000)


def random_qp(seed, n=8, m=12, psd_rank=None):
    """Feasible QP with equality, two-sided, one-sided (inf) and free rows."""
    rng = np.random.default_rng(seed)
    M = rng.normal(size=(n, psd_rank or n))
    P = M @ M.T + (0.0 if psd_rank else 0.1) * np.eye(n)
    q = rng.normal(size=n)
    A = rng.normal(size=(m, n))
    x_feas = rng.normal(size=n) * 0.3
    Ax = A @ x_feas
    l = Ax - rng.uniform(0.05, 1.0, m)
    u = Ax + rng.uniform(0.05, 1.0, m)
    l[0] = u[0] = Ax[0]  # equality
    l[1] = u[1] = Ax[1]  # equality
    l[2] = -np.inf  # upper only
    u[3] = np.inf  # lower only
    l[4], u[4] = -np.inf, np.inf  # free row
    return P, q, A, l, u


def osqp_solve(P, q, A, l, u, **kw):
    solver = osqp.OSQP()
    solver.setup(sp.csc_matrix(P), q, sp.csc_matrix(A), l, u, verbose=False, **kw)
    return solver.solve(raise_error=False)


def cvxpy_solve(P, q, A, l, u):
    x = cp.Variable(P.shape[0])
    fin_l, fin_u = np.isfinite(l), np.isfinite(u)
    cons = [A[fin_l] @ x >= l[fin_l], A[fin_u] @ x <= u[fin_u]]
    prob = cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, cp.psd_wrap(P)) + q @ x), cons)
    prob.solve(solver=cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
    return x.value, prob.value


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_osqp_and_cvxpy(seed):
    P, q, A, l, u = random_qp(seed, psd_rank=5 if seed == 2 else None)
    sol = solve_qp(P, q, A, l, u, **TIGHT)
    assert bool(is_successful(sol.status))
    ref = osqp_solve(P, q, A, l, u, eps_abs=1e-10, eps_rel=1e-10, max_iter=100000, polish=True)
    x_cvx, f_cvx = cvxpy_solve(P, q, A, l, u)
    np.testing.assert_allclose(sol.x, ref.x, atol=1e-5)
    np.testing.assert_allclose(sol.x, x_cvx, atol=1e-5)
    np.testing.assert_allclose(sol.y, ref.y, atol=1e-5)
    assert abs(float(sol.objective) - f_cvx) <= 1e-5 * max(1.0, abs(f_cvx))
    # the reported residuals are the unscaled OSQP ones
    assert float(sol.primal_residual) <= 1e-7 and float(sol.dual_residual) <= 1e-7


def test_polishing_gives_active_set_accuracy():
    P, q, A, l, u = random_qp(3)
    sol = solve_qp(P, q, A, l, u, eps_abs=1e-5, eps_rel=1e-5, polish=True)
    assert bool(sol.state.polished) and bool(is_successful(sol.status))
    x_cvx, _ = cvxpy_solve(P, q, A, l, u)
    np.testing.assert_allclose(sol.x, x_cvx, atol=1e-7)


def test_default_tolerance_close_to_osqp_at_same_tolerance():
    P, q, A, l, u = random_qp(4)
    sol = solve_qp(P, q, A, l, u)  # eps 1e-4 like OSQP's default
    x_cvx, f_cvx = cvxpy_solve(P, q, A, l, u)
    assert bool(is_successful(sol.status))
    assert np.max(np.abs(np.asarray(sol.x) - x_cvx)) < 1e-2
    assert abs(float(sol.objective) - f_cvx) <= 1e-2 * max(1.0, abs(f_cvx))


def test_primal_infeasible_detected():
    # x0 + x1 >= 2 together with x0 <= 0.5, x1 <= 0.5
    P = np.eye(2)
    q = np.zeros(2)
    A = np.array([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    l = np.array([2.0, -np.inf, -np.inf])
    u = np.array([np.inf, 0.5, 0.5])
    sol = solve_qp(P, q, A, l, u)
    assert status_name(sol.status) == "primal_infeasible"
    assert osqp_solve(P, q, A, l, u).info.status == "primal infeasible"
    assert np.all(np.isfinite(sol.x)) and np.all(np.isfinite(sol.y))


def test_dual_infeasible_detected():
    # minimise -x0 - x1 with x0 >= 0 only: unbounded below along (1, 1)
    P = np.zeros((2, 2))
    q = np.array([-1.0, -1.0])
    A = np.array([[1.0, 0.0], [0.0, 1.0]])
    l = np.array([0.0, -1.0])
    u = np.array([np.inf, np.inf])
    sol = solve_qp(P, q, A, l, u)
    assert status_name(sol.status) == "dual_infeasible"
    assert osqp_solve(P, q, A, l, u).info.status == "dual infeasible"


def test_max_iter_status():
    P, q, A, l, u = random_qp(5)
    sol = solve_qp(P, q, A, l, u, eps_abs=1e-12, eps_rel=1e-12, max_iter=30)
    assert status_name(sol.status) == "max_iterations_reached" and int(sol.iterations) == 30


def test_vmap_shared_matrices_independent_statuses():
    """1,000 problems sharing P, A (one factorisation); one infeasible problem disturbs nothing."""
    P, _, A, l0, u0 = random_qp(6)
    rng = np.random.default_rng(7)
    B = 1000
    qs = rng.normal(size=(B, P.shape[0]))
    ls = np.tile(l0, (B, 1))
    us = np.tile(u0, (B, 1))
    bad = 123
    ls[bad, 5], us[bad, 5] = 50.0, 60.0  # row 5 is also bounded through row 6 ...
    A = A.copy()
    A[6] = A[5]
    ls[:, 6], us[:, 6] = np.minimum(ls[:, 5], -1.0), np.minimum(us[:, 5], 1.0)  # ... to at most 1
    ls[bad, 6], us[bad, 6] = -1.0, 1.0
    f = jax.jit(jax.vmap(lambda q, l, u: solve_qp(P, q, A, l, u, eps_abs=1e-6, eps_rel=1e-6)))
    sol = f(qs, ls, us)
    status = status_name(sol.status)
    assert status[bad] == "primal_infeasible"
    assert np.all(np.delete(status, bad) == "successful")
    assert np.all(np.isfinite(np.asarray(sol.x))) and np.all(np.isfinite(np.asarray(sol.y)))
    for i in (0, 500, 999):  # spot checks against OSQP
        ref = osqp_solve(P, qs[i], A, ls[i], us[i], eps_abs=1e-9, eps_rel=1e-9, max_iter=100000, polish=True)
        np.testing.assert_allclose(sol.x[i], ref.x, atol=1e-4)


def test_vmap_one_huge_problem_does_not_stall_the_batch():
    """A batch shares one cost scale and one ρ: one problem whose cost is 1e20 times the others'
    (a diverged estimate fed to an MPC) must not stop the rest converging (it did: the batch's
    largest ‖q‖ set the scale, and every problem hit max_iter)."""
    P, _, A, l, u = random_qp(3)
    rng = np.random.default_rng(4)
    B, huge = 32, 5
    qs = rng.normal(size=(B, P.shape[0]))
    qs[huge] *= 1e20
    sol = jax.jit(jax.vmap(lambda q: solve_qp(P, q, A, l, u, eps_abs=1e-6, eps_rel=1e-6, max_iter=4000)))(qs)
    status = status_name(sol.status)
    assert np.all(np.delete(status, huge) == "successful"), status
    for i in (0, 9, 15):
        ref = osqp_solve(P, qs[i], A, l, u, eps_abs=1e-9, eps_rel=1e-9, max_iter=100000, polish=True)
        np.testing.assert_allclose(sol.x[i], ref.x, atol=1e-4)


@pytest.mark.parametrize("shared_bounds", [True, False])
def test_vmap_variable_bounds_shared_or_per_problem(shared_bounds):
    """Variable bounds under vmap: one [n] box for the whole batch (kept unbatched inside the
    solver) or a box per problem; each problem against OSQP with the bounds as identity rows."""
    P, _, A, l, u = random_qp(11)
    n, B = P.shape[0], 6
    rng = np.random.default_rng(12)
    qs = 3.0 * rng.normal(size=(B, n))
    lb = np.full(n, -0.2) if shared_bounds else -rng.uniform(0.05, 0.4, (B, n))
    ub = np.full(n, 0.3) if shared_bounds else rng.uniform(0.05, 0.4, (B, n))
    lb[..., 1] = -np.inf  # an unbounded side
    solve = lambda q, lo, hi: solve_qp(P, q, A, l, u, lb=lo, ub=hi, **TIGHT)  # noqa: E731
    sol = jax.jit(jax.vmap(solve, in_axes=(0, None, None) if shared_bounds else 0))(qs, lb, ub)
    C = np.vstack([A, np.eye(n)])
    statuses = {"solved": "successful", "primal infeasible": "primal_infeasible"}
    for i in range(B):
        lo, hi = (lb, ub) if shared_bounds else (lb[i], ub[i])
        ref = osqp_solve(P, qs[i], C, np.concatenate([l, lo]), np.concatenate([u, hi]),
                         eps_abs=1e-10, eps_rel=1e-10, max_iter=200000, polishing=True)  # fmt: skip
        assert status_name(sol.status)[i] == statuses[ref.info.status]  # some random boxes cut the equality rows
        if ref.info.status == "solved":
            np.testing.assert_allclose(sol.x[i], ref.x, atol=1e-6)
            np.testing.assert_allclose(sol.y_bound[i], ref.y[-n:], atol=1e-5)
    solved = np.asarray(is_successful(sol.status))
    assert solved.sum() >= 3 and np.any(np.abs(np.asarray(sol.y_bound)[solved]) > 1e-3)  # active bounds


def test_vmap_batched_matrices():
    probs = [random_qp(10 + s, n=5, m=7) for s in range(4)]
    stacked = [np.stack(v) for v in zip(*probs)]
    sol = jax.vmap(lambda P, q, A, l, u: solve_qp(P, q, A, l, u, **TIGHT))(*stacked)
    assert np.all(np.asarray(is_successful(sol.status)))
    for i, prob in enumerate(probs):
        x_cvx, _ = cvxpy_solve(*prob)
        np.testing.assert_allclose(sol.x[i], x_cvx, atol=1e-5)


def test_warm_start_cuts_iterations():
    P, q, A, l, u = random_qp(8)
    cold = solve_qp(P, q, A, l, u, eps_abs=1e-7, eps_rel=1e-7)
    warm = solve_qp(P, q + 1e-4, A, l, u, eps_abs=1e-7, eps_rel=1e-7, warm_start=cold)
    assert bool(is_successful(warm.status))
    assert int(warm.iterations) < int(cold.iterations)


def test_float32_runs():
    P, q, A, l, u = (np.asarray(v, np.float32) for v in random_qp(9))
    sol = solve_qp(P, q, A, l, u, eps_abs=1e-3, eps_rel=1e-3)
    assert sol.x.dtype == jnp.float32 and bool(is_successful(sol.status))
    x_cvx, _ = cvxpy_solve(*(np.asarray(v, np.float64) for v in random_qp(9)))
    assert np.max(np.abs(np.asarray(sol.x) - x_cvx)) < 5e-2


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(q=np.zeros(3)), "q"),
        (dict(A=np.zeros((4, 3))), "A"),
        (dict(l=np.full(4, np.nan)), "l, u"),
        (dict(l=np.ones(4), u=np.zeros(4)), "l <= u"),
        (dict(P=np.full((2, 2), np.nan)), "P"),
    ],
)
def test_bad_input_raises(change, match):
    args = dict(P=np.eye(2), q=np.zeros(2), A=np.ones((4, 2)), l=-np.ones(4), u=np.ones(4))
    args.update(change)
    with pytest.raises(ValueError, match=match):
        solve_qp(**args)


@pytest.mark.parametrize("rule", ["osqp", "residual"])
def test_adaptive_rho_tolerance_governs_refactorisation(rule):
    """ρ moves to the rule's estimate only when it differs by more than the tolerance factor;
    the solution is the same either way."""
    P, q, A, l, u = random_qp(13)
    kw = dict(adaptive_rho_rule=rule, eps_abs=1e-8, eps_rel=1e-8)
    loose = solve_qp(P, q, A, l, u, adaptive_rho_tolerance=1e9, **kw)
    tight = solve_qp(P, q, A, l, u, adaptive_rho_tolerance=1.0, **kw)
    assert float(loose.state.rho) == pytest.approx(0.1) and float(tight.state.rho) != pytest.approx(0.1)
    x_cvx, _ = cvxpy_solve(P, q, A, l, u)
    for sol in (loose, tight):
        assert bool(is_successful(sol.status))
        np.testing.assert_allclose(sol.x, x_cvx, atol=1e-5)
    with pytest.raises(ValueError, match="adaptive_rho_tolerance"):
        solve_qp(P, q, A, l, u, adaptive_rho_tolerance=0.5)
    with pytest.raises(ValueError, match="adaptive_rho_rule"):
        solve_qp(P, q, A, l, u, adaptive_rho_rule="boyd")


def test_constant_bounds_inside_jit():
    """Concrete bounds closed over by a jitted function are validated without tracer errors.

    Reference: with ``P = I`` and no active rows the solution is the projection
    ``clip(−q, lb, ub)`` of the unconstrained minimiser onto the box.
    """
    n = 5
    lb, ub = -0.5 * np.ones(n), np.array([0.2, 1.0, np.inf, 0.3, 2.0])
    A, l, u = np.ones((1, n)), np.array([-np.inf]), np.array([np.inf])
    solve = jax.jit(lambda q: solve_qp(np.eye(n), q, A, l, u, lb=lb, ub=ub, **TIGHT).x)
    q = np.array([-1.0, 0.4, -3.0, 0.1, -0.7])
    np.testing.assert_allclose(np.asarray(solve(q)), np.clip(-q, lb, ub), atol=1e-7)
