"""Learning from logs: MLE recovery, Laplace intervals, prediction error, mini-batches, irregular sampling, report.

References are independent of jtwin.learn: the true parameters of synthetic logs, ordinary
least squares (numpy) for a fully measured AR model, a NumPy Kalman filter with exact per-step
discretisation, and central finite differences.
"""

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jtwin.learn import fit, load_params, make_problem, nll_hessian, synthetic_log, trainable_spec
from jtwin.logs import PlantLog
from jtwin.models import LinearModel, ODEModel
from jtwin.models.library import BuildingRC, load_tmy3_greensboro

# --- the building: 1 zone, 15-minute samples, 10% missing measurements -------------------------
DT, T_BUILDING = 0.25, 4000
BUILDING_TRAINABLE = ("log_c_air", "log_c_wall", "log_r_aw")


def building_to_model(p):
    return p.to_linear(DT, 0.02, 0.1)


def building_log(seed, steps=T_BUILDING):
    rng = np.random.default_rng(seed)
    ds = load_tmy3_greensboro().disturbances(24 * seed, steps, DT)
    us = np.repeat(rng.choice([0.0, 6.0], (steps // 4 + 1, 1)), 4, axis=0)[:steps]  # heating on/off, 1 h holds
    return synthetic_log(building_to_model(BuildingRC(1)), jax.random.PRNGKey(seed), jnp.full(2, 15.0), us, ds, dropout=0.1)


@pytest.fixture(scope="module")
def building_fit():
    log = building_log(1)
    init = BuildingRC(1, c_air=1.3, c_wall=7.0, r_aw=0.7)  # 30% off
    return fit(
        init, log, mean0=jnp.full(2, 15.0), to_model=building_to_model, trainable=BUILDING_TRAINABLE,
        hessian="gradient", progress=False,
    )


def test_building_mle_recovers_identifiable_parameters(building_fit):
    truth = {"log_c_air.0": 1.0, "log_c_wall.0": 10.0, "log_r_aw.0": 0.5}
    lap = building_fit.laplace
    assert building_fit.status == "converged"
    assert lap.names == tuple(truth)
    estimate = np.exp(lap.estimate)
    np.testing.assert_allclose(estimate, list(truth.values()), rtol=0.02)
    lo, hi = lap.interval(0.95).T
    assert np.all((lo <= np.log(list(truth.values()))) & (np.log(list(truth.values())) <= hi))
    # frozen leaves are untouched
    assert float(building_fit.params.log_r_win[0]) == float(BuildingRC(1).log_r_win[0])


# --- a fully measured AR(1) model: MLE = ordinary least squares, Laplace covariance = q (XᵀX)⁻¹ -------
A_TRUE, B_TRUE, Q_AR = 0.8, 0.5, 0.04


def ar_log(seed, steps=400, dropout=0.0):
    model = LinearModel([[A_TRUE]], [[B_TRUE]], [[1.0]], [[Q_AR]], [[0.0]])
    us = np.random.default_rng(seed).normal(size=(steps, 1))
    return synthetic_log(model, jax.random.PRNGKey(seed), jnp.zeros(1), us, dropout=dropout)


def ar_init():
    return LinearModel([[0.3]], [[0.1]], [[1.0]], [[Q_AR]], [[0.0]])


def ordinary_least_squares(log):
    X = np.hstack([log.y[:-1], log.u[:-1]])
    coef, *_ = np.linalg.lstsq(X, log.y[1:, 0], rcond=None)
    return coef, Q_AR * np.linalg.inv(X.T @ X)


def test_mle_and_laplace_covariance_match_least_squares():
    log = ar_log(0)
    coef, cov = ordinary_least_squares(log)
    res = fit(ar_init(), log, mean0=jnp.zeros(1), trainable=("A", "B"), hessian="autodiff", progress=False)
    assert res.status == "converged"
    np.testing.assert_allclose(res.laplace.estimate, coef, rtol=1e-6)
    np.testing.assert_allclose(res.laplace.covariance, cov, rtol=1e-6)
    problem, _ = make_problem(res.model, log, mean0=jnp.zeros(1), trainable=("A", "B"))
    theta = eqx.filter(res.model, eqx.is_inexact_array)
    theta = eqx.tree_at(lambda m: (m.H, m.E, m.Q_factor, m.R_factor), theta, replace=(None,) * 4)
    by_gradients = nll_hessian(problem, theta, "gradient")
    np.testing.assert_allclose(by_gradients, np.linalg.inv(cov), rtol=1e-6)


def test_prediction_error_one_step_is_least_squares():
    log = ar_log(1)
    coef, _ = ordinary_least_squares(log)
    res = fit(ar_init(), log, mean0=jnp.zeros(1), method="prediction", horizon=1, trainable=("A", "B"), progress=False)
    np.testing.assert_allclose(res.laplace.estimate, coef, rtol=1e-6)


def test_multi_step_prediction_error_is_consistent():
    log = ar_log(6, steps=1000)
    _, cov = ordinary_least_squares(log)
    res = fit(ar_init(), log, mean0=jnp.zeros(1), method="prediction", horizon=5, trainable=("A", "B"), progress=False)
    assert res.status in ("converged", "early_stopped")
    np.testing.assert_array_less(np.abs(res.laplace.estimate - [A_TRUE, B_TRUE]), 4 * np.sqrt(np.diag(cov)))


def test_minibatches_validation_and_early_stopping():
    log = ar_log(2, steps=1200, dropout=0.1)
    init = LinearModel([[0.7]], [[0.4]], [[1.0]], [[Q_AR]], [[0.0]])
    res = fit(
        init, log, mean0=jnp.zeros(1), trainable=("A", "B"), segment_length=100, batch_size=3,
        validation=0.25, optimizer=optax.adam(0.03), max_epochs=200, patience=5, progress=False,
    )
    assert res.status == "early_stopped"
    assert res.train_loss.size == res.validation_loss.size == res.epochs + 1
    # the returned parameters are those with the best validation loss
    best = np.nanargmin(res.validation_loss)
    problem, _ = make_problem(init, log, mean0=jnp.zeros(1), trainable=("A", "B"), segment_length=100, validation=0.25)
    theta, _ = eqx.partition(res.params, trainable_spec(res.params, ("A", "B")))
    np.testing.assert_allclose(float(problem.validation_loss(theta)), res.validation_loss[best], rtol=1e-10)
    np.testing.assert_allclose([res.model.A[0, 0], res.model.B[0, 0]], [A_TRUE, B_TRUE], atol=0.05)


def test_filter_log_likelihood_gradient_matches_finite_differences():
    log = building_log(3, steps=300)
    params = BuildingRC(1, c_air=1.1, r_win=8.0)
    problem, theta = make_problem(params, log, mean0=jnp.full(2, 15.0), to_model=building_to_model)
    flat, unflatten = jax.flatten_util.ravel_pytree(theta)
    nll = jax.jit(lambda z: problem.negative_log_likelihood(unflatten(z)))
    grad = np.asarray(jax.jit(jax.grad(lambda z: problem.negative_log_likelihood(unflatten(z))))(flat))
    h = 1e-5
    fd = np.array([(nll(flat.at[i].add(h)) - nll(flat.at[i].add(-h))) / (2 * h) for i in range(flat.size)])
    np.testing.assert_allclose(grad, fd, rtol=1e-4, atol=1e-4 * np.max(np.abs(fd)))


class Decay(eqx.Module):
    log_rate: jax.Array

    def __call__(self, t, x, u):
        return -jnp.exp(self.log_rate) * x + u


def numpy_kalman_nll(rate, log, q, r, mean0, var0):
    """Scalar KF with the exact discretisation of dx/dt = -rate x + u over each interval."""
    mean, var, nll = mean0, var0, 0.0
    dts = np.append(np.diff(log.t), np.diff(log.t)[-1])
    for k in range(log.steps):
        y = log.y[k, 0]
        if not np.isnan(y):
            s = var + r
            nll += 0.5 * (np.log(2 * np.pi * s) + (y - mean) ** 2 / s)
            gain = var / s
            mean, var = mean + gain * (y - mean), (1 - gain) * var
        a = np.exp(-rate * dts[k])
        mean, var = a * mean + (1 - a) / rate * log.u[k, 0], a * a * var + q
    return nll


def test_irregular_sampling_integrates_each_interval():
    rng = np.random.default_rng(4)
    steps = 60
    t = np.cumsum(rng.uniform(0.05, 0.4, steps))
    y = rng.normal(1.0, 0.3, (steps, 1))
    y[rng.random(steps) < 0.1] = np.nan
    log = PlantLog(t=t, u=rng.normal(size=(steps, 1)), y=y)
    model = ODEModel(Decay(jnp.log(2.0)), lambda x, u, t: x, 0.2, [[0.01]], [[0.04]], input_dim=1)
    problem, theta = make_problem(model, log, mean0=jnp.ones(1), cov0=[[0.5]])
    assert problem.variable_step
    expected = numpy_kalman_nll(2.0, log, 0.01, 0.04, 1.0, 0.5)
    np.testing.assert_allclose(float(problem.negative_log_likelihood(theta)), expected, rtol=1e-7)
    with pytest.raises(ValueError, match=r"differs from the model's dt = 1.*fixed sample period"):
        make_problem(ar_init(), log, mean0=jnp.zeros(1))


def test_report_files_and_serialisation(building_fit, tmp_path):
    paths = building_fit.save(tmp_path / "out")
    assert paths["loss_plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(paths["json"].read_text())
    assert [p["physical_name"] for p in data["parameters"]] == ["c_air.0", "c_wall.0", "r_aw.0"]
    assert data["status"] == "converged" and data["identified"]
    text = paths["report"].read_text()
    assert "95% interval" in text and "c_wall.0" in text
    loaded = load_params(BuildingRC(1), paths["params"])
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(building_fit.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match="does not match"):
        load_params(BuildingRC(2), paths["params"])


def test_bad_arguments_name_the_argument():
    log = ar_log(5, steps=20)
    kw = dict(mean0=jnp.zeros(1))
    with pytest.raises(ValueError, match="method: expected one of"):
        fit(ar_init(), log, method="bayes", **kw)
    with pytest.raises(ValueError, match=r"trainable: \['nope'\] match no parameter"):
        fit(ar_init(), log, trainable=["nope"], **kw)
    with pytest.raises(ValueError, match=r"mean0: expected shape \(1,\)"):
        fit(ar_init(), log, mean0=jnp.zeros(2))
    with pytest.raises(ValueError, match="validation: expected a fraction"):
        fit(ar_init(), log, validation=1.5, **kw)
    with pytest.raises(ValueError, match="batch_size"):
        fit(ar_init(), log, batch_size=0, **kw)
    with pytest.raises(ValueError, match="measurement column.*output_dim is 2"):
        fit(LinearModel(np.eye(2), np.ones((2, 1)), np.eye(2), np.eye(2), np.eye(2)), log, mean0=jnp.zeros(2))
