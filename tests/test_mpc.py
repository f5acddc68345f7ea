"""LinearMPC against cvxpy (CLARABEL) and OSQP; soft constraints, batching, warm starts, validation."""

import cvxpy as cp
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import osqp
import pytest
import scipy.sparse as sp

from jtwin.control import LinearMPC, lqr
from jtwin.qp import ADMM, InteriorPoint, is_successful, status_name

N = 6


def plant(seed, n=4, m=2):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, n))
    A *= 1.05 / np.max(np.abs(np.linalg.eigvals(A)))
    B = rng.normal(size=(n, m))
    return dict(
        A=A,
        B=B,
        Q=np.diag(rng.uniform(0.5, 2.0, n)),
        R=np.diag(rng.uniform(0.1, 1.0, m)),
        E=rng.normal(size=(n, 1)),
        d=0.3 * rng.normal(size=(N, 1)),
        xref=0.5 * rng.normal(size=(N + 1, n)),
        x0=rng.normal(size=n),
        c=rng.uniform(0.5, 1.5, m),
    )


XMIN = np.array([-1.5, -np.inf, -2.0, -np.inf])
XMAX = np.array([1.5, np.inf, 2.0, np.inf])


def cvxpy_mpc(p, alpha, beta, rho, umin, umax, xmin=None, xmax=None, soft=None):
    """The documented objective J, written independently in cvxpy (QN = scipy DARE solution)."""
    import scipy.linalg as sl

    A, B, Q, R, E, d, xref, x0, c = (p[k] for k in ("A", "B", "Q", "R", "E", "d", "xref", "x0", "c"))
    n, m = B.shape
    QN = sl.solve_discrete_are(A, B, Q, R)
    u, x = cp.Variable((N, m)), cp.Variable((N + 1, n))
    cons = [x[0] == x0, u >= umin, u <= umax]
    cons += [x[t + 1] == A @ x[t] + B @ u[t] + E @ d[t] for t in range(N)]
    cost = cp.quad_form(x[N] - xref[N], QN)
    for t in range(N):
        cost += cp.quad_form(x[t] - xref[t], Q) + cp.quad_form(u[t], R)
        cost += alpha * cp.norm1(u[t]) + beta * cp.pos(c @ u[t] - rho)
    if xmin is not None:
        fin = np.isfinite(xmin) | np.isfinite(xmax)
        lo, hi = xmin[fin], xmax[fin]
        if soft is None:
            cons += [x[1:, fin] >= lo, x[1:, fin] <= hi]
        else:
            cost += soft * cp.sum(cp.pos(x[1:, fin] - hi) + cp.pos(lo - x[1:, fin]))
    prob = cp.Problem(cp.Minimize(cost), cons)
    prob.solve(solver=cp.CLARABEL)
    return u.value, prob.value


@pytest.mark.parametrize(
    "seed, formulation, soft, rule",
    [(0, "condensed", None, "osqp"), (1, "sparse", None, "osqp"), (2, "auto", 20.0, "osqp"), (2, "auto", 20.0, "residual")],
)
def test_admm_mpc_with_l1_and_hinge_matches_cvxpy(seed, formulation, soft, rule):
    p = plant(seed)
    kw = dict(alpha=0.3, beta=2.0, rho=0.2)
    mpc = LinearMPC(
        p["A"], p["B"], N, p["Q"], p["R"], xref=p["xref"], umin=-1.0, umax=1.0, xmin=XMIN, xmax=XMAX,
        c=p["c"], E=p["E"], soft_penalty=soft, eps_abs=1e-6, eps_rel=1e-6, formulation=formulation,
        adaptive_rho_rule=rule, adaptive_rho_tolerance=2.0 if rule == "residual" else 5.0, **kw,
    )  # fmt: skip
    sol = mpc.solve(p["x0"], p["d"])
    u_ref, f_ref = cvxpy_mpc(p, umin=-1.0, umax=1.0, xmin=XMIN, xmax=XMAX, soft=soft, **kw)
    assert bool(is_successful(sol.status))
    assert abs(float(sol.objective) - f_ref) <= 1e-4 * abs(f_ref)
    np.testing.assert_allclose(sol.u, u_ref, atol=1e-3)
    # the non-smooth terms are active: some inputs exactly zero or the hinge at its kink
    assert np.any(np.abs(u_ref) < 1e-6) or np.any(np.abs(u_ref @ p["c"] - 0.2) < 1e-6)


