"""Closed-loop tuning: gradients of a closed-loop KPI (plant + KF + MPC) against central finite
differences, checkpointed against plain reverse mode, improvement on held-out scenarios, bad inputs."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

import jtwin as jt
from jtwin.learn import TrackingCost, TuneProblem, TwinParameters, tune
from jtwin.simulate import make_scenarios, simulate
from jtwin.twin import Twin

# a damped double integrator (position measured) with a disturbance on the velocity
A = np.array([[1.0, 0.1], [0.0, 0.95]])
B = np.array([[0.005], [0.1]])
E = np.array([[0.0], [0.05]])
H = np.array([[1.0, 0.0]])
SAMPLES, HORIZON, CHUNK = 20, 5, 6  # 20 = 3 chunks of 6 + a remainder of 2
XREF = np.array([1.0, 0.0])
COV0 = 0.05 * np.eye(2)
PARAMS = ("controller.Q", "controller.R", "controller.B", "model.A")
OBJECTIVE = TrackingCost(XREF, q=[1.0, 0.0], r=0.01)


def model(b_scale=1.0):
    return jt.models.LinearModel(A, b_scale * B, H, 1e-4 * np.eye(2), 1e-3 * np.eye(1), E=E)


def make_twin(twin_model, r=0.1, eps=1e-10, **solver):
    return Twin.from_linear_model(
        twin_model, jt.estimation.KF(), HORIZON, Q=np.diag([1.0, 0.1]), R=r * np.eye(1), xref=XREF,
        umin=-2.0, umax=2.0, eps_abs=eps, eps_rel=eps, **{"max_iter": 20000, **solver},
    )  # fmt: skip


def batch(seed, x0=(0.0, 0.0), count=3):
    d = 0.5 * np.sin(np.arange(SAMPLES + HORIZON) / 3.0 + seed)[:, None]
    return make_scenarios(jax.random.PRNGKey(seed), count, jnp.asarray(x0), jnp.asarray(d), 1, x0_std=0.3)


def problem(twin, chunk=None):
    """The closed-loop loss of ``twin`` (a mismatched plant: the twin's B may differ) in PARAMS coordinates."""
    params = TwinParameters.select(twin, PARAMS)
    return TuneProblem(params, model(), jnp.asarray(COV0), OBJECTIVE, SAMPLES, chunk), params.initial()


# one compiled value-and-gradient for every problem of this structure
value_and_grad = eqx.filter_jit(jax.value_and_grad(lambda theta, p, s: p.loss(theta, s), has_aux=True))


@pytest.fixture(scope="module")
def mismatched():
    """The twin's B is 0.7x the plant's; the first inputs saturate at umax (active bounds)."""
    return make_twin(model(0.7))


def numpy_kpi(out):
    """The objective written out in numpy on a :func:`simulate` result (independent of rollout)."""
    x, u = np.asarray(out.x), np.asarray(out.u)
    return np.mean((x[..., 0] - XREF[0]) ** 2 + 0.01 * u[..., 0] ** 2)


def test_gradient_equals_central_differences(mismatched):
    p, theta = problem(mismatched)
    scenarios = batch(0)
    (value, unsolved), grad = value_and_grad(theta, p, scenarios)
    sim = simulate(model(), mismatched, scenarios, SAMPLES, COV0, shard=False)
    np.testing.assert_allclose(value, numpy_kpi(sim), rtol=1e-12)  # rollout's loop is simulate's
    assert float(unsolved) == 0.0 and np.any(np.isclose(np.asarray(sim.u), 2.0))  # solved; a bound active
    flat, unflatten = ravel_pytree(theta)
    g = np.asarray(ravel_pytree(grad)[0])
    f = lambda v: float(value_and_grad(unflatten(v), p, scenarios)[0][0])  # noqa: E731
    h = 1e-5
    fd = np.array([(f(flat.at[i].add(h)) - f(flat.at[i].add(-h))) / (2 * h) for i in range(flat.size)])
    # log Q (2), log R (1), controller B (2), model A (4): every parameter moves the KPI
    assert np.all(np.abs(fd) > 1e-3)
    np.testing.assert_allclose(g, fd, rtol=1e-4)


def test_lqr_terminal_cost_follows_the_tuned_weights(mismatched):
    """QN=None means the LQR cost-to-go: it is recomputed from the tuned A, B, Q, R (scipy's DARE);
    a QN given explicitly is kept."""
    import scipy.linalg

    params = TwinParameters.select(mismatched, PARAMS)
    theta = jax.tree_util.tree_map(lambda t: t + 0.3, params.initial())  # every tuned leaf moved
    mpc = params.twin(theta).controller
    want = scipy.linalg.solve_discrete_are(*(np.asarray(v) for v in (mpc.A, mpc.B, mpc.Q, mpc.R)))
    np.testing.assert_allclose(mpc.QN, want, rtol=1e-9)
    assert not np.allclose(mpc.QN, mismatched.controller.QN)
    explicit = TwinParameters.select(make_twin(model(0.7), QN=2.0 * np.eye(2)), PARAMS)
    theta = jax.tree_util.tree_map(lambda t: t + 0.3, explicit.initial())
    np.testing.assert_array_equal(explicit.twin(theta).controller.QN, 2.0 * np.eye(2))


@pytest.mark.slow  # 23 s; the plain gradient is checked against finite differences by default
def test_checkpointed_gradient_equals_plain(mismatched):
    """Chunks of 6 samples (and a remainder of 2) under jax.checkpoint: same value and gradient."""
    scenarios = batch(0)
    values, grads = [], []
    for chunk in (None, CHUNK):
        p, theta = problem(mismatched, chunk)
        (value, _), grad = value_and_grad(theta, p, scenarios)
        values.append(value)
        grads.append(ravel_pytree(grad)[0])
    np.testing.assert_allclose(values[1], values[0], rtol=1e-12)
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-10, atol=1e-14)


