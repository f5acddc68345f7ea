"""UKF / square-root UKF against filterpy's UnscentedKalmanFilter (MerweScaledSigmaPoints) and the KF."""

import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from filterpy.kalman import MerweScaledSigmaPoints, UnscentedKalmanFilter
from scipy.linalg import block_diag

from jtwin.estimation import (
    KF,
    UKF,
    SquareRootUKF,
    augment_parameters,
    joint_prior,
    rts_smoother,
    run_filter,
    unscented_weights,
)
from jtwin.models import FunctionModel, LinearModel

DT, T = 0.05, 30
Q = np.diag([1e-3, 1e-2])
R = np.diag([0.05, 0.1])
M0, P0 = np.array([0.8, -0.3]), np.diag([0.3, 0.5])

run = eqx.filter_jit(run_filter)


class Pendulum(eqx.Module):
    """Discretised pendulum with learnable gravity ``g``; input = torque."""

    g: jax.Array

    def __call__(self, x, u, t):
        return jnp.stack([x[0] + DT * x[1], x[1] - DT * self.g * jnp.sin(x[0]) + DT * u[0]])


def h(x, u, t):
    return jnp.stack([2.0 * jnp.sin(x[0]), x[0] * x[1]])


def fx_np(x, dt, u=np.zeros(1), g=9.81):
    return np.array([x[0] + dt * x[1], x[1] - dt * g * np.sin(x[0]) + dt * u[0]])


def hx_np(x):
    return np.array([2.0 * np.sin(x[0]), x[0] * x[1]])


@pytest.fixture(scope="module")
def pendulum():
    model = FunctionModel(Pendulum(jnp.asarray(9.81)), h, Q, R, input_dim=1, dt=DT)
    us = 0.5 * np.sin(np.arange(T) * 0.3)[:, None]
    traj = model.simulate(jax.random.PRNGKey(0), jnp.array([1.0, 0.0]), T, us=us)
    return model, us, np.array(traj.ys), np.array(traj.xs)


def filterpy_ukf(alpha, beta, kappa, ys, us, fx=fx_np, hx=hx_np, m0=M0, p0=P0, q=Q, r=R):
    """filterpy's UKF in our timing convention (update with ys[k], then predict with us[k])."""
    points = MerweScaledSigmaPoints(len(m0), alpha, beta, kappa)
    ukf = UnscentedKalmanFilter(len(m0), ys.shape[1], DT, hx, fx, points)
    ukf.x, ukf.P, ukf.Q, ukf.R = m0.copy(), p0.copy(), q, r
    ukf.sigmas_f = points.sigma_points(ukf.x, ukf.P)  # filterpy expects predict() before the first update
    means, covs, lls = [], [], []
    for k in range(len(ys)):
        ukf.update(ys[k])
        means.append(ukf.x.copy())
        covs.append(ukf.P.copy())
        lls.append(ukf.log_likelihood)
        ukf.predict(u=us[k])
    return ukf, np.array(means), np.array(covs), np.array(lls)


@pytest.mark.parametrize("alpha, beta, kappa", [(1.0, 2.0, 0.0), (0.8, 2.0, 1.0)])
def test_ukf_equals_filterpy(pendulum, alpha, beta, kappa):
    model, us, ys, _ = pendulum
    res = run(UKF(alpha, beta, kappa), model, M0, P0, ys, us)
    _, means, covs, lls = filterpy_ukf(alpha, beta, kappa, ys, us)
    np.testing.assert_allclose(res.means, means, atol=1e-8)
    np.testing.assert_allclose(res.covs, covs, atol=1e-8)
    np.testing.assert_allclose(res.log_likelihoods, lls, atol=1e-8)
    sqrt = run(SquareRootUKF(alpha, beta, kappa), model, M0, P0, ys, us)
    np.testing.assert_allclose(sqrt.means, res.means, atol=1e-8)
    np.testing.assert_allclose(sqrt.covs, res.covs, atol=1e-8)
    np.testing.assert_allclose(sqrt.log_likelihood, res.log_likelihood, rtol=1e-8)


