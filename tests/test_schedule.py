"""jtwin.schedule: EDF tests and n_max against the closed form, measured XLA costs against known flop counts."""

import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtwin as jt
from jtwin import schedule


def test_spec_worked_example_gives_36():
    assert schedule.max_state_dim(k=200, flops_per_s=1e9, period=0.020, u_other=0.5, comm_time=0.0005) == 36
    assert schedule.twin_schedulable(36, 200, 1e9, 0.02, 0.5, 0.0005)
    assert not schedule.twin_schedulable(37, 200, 1e9, 0.02, 0.5, 0.0005)


def test_max_state_dim_matches_formula_on_random_cases():
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(300):
        k, f = rng.uniform(1, 500), 10 ** rng.uniform(6, 12)
        t, u = rng.uniform(1e-4, 0.1), rng.uniform(0, 0.9)
        tau = rng.uniform(0, (1 - u) * t)
        root = ((1 - u - tau / t) * f * t / k) ** (1 / 3)
        if abs(root - round(root)) < 1e-6:  # the float formula is unreliable at integer boundaries
            continue
        assert schedule.max_state_dim(k, f, t, u, tau) == math.floor(root)
        checked += 1
    assert checked > 250


def test_max_state_dim_exact_at_integer_boundaries():
    # budget (1 - 0.1 - 0.001/0.01) * 1e6 * 0.01 / 1 = 8000 = 20^3 exactly in decimal arithmetic
    budget = (1 - Fraction("0.1") - Fraction("0.001") / Fraction("0.01")) * Fraction(10**6) * Fraction("0.01")
    assert budget == 20**3
    assert schedule.max_state_dim(1, 1e6, 0.01, 0.1, 0.001) == 20
    assert schedule.max_state_dim(1, 1000, 1, 0, 0) == 10  # 1000 ** (1/3) = 9.999... in floating point
    assert schedule.max_state_dim(200, 1e9, 0.02, 1.0, 0.0) == 0  # other tasks use the whole processor
    assert schedule.max_state_dim(200, 1e9, 0.02, 0.5, 0.011) == 0  # communication alone misses the deadline


def test_edf_utilisation_test():
    assert schedule.edf_schedulable([1, 2, 3], [4, 8, 12])  # U = 0.75
    assert not schedule.edf_schedulable([2, 4, 5], [4, 8, 12])  # U = 1/2 + 1/2 + 5/12 > 1
    assert schedule.edf_utilisation([1, 2, 4], [4, 8, 12]) == pytest.approx(1 / 4 + 2 / 8 + 4 / 12)
    # exactly U = 1 is schedulable, although the float sum is 1.0000000000000002
    wcets = [0.2, 0.4, 0.3, 0.1]
    assert sum(wcets) > 1 and schedule.edf_schedulable(wcets, [1, 1, 1, 1])
    assert not schedule.edf_schedulable([0.5, 0.6], [1, 1])


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: schedule.max_state_dim(200, 1e9, -0.02, 0.5, 0.0005), "period"),
        (lambda: schedule.max_state_dim(0, 1e9, 0.02, 0.5, 0.0005), "k"),
        (lambda: schedule.max_state_dim(200, float("nan"), 0.02, 0.5, 0.0005), "flops_per_s"),
        (lambda: schedule.edf_schedulable([1, 2], [3]), "periods"),
        (lambda: schedule.parse_duration("20 fortnights"), "duration"),
        (lambda: schedule.parse_duration("20"), "has no unit"),
        (lambda: schedule.max_state_dim(200, 1e9, 0.02, 1.5, 0.0005), r"u_other: expected a utilisation in \[0, 1\]"),
        (lambda: schedule.schedule_report(_covariance_predict, 4, "20ms", u_other=1.5), "u_other"),
    ],
)
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_parse_duration():
    assert schedule.parse_duration("20ms") == pytest.approx(0.02)
    assert schedule.parse_duration("0.5 ms") == pytest.approx(5e-4)
    assert schedule.parse_duration("250us") == pytest.approx(2.5e-4)
    assert schedule.parse_duration("5min") == 300.0 and schedule.parse_duration("1h") == 3600.0
    assert schedule.parse_duration(2) == 2.0  # a Python number is seconds; a string needs its unit


