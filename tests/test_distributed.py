"""Consensus and decentralised ADMM on one device, against independent references (numpy/scipy/cvxpy)."""

import cvxpy as cp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.optimize
from jax.sharding import AxisType

import jtwin as jt
from jtwin.qp import is_successful, status_name

D = jt.distributed
N_AGENTS, ROWS, DIM = 8, 6, 4
TIGHT = {"tol": 1e-11, "rel_tol": 0.0}


def least_squares(x, data):
    return 0.5 * jnp.sum((data["A"] @ x - data["b"]) ** 2)


def quadratic(x, data):
    return 0.5 * x @ data["P"] @ x + data["q"] @ x


def logistic(x, data):
    return jnp.sum(jnp.logaddexp(0.0, -data["y"] * (data["A"] @ x))) + 0.05 * jnp.sum(x**2)


@pytest.fixture(scope="module")
def lsq():
    rng = np.random.default_rng(0)
    data = {"A": rng.normal(size=(N_AGENTS, ROWS, DIM)), "b": rng.normal(size=(N_AGENTS, ROWS))}
    optimum = scipy.linalg.lstsq(data["A"].reshape(-1, DIM), data["b"].reshape(-1))[0]
    return data, optimum


@pytest.fixture(scope="module")
def box_qp():
    """Σ_i ½ sᵀP_i s + q_iᵀs with different boxes per agent, solved centrally by cvxpy/Clarabel."""
    rng = np.random.default_rng(1)
    m = rng.normal(size=(N_AGENTS, DIM, DIM))
    data = {"P": m @ m.transpose(0, 2, 1) + 0.1 * np.eye(DIM), "q": 3.0 * rng.normal(size=(N_AGENTS, DIM))}
    lower = np.full((N_AGENTS, DIM), -np.inf)
    upper = np.full((N_AGENTS, DIM), np.inf)
    lower[0] = -0.5
    upper[1, :2] = 0.3
    lower[2, 2:] = 0.1
    s = cp.Variable(DIM)
    constraints = []
    for lo, hi in zip(lower, upper):
        constraints += [s[np.isfinite(lo)] >= lo[np.isfinite(lo)], s[np.isfinite(hi)] <= hi[np.isfinite(hi)]]
    cost = sum(0.5 * cp.quad_form(s, p) + q @ s for p, q in zip(data["P"], data["q"]))
    cp.Problem(cp.Minimize(cost), constraints).solve(solver="CLARABEL", tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    assert np.any(np.isclose(s.value, 0.3)) or np.any(np.isclose(s.value, 0.1)), "test design: a bound must be active"
    return data, (lower, upper), s.value


@pytest.mark.parametrize("x_update", ["quadratic", "newton", "lbfgs"])
def test_least_squares_matches_lstsq(lsq, x_update):
    data, optimum = lsq
    z, history = D.consensus_admm(least_squares, data, 1.0, 400, z0=jnp.zeros(DIM), x_update=x_update, **TIGHT)
    assert bool(is_successful(history.status)) and history.converged
    np.testing.assert_allclose(z, optimum, atol=1e-6, rtol=0)
    k = int(history.iterations)
    assert np.all(np.isfinite(history.primal_residual[:k])) and np.all(np.isnan(history.primal_residual[k:]))
    # the recorded objective at the last z equals the centralised optimal value
    np.testing.assert_allclose(history.objective[k - 1], 0.5 * np.sum((data["A"] @ optimum - data["b"]) ** 2), rtol=1e-9)


@pytest.mark.parametrize("x_update", ["quadratic", "newton"])
def test_box_constrained_quadratic_matches_cvxpy(box_qp, x_update):
    data, bounds, optimum = box_qp
    z, history = D.consensus_admm(
        quadratic, data, 1.0, 3000, z0=jnp.zeros(DIM), x_update=x_update, bounds=bounds, **TIGHT
    )
    assert history.converged, history.status_name
    np.testing.assert_allclose(z, optimum, atol=1e-6, rtol=0)


def test_nonquadratic_newton_matches_scipy():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(N_AGENTS, 10, DIM))
    data = {"A": a, "y": np.sign(a @ rng.normal(size=DIM) + 0.5 * rng.normal(size=(N_AGENTS, 10)))}
    flat_a, flat_y = a.reshape(-1, DIM), data["y"].reshape(-1)

    def total(s):
        return np.sum(np.logaddexp(0.0, -flat_y * (flat_a @ s))) + N_AGENTS * 0.05 * s @ s

    reference = scipy.optimize.minimize(total, np.zeros(DIM), method="BFGS", options={"gtol": 1e-12}).x
    z, history = D.consensus_admm(logistic, data, 1.0, 400, z0=jnp.zeros(DIM), x_update="newton", **TIGHT)
    assert history.converged
    np.testing.assert_allclose(z, reference, atol=1e-6, rtol=0)


