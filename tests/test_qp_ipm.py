"""InteriorPoint against independent references: Clarabel (through cvxpy), OSQP 1.x, finite
differences, constructed infeasible problems and qpbenchmark's scoring of the qpbench dev subset."""

import os
import sys

import cvxpy as cp
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import osqp
import pytest
import scipy.sparse as sp

from jtwin.qp.base import solve
from jtwin.qp.ipm import InteriorPoint
from jtwin.qp.problem import QPProblem
from jtwin.qp.results import RESULTS, status_name

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
import qpbench  # noqa: E402

INF = np.inf
TIGHT = InteriorPoint(eps_abs=1e-9, eps_rel=1e-9)


def random_qp(seed, n=10, m=16, bounds=True):
    """A feasible QP with every kind of row: 3 equalities, upper-only, lower-only, two-sided and
    one free row, and (``bounds``) variable bounds with some infinite sides."""
    r = np.random.default_rng(seed)
    M = r.standard_normal((n, n))
    P = M @ M.T / n + 0.1 * np.eye(n)
    q = 3 * r.standard_normal(n)
    A = r.standard_normal((m, n))
    x0 = r.standard_normal(n)
    Ax = A @ x0
    l, u = Ax - r.uniform(0.1, 1, m), Ax + r.uniform(0.1, 1, m)
    l[:3] = u[:3] = Ax[:3]
    l[3:6] = -INF
    u[6:9] = INF
    l[9], u[9] = -INF, INF
    if not bounds:
        return P, q, A, l, u, None, None
    lb, ub = x0 - r.uniform(0.1, 1, n), x0 + r.uniform(0.1, 1, n)
    lb[:2] = -INF
    ub[2:4] = INF
    return P, q, A, l, u, lb, ub


def _finite_rows(P, q, A, l, u, lb, ub):
    """``(C, lo, hi)`` with the bounds as rows (for the references)."""
    if lb is None:
        return A, l, u
    return np.concatenate([A, np.eye(len(q))]), np.concatenate([l, lb]), np.concatenate([u, ub])


