"""Staged evaluation of user functions (the fast path for hand-written models) changes no number.

A user's Lorenz-96 RK4 step in a ``FunctionModel`` must filter like the library's ``lorenz96_model``
(the same arithmetic through jtwin's Butcher-tableau loop) and like filterpy, in the UKF, the EKF,
batched, and under ``grad``.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from filterpy.kalman import MerweScaledSigmaPoints, UnscentedKalmanFilter

from jtwin.estimation import EKF, UKF, run_filter
from jtwin.estimation.staging import flatten, plan, staged
from jtwin.models import FunctionModel
from jtwin.models.library import lorenz96_model

N, T, DT, SUBSTEPS = 8, 25, 0.05, 4
Q_STD, R_STD = 0.1, 1.0


class UserLorenz96(eqx.Module):
    """Lorenz-96 over one sample period as a user writes it: four unrolled RK4 substeps, ``roll`` stencils."""

    forcing: jax.Array

    def __call__(self, x, u, t, xp=jnp):
        def field(x):
            return (xp.roll(x, -1) - xp.roll(x, 2)) * xp.roll(x, 1) - x + self.forcing

        h = DT / SUBSTEPS
        for _ in range(SUBSTEPS):
            k1 = field(x)
            k2 = field(x + 0.5 * h * k1)
            k3 = field(x + 0.5 * h * k2)
            k4 = field(x + h * k3)
            x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        return x


def user_model(forcing=8.0):
    return FunctionModel(
        UserLorenz96(jnp.asarray(forcing)), lambda x, u, t: x, Q_STD**2 * np.eye(N), R_STD**2 * np.eye(N), dt=DT
    )


@pytest.fixture(scope="module")
def data():
    model = lorenz96_model(n=N, q_std=Q_STD, r_std=R_STD)
    x0 = 8.0 + jnp.sin(jnp.arange(N, dtype=float))
    traj = model.simulate(jax.random.PRNGKey(3), x0, T)
    return model, np.asarray(traj.ys), np.asarray(traj.xs[0]) + 0.5, np.eye(N)


def test_staged_rk4_stores_each_stage_input_and_keeps_the_numbers():
    f = UserLorenz96(jnp.asarray(8.0))
    x = 8.0 + jnp.sin(jnp.arange(40.0))
    fn = lambda x: f(x, None, 0.0)  # noqa: E731
    # 4 substeps x 4 stage inputs, the first one being the argument: 15 values stored, nothing else.
    assert sum(len(group) for group in plan(flatten(jax.make_jaxpr(fn)(x))).values()) == 15
    X = x + 0.1 * jax.random.normal(jax.random.PRNGKey(0), (81, 40))
    np.testing.assert_array_equal(jax.jit(staged(jax.vmap(fn)))(X), jax.jit(jax.vmap(fn))(X))
    np.testing.assert_array_equal(jax.jit(jax.vmap(staged(fn)))(X), jax.jit(jax.vmap(fn))(X))
    np.testing.assert_allclose(jax.jit(staged(jax.jacfwd(fn)))(x), jax.jacfwd(fn)(x), rtol=0, atol=1e-13)
    # grad goes through the custom_jvp (while loops are not reverse-differentiable), also for closed-over arrays
    g = jax.grad(lambda F, x: staged(lambda x: eqx.tree_at(lambda m: m.forcing, f, F)(x, None, 0.0))(x).sum())
    g_plain = jax.grad(lambda F, x: eqx.tree_at(lambda m: m.forcing, f, F)(x, None, 0.0).sum())
    np.testing.assert_allclose(g(jnp.asarray(8.0), x), g_plain(jnp.asarray(8.0), x), rtol=1e-13)


def test_functions_without_shared_stencils_and_reverse_jacobians_are_not_staged():
    x = jnp.linspace(0.0, 1.0, 6)
    assert plan(flatten(jax.make_jaxpr(lambda x: jnp.sin(x) * x + 1.0)(x))) == {}
    assert plan(flatten(jax.make_jaxpr(lambda x: jnp.stack([x[0] * x[1], x[2] + 1.0]))(x))) == {}
    # a reverse-mode Jacobian would recompute its cotangent sum in every loop (MAX_RECOMPUTATION)
    f = UserLorenz96(jnp.asarray(8.0))
    assert plan(flatten(jax.make_jaxpr(jax.jacrev(lambda x: f(x, None, 0.0)))(x + 8.0))) == {}


def test_ukf_user_model_equals_library_model_and_filterpy(data):
    model, ys, m0, P0 = data
    lib = run_filter(UKF(), model, m0, P0, ys)
    user = eqx.filter_jit(run_filter)(UKF(), user_model(), m0, P0, ys)
    np.testing.assert_allclose(user.means, lib.means, rtol=0, atol=1e-10)
    np.testing.assert_allclose(user.covs, lib.covs, rtol=0, atol=1e-10)
    np.testing.assert_allclose(user.log_likelihood, lib.log_likelihood, rtol=1e-12)

    points = MerweScaledSigmaPoints(N, alpha=1.0, beta=2.0, kappa=0.0)
    step = UserLorenz96(8.0)
    ukf = UnscentedKalmanFilter(N, N, DT, lambda x: x, lambda x, dt: step(x, None, 0.0, xp=np), points)
    ukf.x, ukf.P, ukf.Q, ukf.R = m0.copy(), P0.copy(), Q_STD**2 * np.eye(N), R_STD**2 * np.eye(N)
    ukf.sigmas_f = points.sigma_points(ukf.x, ukf.P)
    means = []
    for y in ys:
        ukf.update(y)
        means.append(ukf.x.copy())
        ukf.predict()
    np.testing.assert_allclose(user.means, np.array(means), rtol=0, atol=1e-10)


def test_ekf_user_model_equals_library_model(data):
    model, ys, m0, P0 = data
    lib = run_filter(EKF(), model, m0, P0, ys)
    user = eqx.filter_jit(run_filter)(EKF(), user_model(), m0, P0, ys)
    np.testing.assert_allclose(user.means, lib.means, rtol=0, atol=1e-10)
    np.testing.assert_allclose(user.covs, lib.covs, rtol=0, atol=1e-10)
    # the spec's ratio ½ ‖∇²f‖_F tr(Σ) / ‖Q‖^½ at the filtered beliefs, from a plain (unstaged) Hessian
    f = UserLorenz96(jnp.asarray(8.0))
    hessians = jax.vmap(jax.hessian(lambda x: f(x, None, 0.0)))(user.means)
    expected = 0.5 * np.sqrt(np.sum(hessians**2, axis=(1, 2, 3))) * np.trace(user.covs, axis1=1, axis2=2) / Q_STD
    np.testing.assert_allclose(user.diagnostics["validity_ratio"], expected, rtol=1e-10)


def test_batched_user_model_filters_and_gradient_equal_library_model(data):
    model, ys, m0, P0 = data
    batch = jnp.stack([ys, ys[::-1], 0.5 * ys])

    def loglik(model, ys):
        return run_filter(UKF(), model, m0, P0, ys).log_likelihood

    batched = eqx.filter_jit(lambda m, ys: jax.vmap(lambda y: loglik(m, y))(ys))
    np.testing.assert_allclose(batched(user_model(), batch), batched(model, batch), rtol=1e-12)
    # the forcing F: a leaf of the user's Module and of the library's vector field
    g_user = eqx.filter_grad(loglik)(user_model(), ys).f.forcing
    g_lib = eqx.filter_grad(loglik)(model, ys).vector_field.forcing
    np.testing.assert_allclose(g_user, g_lib, rtol=1e-9)