def test_l1_on_sign_definite_inputs_is_linear_and_exact():
    """Boxes that fix each input's sign (u1 >= 0, u2 <= 0) turn α|u| into a linear cost: no slacks, same optimum."""
    p = plant(4)
    kw = dict(alpha=0.5, beta=2.0, rho=0.1)
    umin, umax = np.array([0.0, -1.0]), np.array([1.0, 0.0])
    mpc = LinearMPC(
        p["A"], p["B"], N, p["Q"], p["R"], xref=p["xref"], umin=umin, umax=umax, c=p["c"], E=p["E"],
        eps_abs=1e-6, eps_rel=1e-6, **kw,
    )  # fmt: skip
    assert mpc.l1_sign == (1.0, -1.0) and "tau" not in dict(mpc._var_blocks(mpc.formulation))
    sol = mpc.solve(p["x0"], p["d"])
    u_ref, f_ref = cvxpy_mpc(p, umin=umin, umax=umax, **kw)
    assert bool(is_successful(sol.status))
    assert abs(float(sol.objective) - f_ref) <= 1e-4 * abs(f_ref)
    np.testing.assert_allclose(sol.u, u_ref, atol=1e-3)


def test_fista_mpc_matches_cvxpy():
    p = plant(3)
    kw = dict(alpha=0.3, beta=2.0, rho=0.2)
    mpc = LinearMPC(
        p["A"], p["B"], N, p["Q"], p["R"], xref=p["xref"], umin=-1.0, umax=1.0, c=p["c"], E=p["E"],
        method="fista", eps_abs=1e-5, eps_rel=1e-5, max_iter=20000, **kw,
    )  # fmt: skip
    sol = mpc.solve(p["x0"], p["d"])
    u_ref, f_ref = cvxpy_mpc(p, umin=-1.0, umax=1.0, **kw)
    assert bool(is_successful(sol.status))
    assert abs(float(sol.objective) - f_ref) <= 1e-4 * abs(f_ref)
    np.testing.assert_allclose(sol.u, u_ref, atol=1e-3)


def osqp_sparse_mpc(p, QN, umin, umax, xmin, xmax):
    """OSQP's textbook sparse MPC QP (variables x_0..x_N, u_0..u_{N-1}; cost with the ½ of OSQP)."""
    A, B, Q, R, E, d, xref, x0 = (p[k] for k in ("A", "B", "Q", "R", "E", "d", "xref", "x0"))
    n, m = B.shape
    P = sp.block_diag([sp.kron(sp.eye(N), Q), QN, sp.kron(sp.eye(N), R)], format="csc")
    q = np.concatenate([-(Q @ xref[:N].T).T.ravel(), -QN @ xref[N], np.zeros(N * m)])
    Ax = sp.kron(sp.eye(N + 1), -sp.eye(n)) + sp.kron(sp.eye(N + 1, k=-1), A)
    Bu = sp.kron(sp.vstack([sp.csc_matrix((1, N)), sp.eye(N)]), B)
    Aeq = sp.hstack([Ax, Bu])
    leq = np.concatenate([-x0, -(d @ E.T).ravel()])
    Aineq = sp.eye((N + 1) * n + N * m)
    lineq = np.concatenate([np.tile(xmin, N + 1), np.tile(umin, N)])
    uineq = np.concatenate([np.tile(xmax, N + 1), np.tile(umax, N)])
    lineq[:n], uineq[:n] = -np.inf, np.inf  # x_0 is fixed by the dynamics rows
    solver = osqp.OSQP()
    solver.setup(
        P, q, sp.vstack([Aeq, Aineq], format="csc"), np.concatenate([leq, lineq]), np.concatenate([leq, uineq]),
        eps_abs=1e-9, eps_rel=1e-9, max_iter=200000, polish=True, verbose=False,
    )  # fmt: skip
    res = solver.solve(raise_error=False)
    return res.x[(N + 1) * n :].reshape(N, m)


def test_quadratic_mpc_matches_osqp():
    p = plant(4)
    umin, umax = np.array([-0.7, -1.0]), np.array([0.5, 1.0])
    QN = np.asarray(lqr(p["A"], p["B"], p["Q"], p["R"])[1])
    mpc = LinearMPC(
        p["A"], p["B"], N, p["Q"], p["R"], QN=QN, xref=p["xref"], umin=umin, umax=umax, xmin=XMIN, xmax=XMAX,
        E=p["E"], eps_abs=1e-7, eps_rel=1e-7,
    )  # fmt: skip
    sol = mpc.solve(p["x0"], p["d"])
    assert bool(is_successful(sol.status))
    np.testing.assert_allclose(sol.u, osqp_sparse_mpc(p, QN, umin, umax, XMIN, XMAX), atol=1e-5)