@pytest.mark.slow
def test_unrolled_solver_gradient_equals_implicit(mismatched):
    """Differentiating through the ADMM iterations (checkpointed chunks) gives the KKT gradient."""
    unrolled = make_twin(model(0.7), differentiation="unrolled", max_iter=400)
    scenarios = batch(0)
    grads = []
    for twin in (mismatched, unrolled):
        p, theta = problem(twin, CHUNK)
        grads.append(ravel_pytree(value_and_grad(theta, p, scenarios)[1])[0])
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-6)


@pytest.mark.slow  # 61 s; the README's tuning example and the gradient test run by default
def test_tuning_improves_held_out_kpi():
    """Badly chosen weights (R = 10: sluggish) on a mismatched twin; tuned on one batch, the
    KPI improves on scenarios with other noise, forecasts and initial states."""
    twin = make_twin(model(0.7), r=10.0, eps=1e-6)
    result = tune(
        twin, model(), batch(0), OBJECTIVE, ("controller.Q", "controller.R"), samples=SAMPLES, cov0=COV0,
        optimizer=optax.adam(0.2), steps=15, progress=False,
    )  # fmt: skip
    assert result.status == "completed" and result.train_loss.shape == (16,)
    assert result.train_loss[result.best_step] < 0.7 * result.train_loss[0]
    assert result.tuned["controller.R"][0] < result.initial["controller.R"][0]
    held_out = batch(7, x0=(-0.5, 0.0))
    before, after = (float(value_and_grad(th, p, held_out)[0][0]) for p, th in map(problem, (twin, result.twin)))
    print(f"held-out KPI {before:.4f} -> {after:.4f}")
    assert after < 0.75 * before


def test_bad_inputs_name_the_argument(mismatched):
    kw = dict(samples=SAMPLES, cov0=COV0, progress=False)
    with pytest.raises(ValueError, match="params"):
        tune(mismatched, model(), batch(0), OBJECTIVE, ("controller.nope",), **kw)
    with pytest.raises(ValueError, match="steps"):
        tune(mismatched, model(), batch(0), OBJECTIVE, steps=0, **kw)
    with pytest.raises(ValueError, match="samples"):
        tune(mismatched, model(), batch(0), OBJECTIVE, **{**kw, "samples": -1})
    with pytest.raises(ValueError, match="params: controller.alpha"):  # alpha = 0: no l1 term to tune
        tune(mismatched, model(), batch(0), OBJECTIVE, ("controller.alpha",), **kw)
    short = eqx.tree_at(lambda s: s.d, batch(1), batch(1).d[:, :5])  # fewer than samples + horizon
    with pytest.raises(ValueError, match="validation: scenarios.d"):
        tune(mismatched, model(), batch(0), OBJECTIVE, validation=short, **kw)
    with pytest.raises(ValueError, match="q"):
        TrackingCost(XREF, q=[-1.0, 0.0])
