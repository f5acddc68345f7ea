"""Synchronisation: time-offset analysis against brute-force ODE simulation, latency classification."""

import numpy as np
import pytest
import scipy.integrate
import scipy.linalg

import jtwin as jt

A = np.array([[0.0, 1.0], [0.0, 0.0]])  # double integrator
B = np.array([[0.0], [1.0]])
H = 0.1


def lqr_gain():
    Ad, Bd = scipy.linalg.expm(A * H), np.array([[H**2 / 2], [H]])
    P = scipy.linalg.solve_discrete_are(Ad, Bd, np.eye(2), np.eye(1))
    return -np.linalg.solve(Bd.T @ P @ Bd + np.eye(1), Bd.T @ P @ Ad)


def simulate_delayed(K, eps, steps, x0=(1.0, 0.0)):
    """Integrate the continuous plant with solve_ivp; u[k] = K x(kh) is applied on [kh+eps, (k+1)h+eps)."""
    x = np.array(x0, float)
    events = []  # (time the input starts acting, value)
    norms = []
    t = 0.0
    for k in range(steps):
        events.append((k * H + eps, float((K @ x)[0])))
        edges = sorted({t, t + H} | {s for s, _ in events if t < s < t + H})

        def u_at(s):
            active = [v for start, v in events if start <= s + 1e-12]
            return active[-1] if active else 0.0

        for a, b in zip(edges[:-1], edges[1:]):
            ua = u_at(a)
            sol = scipy.integrate.solve_ivp(lambda s, y: A @ y + B[:, 0] * ua, (a, b), x, rtol=1e-10, atol=1e-12)
            x = sol.y[:, -1]
        t += H
        norms.append(np.linalg.norm(x))
    return np.array(norms)


@pytest.mark.parametrize("eps", [0.0, 0.04, 0.1, 0.23])
def test_delayed_loop_matrix_matches_ode_simulation(eps):
    K = lqr_gain()
    M = np.asarray(jt.sync.delayed_loop_matrix(A, B, K, H, eps))
    z = np.zeros(M.shape[0])
    z[:2] = [1.0, 0.0]
    ref = simulate_delayed(K, eps, 12)
    for k in range(12):
        z = M @ z
        np.testing.assert_allclose(np.linalg.norm(z[:2]), ref[k], rtol=1e-7)


def test_critical_offset_matches_simulation_within_10_percent():
    K = lqr_gain()
    eps_c = jt.sync.critical_offset(A, B, K, H, eps_max=2.0)
    assert 0 < eps_c < 2.0
    # simulation: the smallest offset on a grid at which the state grows over a long run
    grid = np.linspace(0.02, 2.0, 100)
    growth = [simulate_delayed(K, e, 150)[-30:].mean() > 1.0 for e in grid[::4]]
    first_unstable = grid[::4][int(np.argmax(growth))]
    assert any(growth)
    assert abs(first_unstable - eps_c) <= 0.1 * eps_c + (grid[4] - grid[0]), (first_unstable, eps_c)
    assert jt.sync.delayed_spectral_radius(A, B, K, H, 0.9 * eps_c) < 1.0 < jt.sync.delayed_spectral_radius(A, B, K, H, 1.1 * eps_c)


def test_first_order_input_error_against_exact_flow():
    K = np.array([[-2.0, -3.0]])
    M = A + B @ K
    x = np.array([0.7, -0.4])
    for eps in (1e-2, 1e-3):
        exact = K @ (scipy.linalg.expm(-M * eps) @ x - x)  # K (x(t - eps) - x(t)) along the closed loop
        approx = np.asarray(jt.sync.input_error(K, A, B, x, eps))
        np.testing.assert_allclose(approx, exact, rtol=5 * eps)
    np.testing.assert_allclose(jt.sync.input_error_gain(K, A, B), np.linalg.norm(K @ M, 2))


def test_critical_offset_rejects_unstable_loop_and_bad_inputs():
    with pytest.raises(ValueError, match="unstable"):
        jt.sync.critical_offset(A, B, np.array([[1.0, 1.0]]), H, 1.0)
    with pytest.raises(ValueError, match="^eps:"):
        jt.sync.delayed_loop_matrix(A, B, lqr_gain(), H, -0.1)
    with pytest.raises(ValueError, match="^K:"):
        jt.sync.delayed_loop_matrix(A, B, np.ones((2, 2)), H, 0.1)


def test_classify_sync_strict_and_loose():
    rng = np.random.default_rng(0)
    t = np.arange(1000) * 0.02
    strict = jt.sync.classify_sync(t, t + 0.003 + 0.001 * rng.random(1000), bound=0.005)
    assert strict.kind == "strict" and strict.violations == 0 and strict.worst <= 0.004 + 1e-12
    jitter = 0.003 + rng.exponential(0.0005, 1000)  # unbounded tail
    loose = jt.sync.classify_sync(t, t + jitter, bound=0.005)
    assert loose.kind == "loose" and loose.violations == int(np.sum(jitter > 0.005)) > 0
    assert loose.p99 == pytest.approx(np.quantile(jitter, 0.99))
    shuffled = t.copy()
    shuffled[[10, 11]] = shuffled[[11, 10]]
    assert jt.sync.classify_sync(shuffled, shuffled + 0.001, bound=0.005).out_of_order == 1
    assert "loose" in str(loose)
    with pytest.raises(ValueError, match="^t_recv:"):
        jt.sync.classify_sync(t, t[:5], bound=0.1)


def test_classify_sync_negative_offsets_within_the_bound_are_strict():
    """|ε| ≤ ε̄ is the strict condition: an offset of −3 ms under a 5 ms bound is strict, −6 ms is not."""
    t = np.arange(200) * 0.02
    ahead = jt.sync.classify_sync(t, t - 0.003, bound=0.005)
    assert ahead.kind == "strict" and ahead.violations == 0 and ahead.worst == pytest.approx(0.003)
    mixed = t + np.where(np.arange(200) % 2, 0.004, -0.004)
    assert jt.sync.classify_sync(t, mixed, bound=0.005).kind == "strict"
    late = jt.sync.classify_sync(t, t - 0.006, bound=0.005)
    assert late.kind == "loose" and late.violations == 200
    # a receiver clock 10 ms ahead, corrected by clock_offset: ε = −1 ms, strict
    assert jt.sync.classify_sync(t, t + 0.009, bound=0.005, clock_offset=0.010).kind == "strict"