def test_ukf_rts_smoother_equals_filterpy(pendulum):
    model, _, ys, xs = pendulum
    us = np.zeros((T, 1))  # filterpy's UKF rts_smoother calls fx without inputs
    res = run(UKF(), model, M0, P0, ys, us)
    ukf, means, covs, _ = filterpy_ukf(1.0, 2.0, 0.0, ys, us)
    xs_s, ps_s, _ = ukf.rts_smoother(means, covs)
    smooth = eqx.filter_jit(rts_smoother)(UKF(), model, res, us)
    np.testing.assert_allclose(smooth.means, xs_s, atol=1e-8)
    np.testing.assert_allclose(smooth.covs, ps_s, atol=1e-8)


def test_ukf_and_sqrt_ukf_equal_kf_on_linear_model():
    rng = np.random.default_rng(5)
    A = rng.normal(size=(3, 3))
    A = 0.9 * A / np.max(np.abs(np.linalg.eigvals(A)))
    model = LinearModel(A, rng.normal(size=(3, 1)), rng.normal(size=(2, 3)), 0.1 * np.eye(3), 0.2 * np.eye(2))
    us = rng.normal(size=(T, 1))
    ys = np.array(model.simulate(jax.random.PRNGKey(1), np.zeros(3), T, us=us).ys)
    ys[4, 0] = np.nan
    ref = run(KF(), model, np.zeros(3), np.eye(3), ys, us)
    for est in (UKF(), SquareRootUKF(augment_process=True)):
        res = run(est, model, np.zeros(3), np.eye(3), ys, us)
        np.testing.assert_allclose(res.means, ref.means, atol=1e-8)
        np.testing.assert_allclose(res.covs, ref.covs, atol=1e-8)
        np.testing.assert_allclose(res.log_likelihood, ref.log_likelihood, rtol=1e-8)


def test_non_additive_measurement_noise_by_augmentation():
    """y = h(x) + Φ(x) v: equals filterpy's UKF run on the state augmented with v (R_aug = 0)."""
    A = np.array([[0.95, 0.1], [0.0, 0.9]])
    Rv = np.diag([0.04, 0.02])

    def h_(x, u, t):
        return jnp.stack([x[0] ** 2, jnp.sin(x[1])])

    def phi(x, u, t):
        return jnp.diag(jnp.stack([1.0 + x[0] ** 2, 1.0 + 0.5 * x[1]]))

    model = FunctionModel(lambda x, u, t: jnp.asarray(A) @ x, h_, Q, Rv, noise_gain=phi)
    ys = np.array(model.simulate(jax.random.PRNGKey(2), np.array([1.0, 0.5]), T).ys)
    res = run(UKF(), model, M0, P0, ys)

    def fx_aug(z, dt, u=None):
        return np.concatenate([A @ z[:2], np.zeros(2)])

    def hx_aug(z):
        return np.array([z[0] ** 2, np.sin(z[1])]) + np.diag([1 + z[0] ** 2, 1 + 0.5 * z[1]]) @ z[2:]

    _, means, covs, lls = filterpy_ukf(
        1.0, 2.0, 0.0, ys, np.zeros((T, 1)), fx_aug, hx_aug,
        np.concatenate([M0, np.zeros(2)]), block_diag(P0, Rv), block_diag(Q, Rv), np.zeros((2, 2)),
    )
    np.testing.assert_allclose(res.means, means[:, :2], atol=1e-8)
    np.testing.assert_allclose(res.covs, covs[:, :2, :2], atol=1e-8)
    np.testing.assert_allclose(res.log_likelihoods, lls, atol=1e-8)
    sqrt = run(SquareRootUKF(), model, M0, P0, ys)
    np.testing.assert_allclose(sqrt.means, res.means, atol=1e-8)
    np.testing.assert_allclose(sqrt.covs, res.covs, atol=1e-8)