def test_residual_balancing_changes_rho_and_budget_reports_max_iter(lsq):
    data, _ = lsq
    _, history = D.consensus_admm(least_squares, data, 1e-3, 400, z0=jnp.zeros(DIM), x_update="quadratic", **TIGHT)
    k = int(history.iterations)
    assert history.rho[0] == 1e-3 and history.rho[k - 1] > 1e-3  # ρ far too small: balancing raises it
    _, short = D.consensus_admm(least_squares, data, 1e-3, 5, z0=jnp.zeros(DIM), x_update="quadratic", **TIGHT)
    assert status_name(short.status) == "max_iterations_reached" and short.status_name == "max_iterations_reached" and int(short.iterations) == 5


def test_overflow_inside_jit_reports_numerical_error():
    data = {"P": np.tile(1e308 * np.eye(2), (2, 1, 1)), "q": np.ones((2, 2))}
    z, history = D.consensus_admm(quadratic, data, 1.0, 50, z0=jnp.ones(2), x_update="newton")
    assert status_name(history.status) == "numerical_error" and int(history.iterations) < 50


def test_float32_follows_input_dtype(lsq):
    data, optimum = lsq
    data32 = {k: v.astype(np.float32) for k, v in data.items()}
    z, history = D.consensus_admm(least_squares, data32, 1.0, 300, z0=jnp.zeros(DIM, jnp.float32), x_update="quadratic")
    assert z.dtype == jnp.float32 and history.primal_residual.dtype == jnp.float32
    np.testing.assert_allclose(z, optimum, atol=1e-3)


def test_decentralized_ring_converges_to_the_centralised_optimum(lsq, box_qp):
    mixing = D.metropolis_weights(D.ring_graph(N_AGENTS))
    data, optimum = lsq
    x, history = D.decentralized_admm(least_squares, data, mixing, 1.0, 4000, z0=jnp.zeros(DIM), x_update="quadratic", **TIGHT)
    assert history.converged and x.shape == (N_AGENTS, DIM)
    np.testing.assert_allclose(x, np.broadcast_to(optimum, x.shape), atol=1e-6, rtol=0)
    data, bounds, optimum = box_qp
    x, history = D.decentralized_admm(
        quadratic, data, mixing, 1.0, 4000, z0=jnp.zeros(DIM), x_update="quadratic", bounds=bounds, **TIGHT
    )
    assert history.converged
    np.testing.assert_allclose(x, np.broadcast_to(optimum, x.shape), atol=1e-6, rtol=0)


def test_metropolis_weights_and_ring_spectral_gap_closed_forms():
    path = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]])
    expected = np.array([[2 / 3, 1 / 3, 0], [1 / 3, 1 / 3, 1 / 3], [0, 1 / 3, 2 / 3]])
    np.testing.assert_allclose(D.metropolis_weights(path), expected, atol=1e-15)
    # ring with Metropolis weights: W = (I + S + Sᵀ)/3, λ₂ = (1 + 2cos(2π/N))/3
    np.testing.assert_allclose(
        D.spectral_gap(D.metropolis_weights(D.ring_graph(10))), 2.0 * (1.0 - np.cos(2 * np.pi / 10)) / 3.0, rtol=1e-12
    )


def test_disconnected_graph_is_rejected(lsq):
    data, _ = lsq
    two_rings = scipy.linalg.block_diag(D.ring_graph(4), D.ring_graph(4))
    with pytest.raises(ValueError, match="disconnected.*2 components"):
        D.metropolis_weights(two_rings)
    mixing = scipy.linalg.block_diag(*(2 * [D.metropolis_weights(D.ring_graph(4))]))
    with pytest.raises(ValueError, match="mixing: the communication graph is disconnected"):
        D.decentralized_admm(least_squares, data, mixing, 1.0, 10, z0=jnp.zeros(DIM))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rho": 0.0}, "rho"),
        ({"rho": np.nan}, "rho"),
        ({"iterations": 0}, "iterations"),
        ({"z0": jnp.zeros((2, 2))}, "z0"),
        ({"agent_data": {"A": np.zeros((8, 6, 4)), "b": np.zeros((7, 6))}}, "agent_data.*disagree"),
        ({"agent_data": {"A": np.full((8, 6, 4), np.nan), "b": np.zeros((8, 6))}}, "agent_data.*NaN"),
        ({"bounds": (np.zeros((8, 3)), np.ones((8, 3)))}, r"bounds\[0\].*\(8, 4\)"),
        ({"bounds": (np.ones((8, 4)), np.zeros((8, 4)))}, "lower <= upper"),
        ({"bounds": (np.zeros((8, 4)), np.ones((8, 4))), "x_update": "lbfgs"}, "LBFGSSolver does not support box"),
        ({"x_update": "cholesky"}, "x_update"),
        ({"local_objective": logistic, "agent_data": {"A": np.ones((8, 6, 4)), "y": np.ones((8, 6))},
          "x_update": "quadratic"}, "quadratic local_objective"),
        ({"mesh": jax.make_mesh((1,), ("batch",), axis_types=(AxisType.Explicit,))}, "mesh.*'agents' axis"),
    ],
)
def test_bad_inputs_raise_value_errors_naming_the_argument(lsq, kwargs, match):
    data, _ = lsq
    call = {"local_objective": least_squares, "agent_data": data, "rho": 1.0, "iterations": 10, "z0": jnp.zeros(DIM)}
    call.update(kwargs)
    with pytest.raises(ValueError, match=match):
        D.consensus_admm(**call)
