"""jtwin.drift against scipy.stats.ks_2samp, simple reference implementations and the spec's worked example."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats as ss

from jtwin import drift


def _samples(rng, n1, n2, shift=0.0, ties=False):
    a, b = rng.normal(size=n1), rng.normal(shift, size=n2)
    if ties:  # coarse rounding: many ties within and between the samples
        a, b = np.round(a, 1), np.round(b, 1)
    return a, b


@pytest.mark.parametrize(
    "n1, n2, shift, ties",
    [(40, 40, 0.5, False), (40, 40, 0.0, True), (37, 53, 0.3, True), (200, 150, 0.2, False), (11, 300, 1.0, True)],
)
def test_ks_2samp_matches_scipy(n1, n2, shift, ties):
    a, b = _samples(np.random.default_rng(n1 + n2), n1, n2, shift, ties)
    stat, p = drift.ks_2samp(a, b)
    ref = ss.ks_2samp(a, b, method="auto")
    assert float(stat) == pytest.approx(ref.statistic, abs=1e-12)
    assert float(p) == pytest.approx(ref.pvalue, abs=1e-6)


def test_ks_2samp_integer_data_and_columns():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 5, size=(60, 3)).astype(float)  # heavy ties
    b = rng.integers(1, 6, size=(45, 3)).astype(float)
    stat, p = drift.ks_2samp(a, b)
    assert stat.shape == p.shape == (3,)
    for j in range(3):
        ref = ss.ks_2samp(a[:, j], b[:, j])
        assert float(stat[j]) == pytest.approx(ref.statistic, abs=1e-12)
        assert p[j] == pytest.approx(ref.pvalue, abs=1e-6)


def test_ks_asymptotic_regime_matches_scipy():
    a, b = _samples(np.random.default_rng(7), 10_050, 400, shift=0.15)
    stat, p = drift.ks_2samp(a, b)
    ref = ss.ks_2samp(a, b)
    assert float(stat) == pytest.approx(ref.statistic, abs=1e-12)
    assert float(p) == pytest.approx(ref.pvalue, abs=1e-6)


def test_sliding_windows_match_scipy_per_window():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(50, 2))
    log = np.concatenate([rng.normal(size=(60, 2)), rng.normal(1.0, size=(60, 2))])
    stats = drift.sliding_ks_statistics(jnp.asarray(ref), jnp.asarray(log), 30, 15)
    starts = range(0, len(log) - 30 + 1, 15)
    expected = [[ss.ks_2samp(ref[:, j], log[s : s + 30, j]).statistic for j in range(2)] for s in starts]
    np.testing.assert_allclose(np.asarray(stats), expected, atol=1e-12)


def test_statistic_is_jittable_vmappable_and_follows_dtype():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(4, 20)), rng.normal(size=(4, 25))
    batched = jax.jit(jax.vmap(drift.ks_statistic))(a, b)
    np.testing.assert_allclose(batched, [ss.ks_2samp(a[i], b[i]).statistic for i in range(4)], atol=1e-12)
    single = drift.ks_statistic(jnp.asarray(a[0], jnp.float32), jnp.asarray(b[0], jnp.float32))
    assert single.dtype == jnp.float32
    assert float(single) == pytest.approx(ss.ks_2samp(a[0], b[0]).statistic, abs=1e-6)
    assert np.isnan(drift.ks_statistic(jnp.array([0.0, jnp.nan]), jnp.array([1.0, 2.0])))


@pytest.mark.parametrize("n1, n2, level", [(50, 50, 0.05), (40, 70, 0.01), (200, 200, 0.025)])
def test_critical_value_is_the_rejection_boundary(n1, n2, level):
    crit = float(drift.ks_critical_value(level, n1, n2))
    step = 1.0 / (n1 // math.gcd(n1, n2) * n2)
    assert drift.ks_pvalue(crit, n1, n2) <= level < drift.ks_pvalue(crit - step, n1, n2)
    # Smirnov's asymptotic critical value c ≈ sqrt(-ln(level/2)/2 · (n1+n2)/(n1 n2)) within 10%
    approx = math.sqrt(-math.log(level / 2) / 2 * (n1 + n2) / (n1 * n2))
    assert crit == pytest.approx(approx, rel=0.1)


def test_critical_value_inf_when_nothing_can_reject():
    assert drift.ks_critical_value(0.01, 2, 2) == np.inf  # p(D=1) = 1/3 for n1 = n2 = 2


def _holm_reference(p, alpha):
    order = sorted(range(len(p)), key=lambda i: p[i])
    rejected = [False] * len(p)
    for rank, i in enumerate(order):
        if p[i] > alpha / (len(p) - rank):
            break
        rejected[i] = True
    return rejected


def test_multiple_test_bonferroni_and_holm():
    rng = np.random.default_rng(4)
    p = rng.uniform(0, 0.05, size=(200, 5))
    rej_b, levels_b = drift.multiple_test(p, 0.05, "bonferroni")
    np.testing.assert_array_equal(rej_b, p <= 0.01)
    assert np.all(levels_b == 0.01)
    rej_h, _ = drift.multiple_test(p, 0.05, "holm")
    np.testing.assert_array_equal(rej_h, [_holm_reference(list(row), 0.05) for row in p])
    assert np.all(rej_h >= rej_b) and np.any(rej_h > rej_b)  # Holm is uniformly more powerful


@pytest.mark.parametrize("correction", ["bonferroni", "holm"])
def test_family_wise_error_rate_under_the_null(correction):
    reps, k, n, alpha = 1000, 5, 40, 0.05
    key_a, key_b = jax.random.split(jax.random.key(0))
    a = jax.random.normal(key_a, (reps, n, k))
    b = jax.random.normal(key_b, (reps, n, k))
    stats = jax.vmap(drift.ks_statistics)(a, b)  # [reps, k], one compiled kernel
    p = drift.ks_pvalue(stats, n, n)
    rejected, _ = drift.multiple_test(p, alpha, correction)
    fwer = np.mean(np.any(rejected, axis=1))
    assert fwer <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / reps)
    uncorrected = np.mean(np.any(p <= alpha, axis=1))  # the experiment can tell: no correction breaks it
    assert uncorrected > 2 * alpha


def _worked_example_windows(n=200):
    grid = np.arange(n) + 0.5
    # inputs shifted by 40/n (D_x = 0.20), residuals by 24/n (D_r = 0.12): exact lattice values
    return grid / n, (grid + 40) / n, grid / n, (grid + 24) / n


def test_spec_worked_example_decides_retrain():
    x_ref, x_new, r_ref, r_new = _worked_example_windows()
    report = drift.detect(x_ref, x_new, r_ref, r_new, alpha=0.05)
    np.testing.assert_allclose(report.statistics, [0.20, 0.12], atol=1e-12)
    cx, cr = report.critical_values
    assert report.statistics[0] > cx and report.statistics[1] < cr
    assert np.all(report.levels == 0.025)
    # scipy's own p-values put D_x below and D_r above the Bonferroni level
    assert ss.ks_2samp(x_ref, x_new).pvalue <= 0.025 < ss.ks_2samp(r_ref, r_new).pvalue
    assert report.input_drift and not report.residual_drift
    assert report.decision == "retrain"


def test_residual_shift_decides_redesign_and_no_shift_none():
    rng = np.random.default_rng(5)
    x_ref, x_new = rng.normal(size=(150, 2)), rng.normal(size=(150, 2))
    r_ref, r_new = rng.normal(size=150), rng.normal(1.0, size=150)
    assert drift.detect(x_ref, x_new, r_ref, r_new).decision == "redesign"
    assert drift.detect(x_ref, x_new + 1.0, r_ref, r_new, correction="holm").decision == "redesign"
    assert drift.detect(x_ref, x_new, r_ref, rng.normal(size=150)).decision == "none"


def test_min_effect_ignores_tiny_shifts_on_large_samples():
    rng = np.random.default_rng(6)
    x_ref, x_new = rng.normal(size=8000), rng.normal(0.1, size=8000)
    r_ref, r_new = rng.normal(size=300), rng.normal(size=300)
    assert drift.detect(x_ref, x_new, r_ref, r_new).decision == "retrain"
    report = drift.detect(x_ref, x_new, r_ref, r_new, min_effect=0.1)
    assert report.pvalues[0] < 1e-4 and report.decision == "none"
    # effect size: Cohen's d close to the true 0.1 shift
    assert report.effect_sizes[0] == pytest.approx(0.1, abs=0.05)


def test_monitor_finds_first_drifting_window():
    rng = np.random.default_rng(8)
    x_ref, r_ref = rng.normal(size=(100, 2)), rng.normal(size=(100, 1))
    x_log = rng.normal(size=(600, 2))
    x_log[350:, 1] += 1.5  # covariate shift from t = 350 on
    r_log = rng.normal(size=(600, 1))
    result = drift.monitor(x_ref, r_ref, x_log, r_log, window=100, stride=50)
    assert result.first_start is not None and 250 < result.first_start <= 350
    assert result.report.decision == "retrain"
    for j in range(result.first + 1):  # batched decisions equal window-by-window detect()
        s = result.starts[j]
        assert result.decisions[j] == drift.detect(x_ref, x_log[s : s + 100], r_ref, r_log[s : s + 100]).decision
    quiet = drift.monitor(x_ref, r_ref, x_log[:300], r_log[:300], window=100)
    assert quiet.first is None and "no drift" in quiet.summary()


def test_cli_report_reads_csv_and_npz(tmp_path):
    x_ref, x_new, r_ref, r_new = _worked_example_windows()
    t = np.arange(200.0)
    np.savetxt(tmp_path / "ref.csv", np.c_[t, x_ref, r_ref], delimiter=",", header="time,load,r_temp", comments="")
    np.savetxt(tmp_path / "new.csv", np.c_[t, x_new, r_new], delimiter=",", header="time,load,r_temp", comments="")
    text = drift.cli_report(tmp_path / "ref.csv", tmp_path / "new.csv")
    assert "decision: retrain" in text and "load" in text and "r_temp" in text
    np.savez(tmp_path / "ref.npz", x=x_ref, r=r_ref)
    np.savez(tmp_path / "new.npz", x=x_ref, r=r_new + 0.3)
    assert "decision: redesign" in drift.cli_report(tmp_path / "ref.npz", tmp_path / "new.npz")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(x_new=np.full(10, np.nan)), "x_new"),
        (dict(x_new=np.zeros((10, 3))), "x_new"),
        (dict(alpha=1.5), "alpha"),
        (dict(correction="sidak"), "correction"),
        (dict(r_ref=np.zeros((0,))), "r_ref"),
    ],
)
def test_bad_input_raises_naming_the_argument(kwargs, match):
    args = dict(x_ref=np.zeros(10), x_new=np.ones(10), r_ref=np.zeros(10), r_new=np.ones(10)) | kwargs
    with pytest.raises(ValueError, match=match):
        drift.detect(**args)


def test_bad_log_raises(tmp_path):
    (tmp_path / "bad.csv").write_text("a,b\n1,x\n")
    with pytest.raises(ValueError, match="bad.csv"):
        drift.load_log(tmp_path / "bad.csv")
    (tmp_path / "nores.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="no residuals"):
        drift.load_log(tmp_path / "nores.csv")
    with pytest.raises(FileNotFoundError):
        drift.load_log(tmp_path / "missing.csv")
