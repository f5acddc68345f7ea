"""KF, parallel KF and RTS smoothers against filterpy and closed-form Gaussian conditioning."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from filterpy.kalman import KalmanFilter
from scipy.stats import chi2, multivariate_normal

from jtwin.estimation import (
    KF,
    UKF,
    SquareRootUKF,
    parallel_kalman_filter,
    parallel_rts_smoother,
    rts_smoother,
    run_filter,
)
from jtwin.models import FunctionModel, LinearModel

N, M, NY, T = 3, 1, 2, 25

# Compiled once per (estimator, shapes) and reused across tests: compilation dominates test time.
run = eqx.filter_jit(run_filter)
smooth_jit = eqx.filter_jit(rts_smoother)
par_filter = eqx.filter_jit(parallel_kalman_filter)
par_smoother = eqx.filter_jit(parallel_rts_smoother)


def random_system(seed, with_input=True):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(N, N))
    A = 0.95 * A / np.max(np.abs(np.linalg.eigvals(A)))
    B = rng.normal(size=(N, M)) if with_input else None
    H = rng.normal(size=(NY, N))
    Lq, Lr = rng.normal(size=(N, N)), rng.normal(size=(NY, NY))
    Q = 0.1 * Lq @ Lq.T + 0.01 * np.eye(N)
    R = 0.1 * Lr @ Lr.T + 0.05 * np.eye(NY)
    us = rng.normal(size=(T, M)) if with_input else None
    return LinearModel(A, B, H, Q, R), us


def data(model, us, seed):
    x0 = np.random.default_rng(seed).normal(size=N)
    return np.array(model.simulate(jax.random.PRNGKey(seed), x0, T, us=us).ys)


M0, P0 = np.array([0.5, -0.2, 0.1]), np.diag([1.0, 2.0, 0.5])


def filterpy_kf(model, ys, us):
    """filterpy's KalmanFilter with our timing convention; missing entries by reduced H/R."""
    kf = KalmanFilter(N, NY, M)
    kf.F, kf.H, kf.Q, kf.R = (np.asarray(a) for a in (model.A, model.H, model.Q, model.R))
    kf.B = np.asarray(model.B)
    kf.x, kf.P = M0.copy(), P0.copy()
    means, covs, lls = [], [], []
    for k in range(T):
        obs = np.isfinite(ys[k])
        if obs.all():
            kf.update(ys[k])
            lls.append(kf.log_likelihood)
        elif obs.any():
            kf.update(ys[k][obs], R=kf.R[np.ix_(obs, obs)], H=kf.H[obs])
            lls.append(kf.log_likelihood)
        else:
            lls.append(0.0)
        means.append(kf.x.copy())
        covs.append(kf.P.copy())
        kf.predict(u=None if us is None else us[k])
    return np.array(means), np.array(covs), np.array(lls)


def stacked_gaussian(model, us):
    """Joint Gaussian of (x[0..T-1], y[0..T-1]) in closed form: means [T,n], [T,ny] and the full covariances."""
    A, B, H, Q, R = (np.asarray(a) for a in (model.A, model.B, model.H, model.Q, model.R))
    mx = [M0]
    for k in range(T - 1):
        mx.append(A @ mx[-1] + B @ us[k])
    Pkk = [P0]
    for _ in range(T - 1):
        Pkk.append(A @ Pkk[-1] @ A.T + Q)
    Sxx = np.zeros((T * N, T * N))
    for j in range(T):
        for k in range(j, T):
            block = np.linalg.matrix_power(A, k - j) @ Pkk[j]  # Cov(x_k, x_j)
            Sxx[k * N : (k + 1) * N, j * N : (j + 1) * N] = block
            Sxx[j * N : (j + 1) * N, k * N : (k + 1) * N] = block.T
    Hb = np.kron(np.eye(T), H)
    Syy = Hb @ Sxx @ Hb.T + np.kron(np.eye(T), R)
    return np.array(mx), Hb @ np.concatenate(mx), Sxx, Hb, Syy


@pytest.fixture(scope="module")
def system():
    model, us = random_system(0)
    return model, us, data(model, us, 1)


def test_kf_equals_filterpy(system):
    model, us, ys = system
    res = run(KF(), model, M0, P0, ys, us)
    means, covs, lls = filterpy_kf(model, ys, us)
    np.testing.assert_allclose(res.means, means, atol=1e-10)
    np.testing.assert_allclose(res.covs, covs, atol=1e-10)
    np.testing.assert_allclose(res.log_likelihoods, lls, atol=1e-10)