def clarabel(P, q, A, l, u, lb, ub):
    C, lo, hi = _finite_rows(P, q, A, l, u, lb, ub)
    x = cp.Variable(len(q))
    eq = lo == hi
    low, up = np.isfinite(lo) & ~eq, np.isfinite(hi) & ~eq
    cons = [C[eq] @ x == lo[eq], C[low] @ x >= lo[low], C[up] @ x <= hi[up]]
    prob = cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, cp.psd_wrap(P)) + q @ x), cons)
    prob.solve(solver=cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
    assert prob.status == "optimal"
    return x.value, prob.value


def osqp_reference(P, q, A, l, u, lb, ub):
    C, lo, hi = _finite_rows(P, q, A, l, u, lb, ub)
    solver = osqp.OSQP()
    solver.setup(P=sp.csc_matrix(np.triu(P)), q=q, A=sp.csc_matrix(C), l=lo, u=hi, eps_abs=1e-10, eps_rel=1e-10,
                 polishing=True, max_iter=200000, verbose=False)
    res = solver.solve()
    assert res.info.status == "solved"
    return res.x, res.info.obj_val


def _assert_converged(sol, tol):
    assert status_name(sol.status) == "successful"
    assert float(sol.primal_residual) <= tol and float(sol.dual_residual) <= tol
    assert float(sol.duality_gap) <= tol * max(1.0, abs(float(sol.objective)))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("bounds", [True, False])
def test_matches_clarabel_and_osqp(seed, bounds):
    data = random_qp(seed, bounds=bounds)
    sol = solve(TIGHT, QPProblem(*data))
    _assert_converged(sol, 1e-8)
    for x_ref, f_ref in (clarabel(*data), osqp_reference(*data)):
        np.testing.assert_allclose(np.asarray(sol.x), x_ref, atol=1e-7)
        assert abs(float(sol.objective) - f_ref) <= 1e-7 * max(1.0, abs(f_ref))


def test_multiplier_signs_and_active_set():
    """``y > 0`` exactly on active upper sides, ``< 0`` on active lower sides, ``0`` elsewhere."""
    P, q, A, l, u, lb, ub = random_qp(7)
    sol = solve(TIGHT, QPProblem(P, q, A, l, u, lb, ub))
    x, y, yb = (np.asarray(v) for v in (sol.x, sol.y, sol.y_bound))
    Ax = A @ x
    eq = l == u
    at_u, at_l = np.isclose(Ax, u, atol=1e-7) & ~eq, np.isclose(Ax, l, atol=1e-7) & ~eq
    assert np.all(y[~eq & ~at_u & ~at_l] == 0.0)
    assert np.all(y[at_u] >= 0) and np.all(y[at_l] <= 0)
    assert np.all(yb[(x > lb + 1e-7) & (x < ub - 1e-7)] == 0.0)
    np.testing.assert_array_equal(np.asarray(sol.z), np.clip(Ax, l, u))


def _small(P, q, rows, l, u, lb=(-INF, -INF), ub=(INF, INF)):
    """A 2-variable problem padded to 3 rows (free rows) with bounds, so all share one compile."""
    rows, l, u = np.array(rows, float), list(l), list(u)
    pad = 3 - len(rows)
    return QPProblem(P, q, np.concatenate([rows, np.zeros((pad, 2))]), l + [-INF] * pad, u + [INF] * pad, lb, ub)


def _infeasible_problems():
    P, q, P0 = np.eye(2), np.ones(2), np.zeros((2, 2))
    return {
        "rows x0 >= 1, x0 <= 0": (_small(P, q, [[1, 0], [1, 0], [0, 1]], [1, -INF, -1], [INF, 0, 1]), RESULTS.primal_infeasible),
        "equalities x0 + x1 = 1 and = 2": (_small(P, q, [[1, 1], [1, 1]], [1, 2], [1, 2]), RESULTS.primal_infeasible),
        "bounds [0, 1] and x0 + x1 >= 3": (_small(P0, q, [[1, 1]], [3], [INF], lb=(0, 0), ub=(1, 1)), RESULTS.primal_infeasible),
        "LP min -x0, x0 - x1 <= 1, x1 >= 0": (_small(P0, [-1.0, 0], [[1, -1], [0, 1]], [-INF, 0], [1, INF]), RESULTS.dual_infeasible),
        "P = diag(1, 0), min -x1, x1 >= 0": (_small(np.diag([1.0, 0]), [0.0, -1], [[1, 0]], [-1], [1], lb=(-INF, 0)), RESULTS.dual_infeasible),
    }


@pytest.mark.parametrize("name", list(_infeasible_problems()))
def test_infeasibility_status(name):
    problem, expected = _infeasible_problems()[name]
    sol = solve(InteriorPoint(), problem)
    assert status_name(sol.status) == status_name(expected)
    assert np.all(np.isfinite(np.asarray(sol.x)))


def test_nan_data_is_a_numerical_error():
    """NaN reaching the solver (the constructor's check is skipped under jit) gives numerical_error."""
    problem, _ = _infeasible_problems()["rows x0 >= 1, x0 <= 0"]
    sol = solve(InteriorPoint(), eqx.tree_at(lambda p: p.P, problem, problem.P.at[0, 0].set(jnp.nan)))
    assert status_name(sol.status) == "numerical_error"
    assert np.all(np.asarray(sol.x) == 0.0) and np.all(np.asarray(sol.y) == 0.0)


def _batch(count, n=4, m=6, seed=0):
    """``count`` small feasible QPs (two-sided rows, an equality, bounds) as stacked arrays."""
    r = np.random.default_rng(seed)
    M = r.standard_normal((count, n, n))
    P = M @ M.transpose(0, 2, 1) / n + 0.1 * np.eye(n)
    A = r.standard_normal((count, m, n))
    x0 = r.standard_normal((count, n))
    Ax = np.einsum("bmn,bn->bm", A, x0)
    l, u = Ax - r.uniform(0.1, 1, (count, m)), Ax + r.uniform(0.1, 1, (count, m))
    l[:, 0] = u[:, 0] = Ax[:, 0]
    u[:, 1] = INF
    return P, 3 * r.standard_normal((count, n)), A, l, u, x0 - 1.0, x0 + 1.0


def test_vmap_one_infeasible_problem_leaves_the_others_unchanged():
    P, q, A, l, u, lb, ub = _batch(1000)
    bad = 417
    A_bad, l_bad, u_bad = A.copy(), l.copy(), u.copy()
    A_bad[bad, 2:4] = np.eye(4)[0]  # rows 2, 3: x0 >= lb0 + 5 and x0 <= lb0 + 4.5
    l_bad[bad, 2:4], u_bad[bad, 2:4] = [lb[bad, 0] + 5, -INF], [INF, lb[bad, 0] + 4.5]
    run = jax.jit(jax.vmap(lambda *a: solve(InteriorPoint(eps_abs=1e-9, eps_rel=1e-9), QPProblem(*a))))
    good = run(P, q, A, l, u, lb, ub)
    mixed = run(P, q, A_bad, l_bad, u_bad, lb, ub)
    names = status_name(mixed.status)
    assert names[bad] == "primal_infeasible"
    keep = np.arange(1000) != bad
    assert np.all(status_name(good.status) == "successful")
    assert np.all(names[keep] == "successful")
    np.testing.assert_allclose(np.asarray(mixed.x)[keep], np.asarray(good.x)[keep], atol=1e-12, rtol=0)
    np.testing.assert_allclose(np.asarray(mixed.y)[keep], np.asarray(good.y)[keep], atol=1e-12, rtol=0)


def _gradient_problem():
    """A strictly convex QP with a known non-degenerate solution: ``x*`` and the multipliers are
    chosen (an equality, an active lower side, an active upper side, an inactive two-sided row,
    one active upper bound) and ``q = −Px* − Aᵀy* − y_bound*``."""
    r = np.random.default_rng(3)
    n = 5
    M = r.standard_normal((n, n))
    P = M @ M.T / n + np.eye(n)
    A = r.standard_normal((4, n))
    x = r.standard_normal(n)
    Ax = A @ x
    l = np.array([Ax[0], Ax[1], -INF, Ax[3] - 1.0])
    u = np.array([Ax[0], Ax[1] + 2.0, Ax[2], Ax[3] + 1.0])
    y = np.array([0.4, -0.7, 0.8, 0.0])
    lb, ub = x - 3.0, x + 3.0
    ub[4] = x[4]
    y_bound = np.array([0.0, 0.0, 0.0, 0.0, 0.5])
    return dict(P=P, q=-P @ x - A.T @ y - y_bound, A=A, l=l, u=u, lb=lb, ub=ub)


def test_implicit_gradients_match_finite_differences():
    data = _gradient_problem()
    w = np.random.default_rng(1).standard_normal(5)
    solver = InteriorPoint(eps_abs=1e-11, eps_rel=1e-11)

    def f(d):
        return w @ solve(solver, QPProblem(**d)).x

    sol = solve(solver, QPProblem(**data))
    assert status_name(sol.status) == "successful"
    y, yb = np.asarray(sol.y), np.asarray(sol.y_bound)
    assert y[0] != 0 and y[1] < 0 and y[2] > 0 and y[3] == 0 and yb[4] > 0 and np.all(yb[:4] == 0)
    grads = jax.grad(f)(jax.tree.map(jnp.asarray, data))
    h = 1e-6
    for name, entries in (("q", [(0,), (3,)]), ("l", [(0,), (1,)]), ("u", [(0,), (2,)]), ("P", [(0, 1), (2, 2)]), ("A", [(1, 0), (2, 3)]), ("ub", [(4,)])):
        for idx in entries:
            plus = {k: np.array(v) for k, v in data.items()}
            minus = {k: np.array(v) for k, v in data.items()}
            plus[name][idx] += h
            minus[name][idx] -= h
            if name in ("l", "u") and idx == (0,):  # the equality row moves as one
                other = "u" if name == "l" else "l"
                plus[other][idx] += h
                minus[other][idx] -= h
                analytic = float(grads["l"][idx] + grads["u"][idx])
            else:
                analytic = float(grads[name][idx])
            fd = (float(f(plus)) - float(f(minus))) / (2 * h)
            assert abs(analytic - fd) <= 1e-6 * max(1.0, abs(fd)), (name, idx, analytic, fd)


@pytest.mark.slow
def test_warm_start_from_the_solution():
    data = random_qp(2)
    problem = QPProblem(*data)
    cold = solve(TIGHT, problem)
    warm = solve(InteriorPoint(eps_abs=1e-9, eps_rel=1e-9, warm_start=True), problem, cold)
    _assert_converged(warm, 1e-8)
    np.testing.assert_allclose(np.asarray(warm.x), np.asarray(cold.x), atol=1e-7)
    assert int(warm.iterations) <= int(cold.iterations)


def test_options_are_validated():
    with pytest.raises(ValueError, match="differentiation"):
        InteriorPoint(differentiation="unrolled")
    with pytest.raises(ValueError, match="step_fraction"):
        InteriorPoint(step_fraction=1.0)
    with pytest.raises(ValueError, match="max_iter"):
        InteriorPoint(max_iter=0)
    assert hash(InteriorPoint()) == hash(InteriorPoint())


def _qpbench_run(tol, names=None):
    """Solve the dev subset (or the named problems) at absolute tolerance ``tol``; return misses."""
    solver = InteriorPoint(eps_abs=tol, eps_rel=0.0)
    misses = []
    for prob in qpbench.load_all():
        if names is not None and prob.name not in names:
            continue
        sol = solve(solver, QPProblem(prob.P, prob.q, prob.C, prob.l, prob.u, prob.lb, prob.ub))
        found = status_name(sol.status) == "successful"
        measures = qpbench.score(prob, sol.x, sol.y, sol.y_bound)
        if found:  # a solver reporting successful must meet all three
            assert all(v < tol for v in measures.values()), (prob.name, measures)
        if not qpbench.solved(found, measures, tol):
            misses.append((prob.name, qpbench.failure_reason(found, status_name(sol.status), measures, tol)))
    return misses


def test_qpbench_high_accuracy_sample():
    """One problem of the harder family at 1e-9 (the whole subset is the slow test below)."""
    assert _qpbench_run(1e-9, names={"WHLIPBAL0"}) == []


@pytest.mark.slow
@pytest.mark.parametrize("tol", [1e-3, 1e-6, 1e-9])
def test_qpbench_solves_everything(tol):
    assert _qpbench_run(tol) == []


def test_qpbench_scorer_against_an_independent_solution():
    """The scorer gives Clarabel's solution of a qpbench problem residuals near zero and a
    perturbed one a positive primal residual."""
    prob = qpbench.load(os.path.join(qpbench.DATA_DIR, "LIPMWALK0.npz"))
    x = cp.Variable(len(prob.q))
    G, h = prob.C[: prob.n_ineq], prob.u[: prob.n_ineq]
    c = G @ x <= h
    cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, cp.psd_wrap(prob.P)) + prob.q @ x), [c]).solve(solver=cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
    m = qpbench.score(prob, x.value, c.dual_value, None)
    assert max(m.values()) < 1e-8
    worst = np.argmax(G @ x.value - h)
    x_bad = x.value + 1e-3 * G[worst] / np.linalg.norm(G[worst]) ** 2
    assert qpbench.score(prob, x_bad, c.dual_value, None)["primal_residual"] > 1e-4
    assert qpbench.shifted_geometric_mean([1.0, 1.0]) == pytest.approx(1.0)
