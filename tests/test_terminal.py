"""Terminal ingredients vs scipy's DARE, direct evaluation of the decrease condition and brute-force admissible sets."""

import numpy as np
import pytest
import scipy.linalg
from scipy.optimize import linprog
from scipy.spatial import HalfspaceIntersection

from jtwin.control import TerminalCost, certify_decrease, certify_invariance, maximal_admissible_set, terminal_cost
from jtwin.uncertainty import Polytope

A = np.array([[1.0, 1.0], [0.0, 1.0]])
B = np.array([[0.5], [1.0]])
Q = np.eye(2)
R = np.array([[0.1]])
P_DARE = scipy.linalg.solve_discrete_are(A, B, Q, R)
K = -np.linalg.solve(R + B.T @ P_DARE @ B, B.T @ P_DARE @ A)  # u = Kx
PHI = A + B @ K


def ell(X, alpha=0.0, beta=0.0, rho=0.0):
    """Stage cost ℓ(x, Kx) with c = 1, evaluated directly in numpy on points [V, 2]."""
    U = X @ K.T
    return (
        np.einsum("vi,ij,vj->v", X, Q, X) + np.einsum("vi,ij,vj->v", U, R, U)
        + alpha * np.abs(U).sum(1) + beta * np.maximum(0.0, U.sum(1) - rho)
    )  # fmt: skip


def vf(Vf, X):
    P, L, mu = (np.asarray(a) for a in (Vf.P, Vf.L, Vf.mu))
    return np.einsum("vi,ij,vj->v", X, P, X) + (mu * np.max(X @ L.T, axis=1) if L.shape[0] else 0.0)


def points(rng, k=4000):
    radii = 10.0 ** rng.uniform(-7, 1, size=(k, 1))
    return radii * rng.standard_normal((k, 2))


def test_dare_terminal_cost_decreases_exactly_for_quadratic_cost():
    Vf = terminal_cost(A, B, K, Q, R)
    np.testing.assert_allclose(np.asarray(Vf.P), P_DARE, rtol=1e-9)
    assert float(Vf.mu) == 0.0
    X = points(np.random.default_rng(0))
    gap = vf(Vf, X @ PHI.T) - vf(Vf, X) + ell(X)
    np.testing.assert_allclose(gap, 0.0, atol=1e-9 * (1 + np.abs(ell(X)).max()))
    cert = certify_decrease(Vf, A, B, K, Q, R)
    assert cert.holds and cert.exact and cert.worst_margin == 0.0


def test_scaled_dare_for_nonsmooth_cost_and_quadratic_alone_fails():
    alpha, beta, rho = 0.3, 0.5, 0.2
    Vf = terminal_cost(A, B, K, Q, R, alpha=alpha, beta=beta, rho=rho)
    assert float(Vf.mu) > 0
    X = points(np.random.default_rng(1), 20000)
    gap = vf(Vf, X @ PHI.T) - vf(Vf, X) + ell(X, alpha, beta, rho)
    assert gap.max() <= 1e-10
    assert certify_decrease(Vf, A, B, K, Q, R, alpha, beta, None, rho).holds
    # a quadratic terminal cost, however scaled, cannot pay for α‖Kx‖₁ near the origin
    for gamma in (1.0, 100.0):
        quad = TerminalCost(gamma * Vf.P, np.zeros((0, 2)), np.asarray(0.0))
        cert = certify_decrease(quad, A, B, K, Q, R, alpha, beta, None, rho)
        assert not cert.holds and cert.worst_margin > 0
        w = cert.witness[None]
        assert (vf(quad, w @ PHI.T) - vf(quad, w) + ell(w, alpha, beta, rho))[0] == pytest.approx(cert.worst_margin)


