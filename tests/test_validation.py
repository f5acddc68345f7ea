"""jtwin.validation against scipy's binomial intervals, closed-form costs, grids and known integrator orders."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats as ss

import jtwin as jt
from jtwin import validation as V

CASES = [(0, 10), (3, 10), (10, 10), (47, 50), (999, 1000), (1, 1)]


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_clopper_pearson_matches_scipy_binomtest(confidence):
    x, n = np.array(CASES).T
    lower = V.clopper_pearson_lower(x, n, confidence)
    for (xi, ni), li in zip(CASES, lower):
        one_sided = ss.binomtest(int(xi), int(ni), alternative="greater").proportion_ci(confidence, method="exact").low
        two_sided = ss.binomtest(int(xi), int(ni)).proportion_ci(2 * confidence - 1, method="exact").low
        assert li == pytest.approx(one_sided, abs=1e-10)
        assert li == pytest.approx(two_sided, abs=1e-10)


def test_wilson_matches_scipy_binomtest():
    x, n = np.array(CASES).T
    for (xi, ni), li in zip(CASES, V.wilson_lower(x, n, 0.95)):
        ref = ss.binomtest(int(xi), int(ni), alternative="greater").proportion_ci(0.95, method="wilson").low
        assert li == pytest.approx(ref, abs=1e-12)


def test_clopper_pearson_coverage_by_simulation():
    rng = np.random.default_rng(0)
    p, n, reps = 0.9, 60, 4000
    lower = V.clopper_pearson_lower(rng.binomial(n, p, size=reps), np.full(reps, n), 0.95)
    assert np.mean(lower <= p) >= 0.95 - 3 * math.sqrt(0.05 * 0.95 / reps)


def test_tolerance_probability_counts_and_missing_data():
    rng = np.random.default_rng(1)
    errors = rng.normal(scale=[0.1, 0.3], size=(300, 2))
    errors[::7, 1] = np.nan  # missing samples of KPI 1
    tol = np.array([0.15, 0.3])
    result = V.tolerance_probability(errors, tol, confidence=0.95)
    counts = np.sum(np.isfinite(errors), axis=0)
    hits = np.sum(np.abs(np.nan_to_num(errors, nan=np.inf)) <= tol, axis=0)
    np.testing.assert_array_equal(result.counts, counts)
    np.testing.assert_allclose(result.p_hat, hits / counts)
    for k in range(2):
        ref = ss.binomtest(int(hits[k]), int(counts[k]), alternative="greater").proportion_ci(0.95).low
        assert result.lower[k] == pytest.approx(ref, abs=1e-10)
    assert V.tolerance_probability(errors[:, 0], 0.15, method="wilson").lower[0] < result.p_hat[0]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(tol=[0.1, -1.0]), "tol"),
        (dict(errors=np.array([[np.inf, 0.0]])), "errors"),
        (dict(errors=np.array([[np.nan, 0.0]])), "errors"),
        (dict(method="agresti"), "method"),
        (dict(confidence=1.0), "confidence"),
        (dict(tol=[0.1, 0.2, 0.3]), "tol"),
    ],
)
def test_tolerance_bad_input(kwargs, match):
    args = dict(errors=np.zeros((5, 2)), tol=[0.1, 0.2]) | kwargs
    with pytest.raises(ValueError, match=match):
        V.tolerance_probability(**args)


def test_regret_bound_is_tight_on_a_linear_cost():
    c = jnp.array([1.5, -2.0, 0.5])
    cost = lambda y: c @ y  # noqa: E731
    lip = V.lipschitz_constant(cost, -jnp.ones(3), jnp.ones(3)).value
    assert float(lip) == pytest.approx(float(jnp.sum(jnp.abs(c))), rel=1e-12)
    y_true = jax.random.normal(jax.random.key(0), (50, 3))
    tau = 0.2
    y_pred = y_true + tau * jnp.sign(c)  # worst-case error of size tau in every KPI
    gap = V.cost_gap(cost, y_pred, y_true)
    bound = V.regret_bound(lip, y_pred - y_true)
    np.testing.assert_allclose(gap, bound, rtol=1e-12)


def _smooth_cost(a, b):
    return lambda y: jnp.sum(jnp.log1p(jnp.exp(a * y))) + jnp.sin(b * y[0] * y[1])


@pytest.mark.parametrize("a, b", [(2.0, 1.0), (0.5, 3.0)])
def test_regret_bound_holds_on_sampled_cases(a, b):
    cost = _smooth_cost(a, b)
    key_y, key_e = jax.random.split(jax.random.key(int(10 * a + b)))
    y_true = jax.random.uniform(key_y, (2000, 2), minval=-1.5, maxval=1.5)
    y_pred = jnp.clip(y_true + jax.random.uniform(key_e, (2000, 2), minval=-0.5, maxval=0.5), -2.0, 2.0)
    lip = V.lipschitz_constant(cost, -2 * jnp.ones(2), 2 * jnp.ones(2)).value
    # independent check of the supremum: central finite differences of J on a 201 x 201 grid
    g = np.linspace(-2, 2, 201)
    grid = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    eps = 1e-6
    fd = sum(
        np.abs((np.asarray(jax.vmap(cost)(grid + eps * unit)) - np.asarray(jax.vmap(cost)(grid - eps * unit))) / (2 * eps))
        for unit in np.eye(2)
    )
    assert float(lip) >= fd.max() - 1e-5
    gap = np.abs(np.asarray(V.cost_gap(cost, y_pred, y_true)))
    per_sample_bound = float(lip) * np.max(np.abs(np.asarray(y_pred - y_true)), axis=1)
    assert np.all(gap <= per_sample_bound + 1e-12)
    assert gap.max() <= float(V.regret_bound(lip, y_pred - y_true))


def test_lipschitz_exact_for_convex_quadratic_at_vertices():
    q = jnp.array([[2.0, 1.0, 0.0], [1.0, 3.0, -1.0], [0.0, -1.0, 1.0]])
    c = jnp.array([0.5, -1.0, 0.2])
    est = V.lipschitz_constant(lambda y: 0.5 * y @ q @ y + c @ y, -jnp.ones(3), 2 * jnp.ones(3))
    vertices = np.array(list(itertools.product([-1.0, 2.0], repeat=3)))
    expected = np.max(np.sum(np.abs(vertices @ np.asarray(q) + np.asarray(c)), axis=1))
    assert float(est.value) == pytest.approx(expected, rel=1e-12)


def test_decision_regret_closed_form_and_bound():
    w = jnp.array([1.0, 3.0])
    cost = lambda u, y: jnp.sum(w * jnp.abs(u - y))  # noqa: E731  (optimal decision: u*(y) = y)
    y_true = jax.random.normal(jax.random.key(1), (100, 2))
    y_pred = y_true + 0.1 * jax.random.normal(jax.random.key(2), (100, 2))
    regret = V.decision_regret(cost, lambda y: y, y_pred, y_true)
    np.testing.assert_allclose(regret, jnp.sum(w * jnp.abs(y_pred - y_true), axis=1), rtol=1e-12)
    assert np.all(np.asarray(regret) <= 2 * float(jnp.sum(w)) * np.max(np.abs(np.asarray(y_pred - y_true))))


def test_validate_report_table_and_png(tmp_path):
    rng = np.random.default_rng(2)
    y_true = rng.normal(size=(200, 2))
    y_pred = y_true + rng.normal(scale=0.1, size=(200, 2))
    report = V.validate(y_pred, y_true, [0.15, 0.2], names=["temp", "power"], cost=lambda y: jnp.sum(y**2))
    text = report.table()
    assert "temp" in text and "power" in text and "regret bound" in text
    assert report.max_cost_gap <= report.regret_bound
    np.testing.assert_allclose(report.max_abs_error, np.max(np.abs(y_pred - y_true), axis=0))
    png = report.plot(tmp_path / "errors.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _integrate(step_fn, h, t_end=1.0):
    x = 1.0
    for _ in range(int(round(t_end / h))):
        x = step_fn(x, h)
    return jnp.asarray(x)


@pytest.mark.parametrize(
    "method, order",
    [
        (lambda x, h: x - h * x, 1),  # explicit Euler on dx/dt = -x
        (lambda x, h: x + 0.5 * h * (-x - (x - h * x)), 2),  # Heun
        (lambda x, h: x * (1 - h + h**2 / 2 - h**3 / 6 + h**4 / 24), 4),  # RK4 on a linear ODE
    ],
)
def test_convergence_order_of_known_methods(method, order):
    result = V.convergence_order(lambda h: _integrate(method, h), math.exp(-1.0), [0.1, 0.05, 0.025, 0.0125])
    assert result.order == pytest.approx(order, abs=0.1)


def test_convergence_order_rejects_roundoff_floor():
    with pytest.raises(ValueError, match="step"):
        V.convergence_order(lambda h: jnp.asarray(1.0), 1.0, [0.1, 0.05])


def test_check_transformations_passes_on_pure_functions():
    result = V.check_transformations(lambda a, b: (jnp.tanh(a) @ b, {"scaled": 2.0 * a}), jnp.ones((3, 3)), jnp.arange(3.0))
    assert result.ok, result.messages
    model = jt.models.LinearModel(0.9 * np.eye(2), np.ones((2, 1)), np.eye(2), 0.1 * np.eye(2), np.eye(2))
    assert V.check_transformations(lambda m, x, u: m.transition(x, u), model, jnp.ones(2), jnp.ones(1)).ok


def test_check_transformations_detects_failures():
    def python_branch(x):
        return x if float(x[0]) > 0 else -x  # concretises a traced value

    bad_jit = V.check_transformations(python_branch, jnp.ones(2))
    assert not bad_jit.jit and "jit" in bad_jit.messages

    @jax.custom_jvp
    def wrong_derivative(x):
        return jnp.sin(x)

    wrong_derivative.defjvp(lambda primals, tangents: (jnp.sin(primals[0]), 2.0 * tangents[0]))
    bad_grad = V.check_transformations(wrong_derivative, jnp.linspace(0.1, 1.0, 4))
    assert bad_grad.jit and bad_grad.vmap and not bad_grad.grad

    @jax.custom_batching.custom_vmap
    def wrong_batching(x):
        return jnp.sin(x)

    wrong_batching.def_vmap(lambda axis_size, in_batched, x: (jnp.cos(x), in_batched[0]))
    bad_vmap = V.check_transformations(wrong_batching, jnp.linspace(0.1, 1.0, 4))
    assert bad_vmap.jit and not bad_vmap.vmap