def test_sqrt_ukf_stays_psd_where_ukf_loses_definiteness():
    """A near-perfect measurement of a strongly correlated, huge prior: P - K S Kᵀ cancels catastrophically."""
    model = LinearModel([[1.0, 1.0], [0.0, 1.0]], None, [[1.0, 0.0]], 1e-12 * np.eye(2), [[1e-10]])
    traj = model.simulate(jax.random.PRNGKey(0), jnp.array([1.0, 0.3]), 15)
    P0_ill = 1e8 * np.array([[1.0, 0.999], [0.999, 1.0]])
    ukf = run(UKF(), model, np.zeros(2), P0_ill, traj.ys)
    sqrt = run(SquareRootUKF(), model, np.zeros(2), P0_ill, traj.ys)
    assert np.linalg.eigvalsh(np.asarray(ukf.covs[0])).min() < 0  # the UKF's covariance is indefinite
    assert all(np.all(np.isfinite(a)) for a in (sqrt.means, sqrt.covs, sqrt.log_likelihood))
    assert np.linalg.eigvalsh(np.asarray(sqrt.covs)).min() >= -1e-20
    np.testing.assert_allclose(sqrt.means[3:], np.asarray(traj.xs)[3:], atol=1e-3)


def check_loglik_gradient(est, pendulum):
    """d log-likelihood / d(gravity, Q factor) by autodiff vs central finite differences."""
    model, us, ys, _ = pendulum
    fn = eqx.filter_jit(lambda m: run_filter(est, m, M0, P0, ys, us).log_likelihood)
    grad = eqx.filter_grad(fn)(model)
    for where, hstep in ((lambda m: m.f.g, 1e-5), (lambda m: m.Q_factor, 1e-7)):
        base = np.asarray(where(model))
        fd = np.zeros_like(base)
        for idx in np.ndindex(base.shape):
            step = np.zeros_like(base)
            step[idx] = hstep
            plus = fn(eqx.tree_at(where, model, base + step))
            minus = fn(eqx.tree_at(where, model, base - step))
            fd[idx] = (plus - minus) / (2 * hstep)
        np.testing.assert_allclose(np.asarray(where(grad)), fd, rtol=1e-5, atol=1e-6)


def test_ukf_loglik_gradient_matches_finite_differences(pendulum):
    check_loglik_gradient(UKF(), pendulum)


@pytest.mark.slow
def test_sqrt_ukf_loglik_gradient_matches_finite_differences(pendulum):
    check_loglik_gradient(SquareRootUKF(), pendulum)


def test_weights_match_filterpy_and_warn_on_negative_centre_weight():
    for n, (a, b, k) in ((3, (1.0, 2.0, 0.0)), (4, (0.3, 2.0, 1.0))):
        points = MerweScaledSigmaPoints(n, a, b, k)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wm, wc, gamma = unscented_weights(n, a, b, k)
        np.testing.assert_allclose(wm, points.Wm, rtol=1e-14)
        np.testing.assert_allclose(wc, points.Wc, rtol=1e-14)
    with pytest.warns(UserWarning, match="W0"):
        unscented_weights(4, 0.1, 2.0, 0.0)
    with pytest.raises(ValueError, match="alpha"):
        UKF(alpha=0.0)


def test_joint_state_parameter_estimation_tracks_unknown_pole():
    true = LinearModel([[0.95]], None, [[1.0]], [[0.1]], [[0.05]])
    ys = true.simulate(jax.random.PRNGKey(3), jnp.array([1.0]), 300).ys
    guess = LinearModel([[0.5]], None, [[1.0]], [[0.1]], [[0.05]])
    aug = augment_parameters(guess, lambda m: m.A, 1e-4)
    mean0, cov0 = joint_prior(aug, np.zeros(1), np.eye(1), 0.3)
    res = run(UKF(), aug, mean0, cov0, ys)
    x_hat, a_hat = aug.split(res.means[-1])
    sd = float(jnp.sqrt(res.covs[-1, 1, 1]))
    assert sd < 0.05 and abs(float(a_hat[0, 0]) - 0.95) < 3 * sd