def test_dare_scaling_for_a_non_lqr_gain():
    K2 = K * 0.7  # still stabilising, not optimal: the DARE P alone does not decrease enough
    Phi2 = A + B @ K2
    assert np.max(np.abs(np.linalg.eigvals(Phi2))) < 1
    Vf = terminal_cost(A, B, K2, Q, R, P=P_DARE)
    M = Q + K2.T @ R @ K2
    D = Phi2.T @ np.asarray(Vf.P) @ Phi2 - np.asarray(Vf.P) + M
    assert np.max(np.linalg.eigvalsh(D)) <= 1e-9  # decrease holds
    D1 = Phi2.T @ P_DARE @ Phi2 - P_DARE + M
    assert np.max(np.linalg.eigvalsh(D1)) > 0  # ... and needed the scaling
    # the smallest valid γ makes D singular
    assert np.max(np.linalg.eigvalsh(D)) == pytest.approx(0.0, abs=1e-8)


def _brute_force_set(Phi, H, h, offsets_fn, steps=60):
    """All rows HΦ^k x ≤ h − off_k for k ≤ steps, no redundancy removal; vertices by qhull."""
    rows = np.vstack([H @ np.linalg.matrix_power(Phi, k) for k in range(steps + 1)])
    rhs = np.concatenate([h - offsets_fn(k) for k in range(steps + 1)])
    return HalfspaceIntersection(np.hstack([rows, -rhs[:, None]]), np.zeros(2)).intersections, rows, rhs


def _same_vertex_set(a, b, tol=1e-6):
    assert all(np.min(np.linalg.norm(b - v, axis=1)) < tol for v in a)
    assert all(np.min(np.linalg.norm(a - v, axis=1)) < tol for v in b)


def test_maximal_admissible_set_matches_brute_force():
    Y = Polytope(np.array([[0.0, 1.0], [0.0, -1.0], [1.0, 0.0], [-1.0, 0.0], *K, *(-K)]), np.array([2.0, 2.0, 5.0, 5.0, 1.0, 1.0]))
    O = maximal_admissible_set(PHI, Y)
    ref, _, _ = _brute_force_set(PHI, Y.H, Y.h, lambda k: 0.0)
    _same_vertex_set(O.vertices(), ref)
    # membership on a grid equals the direct trajectory check x, Φx, Φ²x, ... ∈ Y
    g = np.linspace(-6, 6, 61)
    G = np.array(np.meshgrid(g, g)).reshape(2, -1).T
    traj = np.all([Y.contains(G @ np.linalg.matrix_power(PHI, k).T, tol=0) for k in range(80)], axis=0)
    inside = O.contains(G, tol=0)
    assert np.array_equal(inside, traj)
    assert certify_invariance(PHI, O, Y=Y).holds


def test_robust_maximal_admissible_set_matches_brute_force_and_is_certified():
    Y = Polytope(np.array([[0.0, 1.0], [0.0, -1.0], [1.0, 0.0], [-1.0, 0.0], *K, *(-K)]), np.array([2.0, 2.0, 5.0, 5.0, 1.0, 1.0]))
    W = Polytope(np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [1.0, 1.0]]), np.array([0.1, 0.1, 0.1, 0.1, 0.15]))
    O = maximal_admissible_set(PHI, Y, W)

    # h_{F_k}(H_j) = Σ_{i<k} max_{w∈W} H_jΦ^i w, each term one scipy LP
    terms = np.array([
        [-linprog(-d, A_ub=W.H, b_ub=W.h, bounds=[(None, None)] * 2, method="highs").fun for d in Y.H @ np.linalg.matrix_power(PHI, i)]
        for i in range(40)
    ])  # fmt: skip
    table = np.vstack([np.zeros(Y.H.shape[0]), np.cumsum(terms, axis=0)])
    ref, _, _ = _brute_force_set(PHI, Y.H, Y.h, lambda k: table[k], steps=40)
    _same_vertex_set(O.vertices(), ref)
    cert = certify_invariance(PHI, O, W=W, Y=Y)
    assert cert.holds and cert.exact
    # the nominal set is strictly larger and is NOT robustly invariant: the certificate finds it
    nominal = maximal_admissible_set(PHI, Y)
    bad = certify_invariance(PHI, nominal, W=W, Y=Y)
    assert not bad.holds and bad.worst_margin > 1e-3
    with pytest.raises(ValueError, match="empty"):
        maximal_admissible_set(PHI, Y, Polytope.box([-3.0, -3.0], [3.0, 3.0]))
