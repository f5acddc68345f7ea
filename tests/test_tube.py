"""Closed-loop guarantees of tube MPC: no violations, recursive feasibility, convergence to the mRPI bound.

Example of Mayne, Seron & Raković (2005): double integrator, x₂ ≤ 2, |u| ≤ 1, ‖w‖∞ ≤ 0.1.
The same controller without tightening must violate the constraints (so the check can fail).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jtwin.control import TubeMPC, certify_invariance
from jtwin.qp import is_successful
from jtwin.uncertainty import Polytope

A = np.array([[1.0, 1.0], [0.0, 1.0]])
B = np.array([[0.5], [1.0]])
Q, R = np.eye(2), np.array([[0.01]])
X = Polytope.box([-np.inf, -np.inf], [np.inf, 2.0])
U = Polytope.box([-1.0], [1.0])
W = Polytope.box([-0.1, -0.1], [0.1, 0.1])
ANGLES = np.linspace(0, 2 * np.pi, 24, endpoint=False)
DIRS = np.column_stack([np.cos(ANGLES), np.sin(ANGLES)])


@pytest.fixture(scope="module")
def controllers():
    return TubeMPC(A, B, 9, Q, R, X, U, W), TubeMPC(A, B, 9, Q, R, X, U, W, tighten=False)


def _scenarios(n_init, n_seq, steps, seed):
    rng = np.random.default_rng(seed)
    x0 = np.column_stack([rng.uniform(-6.0, 6.0, n_init), rng.uniform(-2.0, 1.5, n_init)])
    w = rng.uniform(-0.1, 0.1, (n_init, n_seq, steps, 2))
    w[:, : n_seq // 2] = 0.1 * np.sign(w[:, : n_seq // 2])  # half the sequences on W's vertices
    return jnp.asarray(x0), jnp.asarray(w)


def _check(controllers, n_init, n_seq, steps, seed):
    tube, plain = controllers
    x0, w = _scenarios(n_init, n_seq, steps, seed)
    run = jax.vmap(tube.simulate)(x0, w)
    x, u, z = np.asarray(run.x), np.asarray(run.u), np.asarray(run.z)
    # zero violations of the real state and input, for every disturbance sequence
    assert x[..., 1].max() <= 2.0 + 1e-9
    assert np.abs(u).max() <= 1.0 + 1e-9
    # u = v + K(x − z): the nominal input v is shared by every sequence from one x0, and z⁺ = Az + Bv
    v = u - np.einsum("mn,iskn->iskm", np.asarray(tube.K), x[:, :, :-1] - z[:, :, :-1])
    np.testing.assert_allclose(v, np.broadcast_to(v[:, :1], v.shape), atol=1e-9)
    np.testing.assert_allclose(z[:, 0, 1:], z[:, 0, :-1] @ A.T + v[:, 0] @ B.T, atol=1e-9)
    # recursive feasibility: the nominal problem solved at every step
    assert np.all(np.asarray(is_successful(run.status)))
    # the tube: x − z in the mRPI outer bound S at all times; z → 0, so x converges to S
    S = tube.sets.S.outer_polytope(DIRS)
    assert S.contains(x - z, tol=1e-9).all()
    assert np.abs(z[..., -1, :]).max() < 1e-6
    assert S.contains(x[..., -1, :], tol=1e-6).all()
    # without tightening the same loop violates the constraints
    bad = jax.vmap(plain.simulate)(x0, w)
    assert np.asarray(bad.x)[..., 1].max() > 2.0 + 1e-3
    assert np.mean(np.asarray(bad.x)[..., 1].max(axis=-1) > 2.0 + 1e-9) > 0.05


def test_tube_closed_loop_guarantees(controllers):
    _check(controllers, n_init=5, n_seq=100, steps=60, seed=0)  # 500 sequences × 60 steps


@pytest.mark.slow
def test_tube_closed_loop_guarantees_full(controllers):
    _check(controllers, n_init=20, n_seq=500, steps=200, seed=1)  # 10,000 sequences × 200 steps


def test_tightening_tables_and_terminal_set(controllers):
    tube, plain = controllers
    Phi = A + B @ np.asarray(tube.K)
    # state row x₂ ≤ 2 after one step: h_W(e₂) = 0.1; after two: 0.1 + 0.1·(|Φ₂₁| + |Φ₂₂|)
    table = np.asarray(tube.state_table)[:, 0]
    assert table[0] == 0.0 and table[1] == pytest.approx(0.1)
    assert table[2] == pytest.approx(0.1 + 0.1 * np.abs(Phi[1]).sum())
    assert np.all(np.diff(table) >= -1e-15)
    assert np.all(np.asarray(plain.state_table) == 0.0)
    # X_f ⊆ tightened constraints and nominally invariant (exact LP certificate)
    assert certify_invariance(Phi, tube.sets.X_f, Y=tube.sets.Y).holds
    with pytest.raises(ValueError, match="W"):
        TubeMPC(A, B, 9, Q, R, X, U, Polytope.box([-0.1], [0.1]))