def _covariance_predict(n):
    """P <- A P A^T + Q: 2 matrix products (4 n^3 flops) and one addition (n^2)."""
    rng = np.random.default_rng(n)
    args = (jnp.asarray(rng.normal(size=(n, n))), jnp.eye(n), jnp.eye(n))
    return (lambda a, p, q: a @ p @ a.T + q), args


def _kalman_covariance_step(n):
    """Covariance predict + Joseph-free update with a Cholesky solve (lower-order terms included)."""
    rng = np.random.default_rng(n)
    args = (jnp.asarray(rng.normal(size=(n, n))), 2 * jnp.eye(n), jnp.eye(n), jnp.eye(n))

    def step(a, p, h, r):
        p = a @ p @ a.T
        s = h @ p @ h.T + r
        gain = jax.scipy.linalg.cho_solve((jnp.linalg.cholesky(s), True), h @ p).T
        return p - gain @ s @ gain.T

    return step, args


def test_xla_flops_match_closed_form():
    cost = schedule.measure_step_cost(_covariance_predict, [8, 16, 32], repeats=2)
    np.testing.assert_allclose(cost.flops, 4.0 * cost.ns**3 + cost.ns**2, rtol=0.02)
    assert cost.k == pytest.approx(4.0, rel=0.05)
    assert np.all(cost.seconds > 0) and cost.flops_per_s > 0


def test_fitted_k_predicts_unseen_n_within_25_percent():
    cost = schedule.measure_step_cost(_kalman_covariance_step, [8, 12, 16, 24], repeats=2)
    flops_48, _ = schedule.measure_step(*_kalman_covariance_step(48), repeats=1)
    assert float(cost.predict_flops(48)) == pytest.approx(flops_48, rel=0.25)


def test_fit_cubic_recovers_k_exactly_on_cubic_data():
    assert schedule.fit_cubic([3, 5, 9], [7.5 * 27, 7.5 * 125, 7.5 * 729]) == pytest.approx(7.5, rel=1e-12)


def test_schedule_report_meets_and_misses():
    text = schedule.schedule_report(_covariance_predict, 16, "20ms", u_other=0.5, comm_time="0.5ms", repeats=2)
    assert "deadline MET" in text and "n_max" in text
    text = schedule.schedule_report(_covariance_predict, 16, 1e-9, ns=[8, 16], repeats=2)
    assert "deadline MISSED" in text and "n_max = 0" in text


@pytest.mark.skipif(not hasattr(jt.estimation, "run_filter"), reason="jtwin.estimation not built yet")
def test_estimator_step_cost_and_cli_report():
    estimator = jt.estimation.KF()
    cost = schedule.measure_step_cost(schedule.estimator_step_factory(estimator), [4, 8, 16], repeats=2)
    assert np.all(np.diff(cost.flops) > 0) and cost.k > 1
    model = jt.models.LinearModel(0.9 * np.eye(6), None, np.eye(6), 0.01 * np.eye(6), 0.1 * np.eye(6))
    text = schedule.cli_report(model, estimator, "20ms", ns=[4, 8], repeats=2)
    assert "estimator step (n = 6)" in text and "twin step" not in text


def test_cli_report_times_the_whole_twin_step_with_the_mpc():
    """The deadline is checked with the worst whole twin step (KF + MPC), which the MPC dominates."""
    import re

    model = jt.models.LinearModel(0.9 * np.eye(2), 0.1 * np.eye(2), np.eye(2), 0.01 * np.eye(2), 0.1 * np.eye(2))
    twin = jt.twin.Twin.from_linear_model(model, jt.estimation.KF(), 8, Q=np.eye(2), R=0.1 * np.eye(2),
                                          xref=[1.0, -1.0], umin=-1.0, umax=1.0, alpha=0.1)
    text = schedule.cli_report(model, jt.estimation.KF(), "20ms", twin=twin, mean0=[0.0, 0.0], u_other=0.25,
                               ns=[2, 4], repeats=5)
    number = lambda pattern: float(re.search(pattern, text).group(1))
    worst, estimator = number(r"worst ([0-9.]+) ms"), number(r"estimator step \(n = 2\): \S+ flops, ([0-9.]+) ms")
    assert worst > estimator  # the MPC's ADMM solve costs more than the 2-state Kalman step
    assert number(r"with C = ([0-9.]+) ms \(worst twin step\)") == worst
    assert number(r"C/T = ([0-9.]+)") == pytest.approx(0.25 + worst / 20, abs=2e-4)
    assert "reserved" in text.splitlines()[-1]
