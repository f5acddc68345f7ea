"""Doubling DARE solver and LQR gain against scipy.linalg.solve_discrete_are."""

import numpy as np
import pytest
import scipy.linalg as sl

from jtwin.control import lqr


@pytest.mark.parametrize("seed", [0, 1])
def test_lqr_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    n, m = 5, 2
    A = rng.normal(size=(n, n))
    A *= 1.2 / np.max(np.abs(np.linalg.eigvals(A)))  # open-loop unstable
    B = rng.normal(size=(n, m))
    M = rng.normal(size=(n, n))
    Q = M @ M.T + 0.1 * np.eye(n)
    R = np.diag(rng.uniform(0.1, 2.0, m))
    K, X = lqr(A, B, Q, R)
    X_ref = sl.solve_discrete_are(A, B, Q, R)
    K_ref = np.linalg.solve(R + B.T @ X_ref @ B, B.T @ X_ref @ A)
    np.testing.assert_allclose(X, X_ref, rtol=1e-9, atol=1e-9 * np.abs(X_ref).max())
    np.testing.assert_allclose(K, K_ref, rtol=1e-8, atol=1e-9)
    assert np.max(np.abs(np.linalg.eigvals(A - B @ np.asarray(K)))) < 1.0


def test_lqr_bad_shape():
    with pytest.raises(ValueError, match="R"):
        lqr(np.eye(2), np.ones((2, 1)), np.eye(2), np.eye(2))