def test_kf_equals_closed_form_batch_solution(system):
    model, us, ys = system
    res = run(KF(), model, M0, P0, ys, us)
    mx, my, Sxx, Hb, Syy = stacked_gaussian(model, us)
    total = multivariate_normal(my, Syy).logpdf(ys.ravel())
    np.testing.assert_allclose(res.log_likelihood, total, rtol=1e-10)
    # Filtered x[k] = E[x_k | y_0..k] by conditioning the joint Gaussian, checked at a few k.
    for k in (0, 7, T - 1):
        rows = slice(0, (k + 1) * NY)
        Sxy = (Sxx @ Hb.T)[k * N : (k + 1) * N, rows]
        gain = np.linalg.solve(Syy[rows, rows], Sxy.T).T
        mean = mx[k] + gain @ (ys[: k + 1].ravel() - my[rows])
        cov = Sxx[k * N : (k + 1) * N, k * N : (k + 1) * N] - gain @ Sxy.T
        np.testing.assert_allclose(res.means[k], mean, atol=1e-10)
        np.testing.assert_allclose(res.covs[k], cov, atol=1e-10)


def test_partial_missing_measurements(system):
    model, us, ys = system
    ys = ys.copy()
    ys[3, 0] = np.nan
    ys[5] = np.nan
    ys[9, 1] = np.nan
    res = run(KF(), model, M0, P0, ys, us)
    means, covs, lls = filterpy_kf(model, ys, us)
    np.testing.assert_allclose(res.means, means, atol=1e-10)
    np.testing.assert_allclose(res.covs, covs, atol=1e-10)
    np.testing.assert_allclose(res.log_likelihoods, lls, atol=1e-10)
    np.testing.assert_array_equal(np.asarray(res.num_observed)[[3, 5, 9, 0]], [1, 0, 1, 2])
    # Marginal likelihood of the observed entries only.
    _, my, _, _, Syy = stacked_gaussian(model, us)
    obs = np.isfinite(ys.ravel())
    total = multivariate_normal(my[obs], Syy[np.ix_(obs, obs)]).logpdf(ys.ravel()[obs])
    np.testing.assert_allclose(res.log_likelihood, total, rtol=1e-10)
    assert np.all(np.isfinite(res.means)) and np.all(res.innovations[5] == 0)


def loglik_fn(estimator, ys, us):
    return eqx.filter_jit(lambda model: run_filter(estimator, model, M0, P0, ys, us).log_likelihood)


def finite_difference(fn, model, where, h=1e-6):
    """Central differences of ``fn(model)`` w.r.t. every entry of the array ``where(model)``."""
    base = np.asarray(where(model))
    grad = np.zeros_like(base)
    for idx in np.ndindex(base.shape):
        step = np.zeros_like(base)
        step[idx] = h
        plus = fn(eqx.tree_at(where, model, jnp.asarray(base + step)))
        minus = fn(eqx.tree_at(where, model, jnp.asarray(base - step)))
        grad[idx] = (plus - minus) / (2 * h)
    return grad


def test_loglik_gradient_matches_finite_differences_with_missing_data(system):
    model, us, ys = system
    ys = ys.copy()
    ys[4, 1] = np.nan
    ys[11] = np.nan
    fn = loglik_fn(KF(), ys, us)
    grads = eqx.filter_grad(fn)(model)
    for where in (lambda m: m.A, lambda m: m.Q_factor, lambda m: m.R_factor, lambda m: m.H):
        g = np.asarray(where(grads))
        assert np.all(np.isfinite(g))
        np.testing.assert_allclose(g, finite_difference(fn, model, where), rtol=1e-5, atol=1e-7)
    g_ys = jax.grad(lambda y: run_filter(KF(), model, M0, P0, y, us).log_likelihood)(jnp.asarray(ys))
    assert np.all(np.isfinite(g_ys)) and np.all(g_ys[11] == 0)


def test_gating_rejects_and_counts_planted_outlier(system):
    model, us, ys = system
    clean = run(KF(gate=1e-4), model, M0, P0, ys, us)
    assert int(clean.num_rejected) == 0
    ys = ys.copy()
    ys[12, 0] += 50.0
    gated = run(KF(gate=1e-4), model, M0, P0, ys, us)
    assert int(gated.num_rejected) == 1 and bool(gated.rejected[12])
    assert chi2.sf(float(gated.nis[12]), 2) < 1e-4
    # The rejected step is skipped: identical to the filter with that measurement missing.
    ys[12] = np.nan
    skipped = run(KF(), model, M0, P0, ys, us)
    np.testing.assert_allclose(gated.means, skipped.means, atol=1e-12)
    np.testing.assert_allclose(gated.log_likelihood, skipped.log_likelihood, rtol=1e-12)