def test_soft_constraints_keep_the_controller_feasible():
    p = plant(5)
    x0 = p["x0"].copy()
    x0[0] = 8.0  # far outside |x_0| <= 1.5: hard constraints cannot be met at t = 1
    kw = dict(umin=-0.2, umax=0.2, xmin=XMIN, xmax=XMAX, E=p["E"], eps_abs=1e-6, eps_rel=1e-6)
    hard = LinearMPC(p["A"], p["B"], N, p["Q"], p["R"], **kw).solve(x0, p["d"])
    soft = LinearMPC(p["A"], p["B"], N, p["Q"], p["R"], soft_penalty=50.0, **kw).solve(x0, p["d"])
    assert status_name(hard.status) == "primal_infeasible"
    assert bool(is_successful(soft.status))
    q = dict(p, x0=x0, xref=np.zeros((N + 1, 4)))
    u_ref, f_ref = cvxpy_mpc(q, 0.0, 0.0, 0.0, -0.2, 0.2, XMIN, XMAX, soft=50.0)
    np.testing.assert_allclose(soft.u, u_ref, atol=1e-3)
    assert abs(float(soft.objective) - f_ref) <= 1e-4 * abs(f_ref)


def test_vmap_batch_shift_and_time_varying_reference():
    p = plant(6)
    mpc = LinearMPC(
        p["A"], p["B"], N, p["Q"], p["R"], umin=-1.0, umax=1.0, xmin=XMIN, xmax=XMAX, alpha=0.1, E=p["E"],
        eps_abs=1e-6, eps_rel=1e-6,
    )  # fmt: skip
    x0s = 0.5 * np.random.default_rng(0).normal(size=(64, 4))
    solve = jax.jit(jax.vmap(lambda x: mpc.solve(x, p["d"], xref=p["xref"])))
    sols = solve(x0s)
    assert np.all(np.asarray(is_successful(sols.status)))
    assert np.all(np.isfinite(np.asarray(sols.u)))
    for i in (0, 63):
        u_ref, _ = cvxpy_mpc(dict(p, x0=x0s[i]), 0.1, 0.0, 0.0, -1.0, 1.0, XMIN, XMAX)
        np.testing.assert_allclose(sols.u[i], u_ref, atol=1e-3)
    # closed loop: the shifted previous solution is a better start than zero
    first = mpc.solve(x0s[0], p["d"])
    x1 = np.asarray(first.x[1])
    cold = mpc.solve(x1, p["d"])
    warm = mpc.solve(x1, p["d"], warm_start=mpc.shift(first))
    assert bool(is_successful(warm.status))
    assert int(warm.iterations) < int(cold.iterations)
    np.testing.assert_allclose(warm.u, cold.u, atol=1e-4)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(horizon=0), "horizon"),
        (dict(umin=2.0, umax=1.0), "umin"),
        (dict(Q=np.eye(3)), "Q"),
        (dict(alpha=-1.0), "alpha"),
        (dict(method="fista", xmin=-1.0), "fista"),
        (dict(adaptive_rho_rule="boyd"), "adaptive_rho_rule"),
        (dict(adaptive_rho_tolerance=0.5), "adaptive_rho_tolerance"),
    ],
)
def test_bad_configuration_raises(kw, match):
    args = dict(A=np.eye(2), B=np.ones((2, 1)), horizon=3, Q=np.eye(2), R=np.eye(1))
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        LinearMPC(**args)


def test_bad_state_raises():
    mpc = LinearMPC(np.eye(2), np.ones((2, 1)), 3, np.eye(2), np.eye(1))
    with pytest.raises(ValueError, match="x0"):
        mpc.solve(jnp.zeros(3))


@pytest.mark.parametrize("how", ["method", "object"])
def test_interior_point_mpc_matches_cvxpy(how):
    """``LinearMPC(..., method="ipm")`` and ``solver=InteriorPoint(...)``: the same controller, at the
    reference optimum (state constraints hard, ℓ1 and hinge on)."""
    p = plant(5)
    kw = dict(alpha=0.3, beta=2.0, rho=0.2)
    opts = dict(method="ipm", eps_abs=1e-9, eps_rel=1e-9) if how == "method" else dict(solver=InteriorPoint(eps_abs=1e-9, eps_rel=1e-9))
    mpc = LinearMPC(
        p["A"], p["B"], N, p["Q"], p["R"], xref=p["xref"], umin=-1.0, umax=1.0, xmin=XMIN, xmax=XMAX,
        c=p["c"], E=p["E"], **opts, **kw,
    )  # fmt: skip
    assert mpc.method == "ipm"
    sol = mpc.solve(p["x0"], p["d"])
    u_ref, f_ref = cvxpy_mpc(p, umin=-1.0, umax=1.0, xmin=XMIN, xmax=XMAX, **kw)
    assert bool(is_successful(sol.status))
    assert abs(float(sol.objective) - f_ref) <= 1e-6 * abs(f_ref)
    np.testing.assert_allclose(sol.u, u_ref, atol=1e-5)


