"""Polytopes, reachable-set tightening and the mRPI outer bound vs hand computations and brute force."""

import itertools

import numpy as np
import pytest
from scipy.optimize import linprog

from jtwin.uncertainty import Polytope, mrpi_outer, reachable_support

PHI = np.array([[0.5, 0.1], [0.0, 0.4]])
W = Polytope.box([-0.1, -0.2], [0.1, 0.2])


def test_tightening_matches_hand_computation():
    # h_{F_t}(d) = Σ_{i<t} Σ_k |((Φ^i)ᵀd)_k| w̄_k for the box W = [-w̄, w̄]:
    # d = e1: (Φ⁰)ᵀe1 = (1, 0) → 0.1;  Φᵀe1 = (0.5, 0.1) → 0.05 + 0.02 = 0.07;
    #          (Φ²)ᵀe1 = (0.25, 0.05 + 0.04) → 0.025 + 0.018 = 0.043.
    # d = e2: (0, 1) → 0.2; (0, 0.4) → 0.08; (0, 0.16) → 0.032.
    table = reachable_support(PHI, W, np.eye(2), 3)
    hand = np.array([[0.0, 0.0], [0.1, 0.2], [0.17, 0.28], [0.213, 0.312]])
    np.testing.assert_allclose(table, hand, atol=1e-14)


def test_tightening_matches_minkowski_vertices():
    """h_{F_t}(d) = max over all sums of W-vertex sequences (4^t points) — brute-force Minkowski sum."""
    rng = np.random.default_rng(0)
    D = rng.standard_normal((5, 2))
    table = reachable_support(PHI, W, D, 4)
    verts = np.array(list(itertools.product([-0.1, 0.1], [-0.2, 0.2])))
    powers = [np.linalg.matrix_power(PHI, i) for i in range(4)]
    for t in range(5):
        points = [sum((powers[i] @ v for i, v in enumerate(seq)), np.zeros(2)) for seq in itertools.product(verts, repeat=t)]
        np.testing.assert_allclose(table[t], np.max(np.asarray(points) @ D.T, axis=0), atol=1e-12)


def test_polytope_support_lp_equals_box_closed_form():
    general = Polytope(W.H, W.h)  # same set without the box fast path → scipy LPs
    D = np.random.default_rng(1).standard_normal((7, 2))
    np.testing.assert_allclose(general.support(D), W.support(D), atol=1e-9)
    tri = Polytope(np.array([[-1.0, 0.0], [0.0, -1.0], [1.0, 1.0]]), np.array([0.0, 0.0, 1.0]))
    assert {tuple(v) for v in np.round(tri.vertices(), 9)} == {(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)}
    assert tri.support(np.array([1.0, 2.0])) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="unbounded"):
        Polytope.box([-1.0, -np.inf], [1.0, 1.0]).support(np.array([0.0, -1.0]))
    with pytest.raises(ValueError, match="lo <= hi"):
        Polytope.box([1.0], [0.0])


def test_mrpi_outer_bound_contains_and_is_close_to_mrpi():
    eps = 1e-4
    S = mrpi_outer(PHI, W, eps=eps)
    D = np.vstack([np.eye(2), -np.eye(2), np.random.default_rng(2).standard_normal((20, 2))])
    deep = reachable_support(PHI, W, D, 200)[-1]  # ≈ h_{F_∞}: the tail is below 0.4^200
    hS = S.support(D)
    assert np.all(hS >= deep - 1e-12)  # F_∞ ⊆ S
    assert np.all(hS <= deep + eps * np.abs(D).sum(axis=1) + 1e-12)  # S ⊆ F_∞ ⊕ εB∞
    # S is RPI: h_{ΦS ⊕ W}(d) = h_S(Φᵀd) + h_W(d) ≤ h_S(d)
    assert np.all(S.support(D @ PHI) + W.support(D) <= hS + 1e-12)
    with pytest.raises(ValueError, match="Schur"):
        mrpi_outer(np.eye(2) * 1.01, W)
    with pytest.raises(ValueError, match="interior"):
        mrpi_outer(PHI, Polytope.box([0.0, -0.1], [0.1, 0.1]))


def test_outer_polytope_and_membership():
    S = mrpi_outer(PHI, W, eps=1e-3)
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    P = S.outer_polytope(np.column_stack([np.cos(angles), np.sin(angles)]))
    # random points of F_30 (sums of disturbance samples) lie inside; a far point does not
    rng = np.random.default_rng(3)
    e = np.zeros((2000, 2))
    for _ in range(30):
        e = e @ PHI.T + rng.uniform([-0.1, -0.2], [0.1, 0.2], size=(2000, 2))
    assert P.contains(e).all()
    assert not P.contains(np.array([1.0, 1.0]))
    res = linprog(np.zeros(2), A_ub=P.H, b_ub=P.h, bounds=[(None, None)] * 2, method="highs")
    assert res.status == 0