def test_rts_smoother_equals_filterpy():
    model, _ = random_system(3, with_input=False)  # filterpy's rts_smoother has no control input
    ys = data(model, None, 4)
    seq = run(KF(), model, M0, P0, ys)
    kf = KalmanFilter(N, NY)
    kf.F, kf.H, kf.Q, kf.R = (np.asarray(a) for a in (model.A, model.H, model.Q, model.R))
    xs, Ps, _, _ = kf.rts_smoother(np.asarray(seq.means), np.asarray(seq.covs))
    smooth = smooth_jit(KF(), model, seq)
    np.testing.assert_allclose(smooth.means, xs, atol=1e-10)
    np.testing.assert_allclose(smooth.covs, Ps, atol=1e-10)


def test_parallel_kf_and_smoother_equal_sequential(system):
    model, us, ys = system
    ys = ys.copy()
    ys[6, 1] = np.nan
    seq = run(KF(), model, M0, P0, ys, us)
    par = par_filter(model, M0, P0, ys, us)
    np.testing.assert_allclose(par.means, seq.means, atol=1e-8)
    np.testing.assert_allclose(par.covs, seq.covs, atol=1e-8)
    np.testing.assert_allclose(par.log_likelihoods, seq.log_likelihoods, atol=1e-8)
    np.testing.assert_allclose(par.next_cov, seq.next_cov, atol=1e-8)
    smooth, psmooth = smooth_jit(KF(), model, seq, us), par_smoother(model, seq, us)
    np.testing.assert_allclose(psmooth.means, smooth.means, atol=1e-8)
    np.testing.assert_allclose(psmooth.covs, smooth.covs, atol=1e-8)


def test_vmap_over_scenarios_equals_loop(system):
    model, us, ys = system
    batch = np.stack([ys, ys + 0.3, ys[::-1].copy()])
    batched = jax.jit(jax.vmap(lambda y: run_filter(KF(), model, M0, P0, y, us)))(batch)
    for i in range(3):
        single = run(KF(), model, M0, P0, batch[i], us)
        np.testing.assert_allclose(batched.means[i], single.means, atol=1e-12)
        np.testing.assert_allclose(batched.log_likelihood[i], single.log_likelihood, rtol=1e-12)


def test_float32_follows_input_dtype(system):
    model, us, ys = system
    model32 = jax.tree.map(lambda a: a.astype(jnp.float32) if eqx.is_inexact_array(a) else a, model)
    res = run(KF(), model32, M0.astype(np.float32), P0.astype(np.float32), ys.astype(np.float32), us.astype(np.float32))
    ref = run(KF(), model, M0, P0, ys, us)
    assert res.means.dtype == jnp.float32
    np.testing.assert_allclose(res.means, ref.means, atol=1e-3)


def test_singular_covariances_stay_finite():
    """Noise-free states (singular Q, P0) and a perfectly correlated measurement do not produce NaN."""
    A = np.array([[1.0, 0.1], [0.0, 1.0]])
    model = LinearModel(A, None, [[1.0, 0.0], [1.0, 0.0]], np.diag([0.0, 0.0]), np.diag([0.0, 1e-2]))
    ys = np.array(model.simulate(jax.random.PRNGKey(0), np.array([1.0, 0.5]), 10).ys)
    for est in (KF(), UKF(), SquareRootUKF()):
        res = run(est, model, np.zeros(2), np.zeros((2, 2)), ys)
        assert all(np.all(np.isfinite(a)) for a in (res.means, res.covs, res.log_likelihood)), type(est).__name__
        assert np.min(np.linalg.eigvalsh(np.asarray(res.covs))) > -1e-8


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(ys=np.zeros((T, 3))), "ys: expected shape"),
        (dict(ys=np.full((T, NY), np.inf)), "ys: contains ±inf"),
        (dict(cov0=np.array([[1.0, 2.0, 0], [0, 1.0, 0], [0, 0, 1.0]])), "cov0: covariance must be symmetric"),
        (dict(cov0=-np.eye(N)), "cov0: covariance must be positive semi-definite"),
        (dict(mean0=np.zeros(2)), "mean0: expected shape"),
        (dict(us=np.zeros((T, 2))), "us: expected shape"),
    ],
)
def test_bad_input_raises(system, kwargs, match):
    model, us, ys = system
    args = dict(mean0=M0, cov0=P0, ys=ys, us=us) | kwargs
    with pytest.raises(ValueError, match=match):
        run_filter(KF(), model, **args)


def test_kf_rejects_nonlinear_model_and_bad_gate():
    model = FunctionModel(lambda x, u, t: x, lambda x, u, t: x, np.eye(1), np.eye(1))
    with pytest.raises(ValueError, match="KF needs a jtwin.models.LinearModel"):
        run_filter(KF(), model, np.zeros(1), np.eye(1), np.zeros((3, 1)))
    with pytest.raises(ValueError, match="gate"):
        KF(gate=2.0)
