"""EKF against filterpy's ExtendedKalmanFilter (hand-written Jacobians) and the validity ratio in closed form."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from filterpy.kalman import ExtendedKalmanFilter

from jtwin.estimation import EKF, UKF, run_filter, validity_ratio
from jtwin.models import FunctionModel
from jtwin.models.library import cstr_model

DT, G, T = 0.05, 9.81, 30
Q = np.diag([1e-3, 1e-2])
R = np.diag([0.05, 0.1])
M0, P0 = np.array([0.8, -0.3]), np.diag([0.3, 0.5])
run = eqx.filter_jit(run_filter)


def f(x, u, t):
    return jnp.stack([x[0] + DT * x[1], x[1] - DT * G * jnp.sin(x[0]) + DT * u[0]])


def h(x, u, t):
    return jnp.stack([2.0 * jnp.sin(x[0]), x[0] * x[1]])


def phi(x, u, t):
    return jnp.diag(jnp.stack([1.0 + x[0] ** 2, 1.0]))


def jac_f(x):
    return np.array([[1.0, DT], [-DT * G * np.cos(x[0]), 1.0]])


def jac_h(x):
    return np.array([[2.0 * np.cos(x[0]), 0.0], [x[1], x[0]]])


class PendulumEKF(ExtendedKalmanFilter):
    """filterpy's EKF with the nonlinear mean propagation (its default predict_x is linear)."""

    def predict_x(self, u=0):
        self.x = np.array([self.x[0] + DT * self.x[1], self.x[1] - DT * G * np.sin(self.x[0]) + DT * u[0]])


def filterpy_ekf(ys, us, noise_gain=None):
    ekf = PendulumEKF(2, 2, 1)
    ekf.x, ekf.P, ekf.Q, ekf.R = M0.copy(), P0.copy(), Q, R
    means, covs, lls = [], [], []
    for k in range(T):
        r = R if noise_gain is None else noise_gain(ekf.x) @ R @ noise_gain(ekf.x).T
        ekf.update(ys[k], jac_h, lambda x: np.array([2.0 * np.sin(x[0]), x[0] * x[1]]), R=r)
        means.append(ekf.x.copy())
        covs.append(ekf.P.copy())
        lls.append(ekf.log_likelihood)
        ekf.F = jac_f(ekf.x)
        ekf.predict(u=us[k])
    return np.array(means), np.array(covs), np.array(lls)


@pytest.fixture(scope="module")
def data():
    us = 0.5 * np.sin(np.arange(T) * 0.3)[:, None]
    model = FunctionModel(f, h, Q, R, input_dim=1, dt=DT)
    ys = np.array(model.simulate(jax.random.PRNGKey(0), jnp.array([1.0, 0.0]), T, us=us).ys)
    return model, us, ys


@pytest.mark.parametrize("jacobian", ["forward", "reverse"])
def test_ekf_equals_filterpy(data, jacobian):
    model, us, ys = data
    res = run(EKF(jacobian=jacobian), model, M0, P0, ys, us)
    means, covs, lls = filterpy_ekf(ys, us)
    np.testing.assert_allclose(res.means, means, atol=1e-8)
    np.testing.assert_allclose(res.covs, covs, atol=1e-8)
    np.testing.assert_allclose(res.log_likelihoods, lls, atol=1e-8)


def test_ekf_non_additive_noise_equals_filterpy(data):
    _, us, ys = data
    model = FunctionModel(f, h, Q, R, input_dim=1, dt=DT, noise_gain=phi)
    res = run(EKF(diagnose=False), model, M0, P0, ys, us)
    means, covs, lls = filterpy_ekf(ys, us, noise_gain=lambda x: np.diag([1.0 + x[0] ** 2, 1.0]))
    np.testing.assert_allclose(res.means, means, atol=1e-8)
    np.testing.assert_allclose(res.covs, covs, atol=1e-8)
    np.testing.assert_allclose(res.log_likelihoods, lls, atol=1e-8)


def test_validity_ratio_per_step_matches_closed_form_hessian(data):
    model, us, ys = data
    res = run(EKF(), model, M0, P0, ys, us)
    # Only ∂²f₁/∂x₀² = DT G sin(x₀) is non-zero.
    curvature = np.abs(DT * G * np.sin(np.asarray(res.means[:, 0])))
    expected = 0.5 * curvature * np.trace(np.asarray(res.covs), axis1=1, axis2=2) / np.sqrt(np.max(np.diag(Q)))
    np.testing.assert_allclose(res.diagnostics["validity_ratio"], expected, rtol=1e-10)
    zero_q = FunctionModel(f, h, np.zeros((2, 2)), R, input_dim=1, dt=DT)
    assert np.isinf(validity_ratio(zero_q, M0, P0, us[0]))


@pytest.mark.slow
def test_ekf_on_ode_model_uses_reverse_mode_and_agrees_with_ukf():
    """ODEModel's default diffrax adjoint is reverse-only: 'auto' must pick jacrev; EKF ≈ UKF on a mild problem."""
    model = cstr_model(dt=0.05, substeps=4, measure_concentration=True)
    us, ds = np.full((8, 1), 300.0), np.zeros((8, 2))
    traj = model.simulate(jax.random.PRNGKey(0), jnp.array([0.5, 350.0]), 8, us=us, ds=ds)
    mean0, cov0 = np.array([0.5, 350.0]), np.diag([1e-4, 0.25])
    ekf = run(EKF(diagnose=False), model, mean0, cov0, traj.ys, us, None, ds)
    ukf = run(UKF(), model, mean0, cov0, traj.ys, us, None, ds)
    assert np.all(np.isfinite(ekf.means))
    np.testing.assert_allclose(ekf.means, ukf.means, rtol=1e-4)


def test_validity_ratio_on_ode_model_matches_finite_difference_hessian():
    """Reverse-only diffrax adjoints: the Hessian goes through DirectAdjoint in forward mode."""
    model = cstr_model(substeps=4)
    mean, cov = jnp.array([0.5, 350.0]), jnp.diag(jnp.array([1e-4, 0.25]))
    u, d = jnp.array([300.0]), jnp.zeros(2)
    ratio = validity_ratio(model, mean, cov, u, 0.0, d)
    jac = jax.jacrev(lambda x: model.transition(x, u, 0.0, d))  # first derivatives: supported in reverse mode
    steps = jnp.array([1e-6, 1e-3])  # per-coordinate scales of Ca and T
    hess = jnp.stack([(jac(mean + h * e) - jac(mean - h * e)) / (2 * h) for h, e in zip(steps, jnp.eye(2))], axis=-1)
    q_root = jnp.sqrt(jnp.linalg.eigvalsh(model.Q)[-1])
    expected = 0.5 * jnp.sqrt(jnp.sum(hess**2)) * jnp.trace(cov) / q_root
    np.testing.assert_allclose(ratio, expected, rtol=1e-4)
