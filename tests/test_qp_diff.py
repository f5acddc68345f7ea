"""Implicit and unrolled derivatives of QP and MPC solutions against central finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jtwin.control import LinearMPC
from jtwin.qp import is_successful, solve_qp


def qp_data():
    rng = np.random.default_rng(0)
    n, m = 5, 6
    M = rng.normal(size=(n, n))
    P = M @ M.T + 0.5 * np.eye(n)
    q = rng.normal(size=n)
    A = rng.normal(size=(m, n))
    l = np.array([-0.3, -np.inf, -1.0, 0.2, -0.5, 0.1])
    u = np.array([0.1, 0.4, 1.0, 0.2, np.inf, 2.0])
    return P, q, A, l, u


def central_fd(f, x, h=1e-6):
    x = np.asarray(x, float)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


@pytest.mark.parametrize("mode", ["implicit", "unrolled"])
def test_qp_gradients_match_finite_differences(mode):
    P, q, A, l, u = qp_data()
    w_x = np.linspace(1.0, 2.0, 5)
    w_y = np.linspace(-1.0, 1.0, 6)
    kw = dict(eps_abs=1e-10, eps_rel=1e-10, max_iter=3000 if mode == "unrolled" else 20000, differentiation=mode)

    def loss(P, q, A, l, u):
        sol = solve_qp(P, q, A, l, u, **kw)
        return sol.x @ w_x + sol.y @ w_y

    ref = solve_qp(P, q, A, l, u, eps_abs=1e-10, eps_rel=1e-10, polish=True)
    active = np.abs(np.asarray(ref.y)) > 1e-8
    assert bool(is_successful(ref.status)) and 0 < active.sum() < 6  # a mix of active and inactive rows

    fd_loss = lambda *a: float(  # noqa: E731
        (lambda s: s.x @ w_x + s.y @ w_y)(solve_qp(*a, eps_abs=1e-12, eps_rel=1e-12, max_iter=50000, polish=True))
    )
    grads = jax.grad(loss, argnums=(0, 1, 2, 3, 4))(*(jnp.asarray(v) for v in (P, q, A, l, u)))
    np.testing.assert_allclose(grads[1], central_fd(lambda v: fd_loss(P, v, A, l, u), q), atol=1e-4, rtol=1e-4)
    eq = l == u  # moving one side of an equality row alone is not a valid QP: move both
    g_eq = central_fd(lambda t: fd_loss(P, q, A, l + t[0] * eq, u + t[0] * eq), np.zeros(1))[0]
    np.testing.assert_allclose(np.sum(np.where(eq, grads[3] + grads[4], 0.0)), g_eq, atol=1e-4, rtol=1e-4)
    fin = np.isfinite(l) & ~eq
    g_l = central_fd(lambda v: fd_loss(P, q, A, np.where(fin, v, l), u), np.where(fin, l, 0.0))
    np.testing.assert_allclose(np.where(fin, grads[3], 0.0), np.where(fin, g_l, 0.0), atol=1e-4, rtol=1e-4)
    fin = np.isfinite(u) & ~eq
    g_u = central_fd(lambda v: fd_loss(P, q, A, l, np.where(fin, v, u)), np.where(fin, u, 0.0))
    np.testing.assert_allclose(np.where(fin, grads[4], 0.0), np.where(fin, g_u, 0.0), atol=1e-4, rtol=1e-4)
    g_A = central_fd(lambda v: fd_loss(P, q, v, l, u), A)
    np.testing.assert_allclose(grads[2], g_A, atol=1e-4, rtol=1e-4)
    # P along a symmetric direction (P is symmetric by definition)
    S = np.outer(np.arange(5.0), np.ones(5))
    S = S + S.T
    g_dir = central_fd(lambda t: fd_loss(P + t[0] * S, q, A, l, u), np.zeros(1))[0]
    np.testing.assert_allclose(np.sum(np.asarray(grads[0]) * S), g_dir, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("mode", ["implicit", "unrolled"])
def test_mpc_gradients_wrt_state_and_weight(mode):
    rng = np.random.default_rng(1)
    n, m, N = 3, 2, 5
    A = np.array([[1.0, 0.1, 0.0], [0.0, 1.0, 0.1], [0.0, 0.0, 0.9]])
    B = rng.normal(size=(n, m)) * 0.3
    x0 = np.array([1.0, -0.5, 0.3])
    QN = np.eye(n) * 5.0

    def first_input(x0, qdiag, mode, eps):
        mpc = LinearMPC(
            A, B, N, jnp.diag(qdiag), 0.1 * jnp.eye(m), QN=QN, umin=-0.3, umax=0.3, alpha=0.05,
            eps_abs=eps, eps_rel=eps, max_iter=3000 if mode == "unrolled" else 20000, differentiation=mode,
            polish=mode == "implicit",
        )  # fmt: skip
        sol = mpc.solve(x0)
        return sol.u[0] @ np.array([1.0, -2.0]) + 0.1 * sol.u[1].sum()

    qdiag = np.array([1.0, 2.0, 0.5])
    g_x0, g_q = jax.grad(first_input, argnums=(0, 1))(jnp.asarray(x0), jnp.asarray(qdiag), mode, 1e-10)
    fd = lambda f, v: central_fd(lambda w: float(f(w)), v)  # noqa: E731
    np.testing.assert_allclose(g_x0, fd(lambda v: first_input(v, qdiag, "implicit", 1e-12), x0), atol=1e-4, rtol=1e-3)
    np.testing.assert_allclose(g_q, fd(lambda v: first_input(x0, v, "implicit", 1e-12), qdiag), atol=1e-4, rtol=1e-3)


def test_implicit_gradient_with_degenerate_active_set():
    """A duplicated active row makes the KKT matrix singular: the adjoint stays finite and the
    gradient w.r.t. ``q`` still equals central finite differences of the solution."""
    P = np.diag([1.0, 2.0, 3.0])
    a = np.array([1.0, 1.0, 1.0])
    A = np.stack([a, a, [1.0, -1.0, 0.0]])
    l = np.array([-np.inf, -np.inf, -5.0])
    u = np.array([-1.0, -1.0, 5.0])  # the first two rows are the same active constraint
    q0 = np.array([0.3, -0.2, 0.1])
    tight = dict(eps_abs=1e-11, eps_rel=1e-11, max_iter=40000)

    def f(q):
        sol = solve_qp(P, q, A, l, u, **tight)
        return jnp.sum(sol.x * jnp.array([1.0, 2.0, 3.0]))

    sol = solve_qp(P, q0, A, l, u, **tight)
    assert bool(is_successful(sol.status)) and float(A[0] @ sol.x) == pytest.approx(-1.0, abs=1e-8)
    grad = np.asarray(jax.grad(f)(jnp.asarray(q0)))
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad, central_fd(lambda q: float(f(q)), q0, h=1e-5), atol=1e-6)