@pytest.mark.parametrize("method", ["admm", "ipm"])
def test_inputs_inside_their_boxes_exactly_at_default_tolerance(method):
    """Random ℓ1/hinge MPCs at the default tolerance: every returned input within [umin, umax] with no slack
    (ADMM's iterate used to leave the box by up to 6.5e-5)."""
    worst = 0.0
    for seed in range(6):
        p = plant(10 + seed)
        mpc = LinearMPC(
            p["A"], p["B"], N, p["Q"], p["R"], xref=3.0 * p["xref"], umin=-0.2, umax=0.3, c=p["c"], E=p["E"],
            alpha=0.3, beta=2.0, rho=0.1, method=method,
        )  # fmt: skip
        sols = jax.vmap(lambda x0: mpc.solve(x0, p["d"]))(5.0 * np.random.default_rng(seed).normal(size=(16, 4)))
        u = np.asarray(sols.u)
        assert np.any(np.isclose(u, 0.3, atol=1e-6)) or np.any(np.isclose(u, -0.2, atol=1e-6))  # the boxes are active
        worst = max(worst, float(np.max(u - 0.3)), float(np.max(-0.2 - u)))
    assert worst <= 0.0


def test_fista_mpc_gradient_matches_finite_differences():
    """Reverse mode through LinearMPC(method="fista") at its defaults (implicit differentiation of the
    proximal-gradient fixed point), against central differences of the cvxpy optimum."""
    p = plant(6)
    kw = dict(alpha=0.3, beta=2.0, rho=0.2)
    w = np.random.default_rng(0).normal(size=(N, 2))

    def mpc(x0_scale):
        return LinearMPC(p["A"], p["B"], N, p["Q"], p["R"], xref=p["xref"], umin=-1.0, umax=1.0, c=p["c"],
                         E=p["E"], method="fista", **kw)  # fmt: skip

    ctrl = mpc(1.0)
    grad = jax.grad(lambda x0: jnp.sum(ctrl.solve(x0, p["d"]).u * w))(jnp.asarray(p["x0"]))
    h = 1e-5
    fd = []
    for e in np.eye(4):
        plus = cvxpy_mpc(dict(p, x0=p["x0"] + h * e), umin=-1.0, umax=1.0, **kw)[0]
        minus = cvxpy_mpc(dict(p, x0=p["x0"] - h * e), umin=-1.0, umax=1.0, **kw)[0]
        fd.append(np.sum((plus - minus) * w) / (2 * h))
    assert np.all(np.isfinite(grad)) and np.max(np.abs(grad)) > 1e-3
    np.testing.assert_allclose(grad, fd, rtol=2e-3, atol=2e-4)


def test_solver_object_and_method_are_one_choice():
    args = dict(A=np.eye(2), B=np.ones((2, 1)), horizon=3, Q=np.eye(2), R=np.eye(1))
    assert LinearMPC(**args).solver == ADMM()
    assert LinearMPC(**args, eps_abs=1e-6).solver == ADMM(eps_abs=1e-6)
    with pytest.raises(ValueError, match="eps_abs"):
        LinearMPC(**args, solver=ADMM(), eps_abs=1e-6)
    with pytest.raises(ValueError, match="polish: not an option of InteriorPoint"):
        LinearMPC(**args, method="ipm", polish=True)
    with pytest.raises(ValueError, match="method"):
        LinearMPC(**args, method="simplex")


def test_throw_raises_with_the_status_message():
    mpc = LinearMPC(np.eye(2), np.ones((2, 1)), 3, np.eye(2), np.eye(1), umin=-1.0, umax=1.0, xmin=-0.1, xmax=0.1)
    assert status_name(mpc.solve(np.array([5.0, 5.0])).status) == "primal_infeasible"
    with pytest.raises(eqx.EquinoxRuntimeError, match="primal infeasible"):
        mpc.solve(np.array([5.0, 5.0]), throw=True)
    assert bool(is_successful(mpc.solve(np.zeros(2), throw=True).status))
