"""Models (M): discretisation, ODE integration, gradients and transformations against independent references."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.linalg
import scipy.signal

import jtwin as jt
from jtwin.models import library

RNG = np.random.default_rng(0)


def random_system(n=4, m=2, p=1, seed=0):
    rng = np.random.default_rng(seed)
    Ac = rng.normal(size=(n, n)) - 2.0 * np.eye(n)
    Bc = rng.normal(size=(n, m))
    Ec = rng.normal(size=(n, p))
    return Ac, Bc, Ec


def test_zoh_matches_scipy_cont2discrete():
    Ac, Bc, Ec = random_system()
    dt = 0.37
    H = np.eye(2, 4)
    model = jt.models.LinearModel.from_continuous(Ac, Bc, H, np.eye(4), np.eye(2), dt, Ec=Ec)
    Ad, BEd, *_ = scipy.signal.cont2discrete((Ac, np.hstack([Bc, Ec]), H, np.zeros((2, 3))), dt, method="zoh")
    np.testing.assert_allclose(model.A, Ad, atol=1e-12, rtol=0)
    np.testing.assert_allclose(model.B, BEd[:, :2], atol=1e-12, rtol=0)
    np.testing.assert_allclose(model.E, BEd[:, 2:], atol=1e-12, rtol=0)
    assert model.dt == dt


def test_van_loan_matches_quadrature():
    Ac, _, _ = random_system(3)
    Qc = np.diag([0.5, 1.0, 2.0])
    dt = 0.4
    integrand = lambda s: scipy.linalg.expm(Ac * s) @ Qc @ scipy.linalg.expm(Ac.T * s)
    reference, _ = scipy.integrate.quad_vec(integrand, 0.0, dt, epsabs=1e-13, epsrel=1e-13)
    np.testing.assert_allclose(jt.models.van_loan_noise(Ac, Qc, dt), reference, atol=1e-12)
    model = jt.models.LinearModel.from_continuous(Ac, None, np.eye(3), Qc, np.eye(3), dt, continuous_noise=True)
    np.testing.assert_allclose(model.Q, reference, atol=1e-12)


def test_ode_model_on_linear_field_equals_exact_zoh():
    Ac, Bc, _ = random_system(4, 2)
    dt = 0.5
    ode = jt.models.ODEModel(
        lambda t, x, u: Ac @ x + Bc @ u, lambda x, u, t: x[:2], dt, np.eye(4), np.eye(2), input_dim=2, rtol=1e-12, atol=1e-12
    )
    Ad, Bd, *_ = scipy.signal.cont2discrete((Ac, Bc, np.eye(4), np.zeros((4, 2))), dt, method="zoh")
    x, u = RNG.normal(size=4), RNG.normal(size=2)
    np.testing.assert_allclose(ode.transition(jnp.asarray(x), jnp.asarray(u), 0.3), Ad @ x + Bd @ u, atol=1e-8)


@pytest.mark.parametrize("solver,order", [(diffrax.Heun(), 2), (jt.models.RK4(), 4), (diffrax.Tsit5(), 5)])
def test_fixed_step_convergence_order(solver, order):
    """Error against the exact flow e^{A dt} x shrinks like h^order (measured slope within 0.3)."""
    Ac = np.array([[0.0, 1.0], [-4.0, -0.4]])  # lightly damped oscillator
    dt = 2.0
    x0 = np.array([1.0, 0.0])
    exact = scipy.linalg.expm(Ac * dt) @ x0
    subs = np.array([8, 16, 32, 64])
    errors = []
    for s in subs:
        ode = jt.models.ODEModel(lambda t, x, u: Ac @ x, lambda x, u, t: x, dt, np.eye(2), np.eye(2), solver=solver, substeps=int(s))
        errors.append(np.linalg.norm(np.asarray(ode.transition(jnp.asarray(x0), jnp.zeros(0))) - exact))
    slope = np.polyfit(np.log(dt / subs), np.log(errors), 1)[0]
    assert abs(slope - order) < 0.3, (slope, errors)


def central_difference(fn, theta, eps=1e-6):
    grads = []
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e.flat[i] = eps
        grads.append((fn(theta + e) - fn(theta - e)) / (2 * eps))
    return np.array(grads)


def test_building_one_step_gradient_matches_finite_differences():
    params = library.BuildingRC(zones=2)
    x = jnp.array([20.0, 19.0, 17.0, 16.0])
    u, d = jnp.array([3.0, 1.0]), jnp.array([5.0, 0.4])

    def prediction(p):
        return jnp.sum(p.to_linear(1.0).transition(x, u, 0.0, d) ** 2)

    grads = jax.grad(prediction)(params)
    for name in ("log_c_air", "log_r_aw", "log_r_zz", "logit_frac_air"):
        theta0 = np.asarray(getattr(params, name), float)
        fn = lambda th: float(prediction(eqx.tree_at(lambda p: getattr(p, name), params, jnp.asarray(th))))
        fd = central_difference(fn, theta0).reshape(theta0.shape)
        np.testing.assert_allclose(getattr(grads, name), fd, rtol=1e-6, atol=1e-9)


def test_cstr_one_step_gradient_matches_finite_differences():
    model = library.cstr_model(measure_concentration=True, substeps=20)
    x, u, d = jnp.array([0.6, 345.0]), jnp.array([302.0]), jnp.array([0.05, -2.0])

    def prediction(m):
        return jnp.sum(m.transition(x, u, 0.0, d) * jnp.array([100.0, 1.0]))

    grads = eqx.filter_grad(prediction)(model).vector_field
    for name in ("log_k0", "log_e_over_r", "log_ua", "log_neg_dh"):
        theta0 = np.asarray(getattr(model.vector_field, name), float)
        fn = lambda th: float(prediction(eqx.tree_at(lambda m: getattr(m.vector_field, name), model, jnp.asarray(th))))
        fd = central_difference(fn, theta0, eps=1e-7)
        np.testing.assert_allclose(getattr(grads, name), fd, rtol=1e-6)


def _every_model():
    lin = jt.models.LinearModel(np.diag([0.9, 0.8]), np.ones((2, 1)), np.eye(1, 2), 0.01 * np.eye(2), [[0.1]])
    fun = jt.models.FunctionModel(
        lambda x, u, t: jnp.array([x[0] + 0.1 * x[1], x[1] - 0.1 * jnp.sin(x[0]) + 0.1 * u[0]]),
        lambda x, u, t: x[:1],
        0.01 * np.eye(2),
        [[0.1]],
        input_dim=1,
    )
    ode = jt.models.ODEModel(
        lambda t, x, u: jnp.array([x[1], -jnp.sin(x[0]) + u[0]]), lambda x, u, t: x[:1], 0.1, 0.01 * np.eye(2), [[0.1]], input_dim=1, substeps=4
    )
    return {"linear": lin, "function": fun, "ode": ode}


@pytest.mark.parametrize("name", ["linear", "function", "ode"])
def test_jit_vmap_grad_on_every_model_class(name):
    model = _every_model()[name]
    xs = jnp.asarray(RNG.normal(size=(1000, 2)))
    u = jnp.array([0.3])
    eager = jnp.stack([model.transition(x, u, 0.0) for x in xs[:3]])
    batched = jax.jit(jax.vmap(lambda x: model.transition(x, u, 0.0)))(xs)
    assert batched.shape == (1000, 2)
    np.testing.assert_allclose(batched[:3], eager, rtol=1e-12, atol=1e-12)
    # grad w.r.t. the state equals the central finite difference
    g = jax.grad(lambda x: jnp.sum(model.transition(x, u, 0.0) ** 2))(xs[0])
    fd = central_difference(lambda x: float(jnp.sum(model.transition(jnp.asarray(x), u, 0.0) ** 2)), np.asarray(xs[0]))
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)
    # grad w.r.t. the model (its array leaves: parameters and covariance factors) runs and is finite
    gm = eqx.filter_grad(lambda m: jnp.sum(m.transition(xs[0], u, 0.0) ** 2) + jnp.trace(m.Q))(model)
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(gm))
    np.testing.assert_allclose(gm.Q_factor, 2 * np.tril(model.Q_factor), atol=1e-12)  # d tr(L Lᵀ)/dL = 2L


def test_simulate_matches_hand_loop_and_noise_statistics():
    model = _every_model()["linear"]
    us = jnp.asarray(RNG.normal(size=(6, 1)))
    traj = model.simulate(jax.random.PRNGKey(1), jnp.array([1.0, -1.0]), 6, us=us, noise=False)
    x = np.array([1.0, -1.0])
    for k in range(6):
        np.testing.assert_allclose(traj.xs[k], x, atol=1e-14)
        np.testing.assert_allclose(traj.ys[k], np.asarray(model.H) @ x, atol=1e-14)
        x = np.asarray(model.A) @ x + np.asarray(model.B) @ np.asarray(us[k])
    # with noise: increments x[k+1] - A x[k] - B u[k] are N(0, Q)
    traj = model.simulate(jax.random.PRNGKey(2), jnp.zeros(2), 20000)
    w = np.asarray(traj.xs[1:] - traj.xs[:-1] @ model.A.T)
    np.testing.assert_allclose(np.cov(w.T), model.Q, atol=4 * 0.01 * np.sqrt(2 / 20000) * 3)


def test_singular_covariance_factor_and_psd_by_construction():
    Q = np.diag([1.0, 0.0, 2.0])
    Q[0, 2] = Q[2, 0] = 1.0
    model = jt.models.LinearModel(np.eye(3), None, np.eye(3), Q, np.eye(3))
    np.testing.assert_allclose(model.Q, Q, atol=1e-14)
    perturbed = eqx.tree_at(lambda m: m.Q_factor, model, model.Q_factor + 0.3 * jnp.asarray(RNG.normal(size=(3, 3))))
    assert np.linalg.eigvalsh(np.asarray(perturbed.Q)).min() >= -1e-12


def test_non_additive_measurement_noise():
    phi = lambda x, u, t: jnp.array([[x[0], 0.0], [0.0, 1.0]])
    model = jt.models.FunctionModel(lambda x, u, t: x, lambda x, u, t: x**2, np.eye(2), np.eye(2), noise_gain=phi)
    assert not model.additive_measurement_noise
    y = model.observe_noisy(jnp.array([2.0, 3.0]), jnp.zeros(0), 0.0, jnp.array([0.5, 0.1]))
    np.testing.assert_allclose(y, [4.0 + 2.0 * 0.5, 9.0 + 0.1])


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(A=np.ones((2, 3))), "A"),
        (dict(B=np.ones((3, 1))), "B"),
        (dict(H=np.ones((1, 3))), "H"),
        (dict(Q=np.array([[1.0, 0.0], [0.0, -1.0]])), "Q"),
        (dict(Q=np.array([[1.0, 0.5], [0.0, 1.0]])), "Q"),
        (dict(R=np.ones((2, 2)) * np.nan), "R"),
        (dict(A=np.array([[np.nan, 0.0], [0.0, 1.0]])), "A"),
        (dict(E=np.ones((3,))), "E"),
    ],
)
def test_bad_linear_model_inputs_name_the_field(kwargs, field):
    args = dict(A=np.eye(2), B=np.ones((2, 1)), H=np.eye(1, 2), Q=np.eye(2), R=np.eye(1))
    args.update(kwargs)
    with pytest.raises(ValueError, match=rf"^{field}:"):
        jt.models.LinearModel(**args)


def test_bad_function_and_ode_models_name_the_problem():
    with pytest.raises(ValueError, match=r"f\(x, u, t\): returned shape"):
        jt.models.FunctionModel(lambda x, u, t: x[:1], lambda x, u, t: x, np.eye(2), np.eye(2))
    with pytest.raises(ValueError, match="input_dim"):
        jt.models.FunctionModel(lambda x, u, t: x + u[0], lambda x, u, t: x, np.eye(2), np.eye(2))
    with pytest.raises(ValueError, match="^R:"):
        jt.models.FunctionModel(lambda x, u, t: x, lambda x, u, t: x, np.eye(2), np.eye(3))
    with pytest.raises(ValueError, match="^substeps:"):
        jt.models.ODEModel(lambda t, x, u: -x, lambda x, u, t: x, 0.1, np.eye(2), np.eye(2), solver=jt.models.RK4())
    with pytest.raises(ValueError, match="^dt:"):
        jt.models.ODEModel(lambda t, x, u: -x, lambda x, u, t: x, 0.0, np.eye(2), np.eye(2))
    with pytest.raises(ValueError, match="^k0:"):
        library.CSTRDynamics(k0=-1.0)
    with pytest.raises(ValueError, match="^c_air:"):
        library.BuildingRC(zones=3, c_air=[1.0, 2.0])
    with pytest.raises(ValueError, match="^lead_times:"):
        library.inventory_model(lead_times=(1, 0))
