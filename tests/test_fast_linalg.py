"""Filter linear-algebra kernels (guarded Cholesky, joint-covariance whitening) and the direct fixed-step
Runge–Kutta path, against numpy/scipy, finite differences and diffrax."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jtwin.estimation._linalg import safe_cholesky, whitened_cross_covariance
from jtwin.models import RK4, ODEModel
from jtwin.models.library import lorenz96_model
from jtwin.models.ode import fixed_step_solve

RNG = np.random.default_rng(3)


def random_joint(ny=3, n=4):
    """A PD joint covariance [[S, Cᵀ], [C, P]] of (y, x)."""
    a = RNG.normal(size=(ny + n, ny + n))
    joint = a @ a.T + 0.5 * np.eye(ny + n)
    return joint[:ny, :ny], joint[ny:, :ny], joint[ny:, ny:]


def central_jacobian(fn, x, eps=1e-6):
    """d fn / d x by central differences (numpy), shape fn(x).shape + x.shape."""
    x = np.asarray(x, float)
    cols = []
    for i in range(x.size):
        e = np.zeros(x.size)
        e[i] = eps
        cols.append((np.asarray(fn(x + e.reshape(x.shape))) - np.asarray(fn(x - e.reshape(x.shape)))) / (2 * eps))
    return np.stack(cols, axis=-1).reshape(np.shape(fn(x)) + x.shape)


def test_safe_cholesky_value_and_gradient_match_numpy():
    s, _, _ = random_joint()
    np.testing.assert_allclose(safe_cholesky(jnp.asarray(s)), np.linalg.cholesky(s), rtol=1e-12)
    weights = RNG.normal(size=s.shape)
    loss = lambda a: np.sum(weights * np.linalg.cholesky(0.5 * (a + a.T)))  # noqa: E731
    grad = jax.grad(lambda a: jnp.sum(weights * safe_cholesky(a)))(jnp.asarray(s))
    np.testing.assert_allclose(grad, central_jacobian(loss, s), rtol=1e-6, atol=1e-8)


def test_safe_cholesky_repairs_singular_input_with_finite_gradient():
    v = RNG.normal(size=(3, 1))
    singular = v @ v.T  # rank one: plain Cholesky fails
    assert not np.all(np.isfinite(jnp.linalg.cholesky(jnp.asarray(singular))))
    chol = np.asarray(safe_cholesky(jnp.asarray(singular)))
    assert np.all(np.isfinite(chol))
    shift = np.diag(chol @ chol.T - singular)
    assert np.all(shift > 0) and np.allclose(shift, shift[0])  # A + s I with one s > 0
    assert np.allclose(np.tril(chol @ chol.T - singular, -1), 0.0, atol=1e-12)
    grad = jax.grad(lambda a: jnp.sum(safe_cholesky(a)))(jnp.asarray(singular))
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("posterior_pd", [True, False])
def test_whitened_cross_covariance_matches_numpy_in_both_branches(posterior_pd):
    s, c, p = random_joint()
    if not posterior_pd:  # P - C S⁻¹ Cᵀ indefinite: the joint factorisation fails, the fallback runs
        p = c @ np.linalg.solve(s, c.T) - 0.1 * np.eye(len(p))
    chol, whitened = whitened_cross_covariance(jnp.asarray(s), jnp.asarray(c), jnp.asarray(p))
    ref_chol = np.linalg.cholesky(s)
    np.testing.assert_allclose(chol, ref_chol, rtol=1e-10)
    np.testing.assert_allclose(whitened, c @ np.linalg.inv(ref_chol).T, rtol=1e-9)

    weights = RNG.normal(size=c.shape)

    def ref_loss(sc):
        s_, c_ = sc[: len(s)], sc[len(s) :]
        return np.sum(weights * (c_ @ np.linalg.inv(np.linalg.cholesky(0.5 * (s_ + s_.T))).T))

    def loss(sc):
        return jnp.sum(weights * whitened_cross_covariance(sc[: len(s)], sc[len(s) :], jnp.asarray(p))[1])

    sc = np.concatenate([s, c])
    np.testing.assert_allclose(jax.grad(loss)(jnp.asarray(sc)), central_jacobian(ref_loss, sc), rtol=1e-6, atol=1e-8)


def test_whitened_cross_covariance_vmapped_mixed_branches_has_finite_gradients():
    s, c, p = random_joint()
    bad = c @ np.linalg.solve(s, c.T) - 0.1 * np.eye(len(p))
    ps = jnp.asarray(np.stack([p, bad]))
    fn = jax.vmap(lambda cov, c: jnp.sum(whitened_cross_covariance(jnp.asarray(s), c, cov)[1]), in_axes=(0, None))
    grad = jax.grad(lambda c: jnp.sum(fn(ps, c)))(jnp.asarray(c))
    one = lambda c: jnp.sum(whitened_cross_covariance(jnp.asarray(s), c, jnp.asarray(p))[1])  # noqa: E731
    ref = 2 * jax.grad(one)(jnp.asarray(c))
    np.testing.assert_allclose(grad, ref, rtol=1e-10)




def forced_field(t, x, u, k):
    """A nonlinear, explicitly time-dependent field with a parameter ``k``."""
    return jnp.stack([x[1], -k * jnp.sin(x[0]) + 0.3 * jnp.cos(2.0 * t) - 0.1 * x[1] * x[0] ** 2])


@pytest.mark.parametrize("solver", [RK4(), diffrax.Tsit5(), diffrax.Heun()], ids=["rk4", "tsit5", "heun"])
def test_fixed_step_solve_equals_diffrax_value_and_gradient(solver):
    x0, t0, dt, substeps = jnp.array([0.7, -0.2]), 0.3, 0.4, 5

    def ours(k):
        return fixed_step_solve(lambda t, x: forced_field(t, x, None, k), solver.tableau, t0, x0, dt, substeps)

    def reference(k):
        term = diffrax.ODETerm(lambda t, x, args: forced_field(t, x, None, k))
        fixed = dict(stepsize_controller=diffrax.ConstantStepSize(), max_steps=substeps + 1)
        sol = diffrax.diffeqsolve(term, solver, t0, t0 + dt, dt / substeps, x0, **fixed)
        return sol.ys[-1]

    k = jnp.asarray(1.3)
    np.testing.assert_allclose(ours(k), reference(k), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(jax.jacrev(ours)(k), jax.jacrev(reference)(k), rtol=1e-11)


def test_ode_model_fixed_steps_follow_float32_and_match_diffrax():
    field, obs = (lambda t, x, u: forced_field(t, x, u, 1.0)), (lambda x, u, t: x)
    model = ODEModel(field, obs, 0.2, np.eye(2), np.eye(2), solver=RK4(), substeps=3)
    x32 = model.transition(jnp.array([0.5, 0.1], jnp.float32), jnp.zeros(0, jnp.float32), jnp.float32(0.0))
    assert x32.dtype == jnp.float32
    lorenz = lorenz96_model(n=8)  # float64 forcing: the float32 state still stays float32
    assert lorenz.transition(jnp.full(8, 8.0, jnp.float32), jnp.zeros(0, jnp.float32)).dtype == jnp.float32
    # Not the default adjoint: integrated by diffrax itself.
    backsolve = ODEModel(field, obs, 0.2, np.eye(2), np.eye(2), solver=RK4(), substeps=3, adjoint=diffrax.BacksolveAdjoint())
    x = jnp.array([0.5, 0.1])
    u = jnp.zeros(0)
    np.testing.assert_allclose(model.transition(x, u, 0.1), backsolve.transition(x, u, 0.1), rtol=1e-13)
