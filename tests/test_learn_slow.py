"""Heavier learning tests (``-m slow``): the CSTR through the UKF and diffrax, interval coverage over
repeated seeds (vmapped fits), and ``jtwin train`` on a config."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.stats

from jtwin.learn import fit, make_problem, synthetic_log
from jtwin.learn.params import flatten
from jtwin.learn.train import load_fitted, train_config
from jtwin.logs import save_log
from jtwin.models.library import BuildingRC, cstr_model, load_tmy3_greensboro

from test_learn import BUILDING_TRAINABLE, building_log, building_to_model

pytestmark = pytest.mark.slow

CSTR_TRAINABLE = ("log_k0", "log_ua", "log_neg_dh")  # E/R is not identifiable next to k0 over a narrow T range
CSTR_KW = dict(substeps=2, measure_concentration=True, r_std=(0.005, 0.1))
CSTR_X0 = jnp.array([0.8, 330.0])
CSTR_COV0 = jnp.diag(jnp.array([0.01, 1.0]))


def cstr_log(seed, steps=1000):
    """Open-loop excitation on the stable low-temperature branch: coolant 295/301 K, feed disturbances."""
    rng = np.random.default_rng(seed)
    us = 300 + np.repeat(rng.choice([-5.0, 1.0], (steps // 10 + 1, 1)), 10, axis=0)[:steps]
    ds = np.repeat(rng.normal(0, [0.03, 1.0], (steps // 20 + 1, 2)), 20, axis=0)[:steps]
    return synthetic_log(cstr_model(**CSTR_KW), jax.random.PRNGKey(seed), CSTR_X0, us, ds, dropout=0.1)


def test_cstr_mle_recovers_identifiable_parameters():
    init = cstr_model(**CSTR_KW, k0=7.2e10 * 1.1, ua=4.5e4, neg_dh=5.5e4)
    res = fit(init, cstr_log(1), mean0=CSTR_X0, cov0=CSTR_COV0, trainable=CSTR_TRAINABLE, progress=False)
    assert res.status == "converged"
    truth = np.log([7.2e10, 5.0e4, 5.0e4])
    np.testing.assert_allclose(np.exp(res.laplace.estimate), np.exp(truth), rtol=0.02)
    lo, hi = res.laplace.interval(0.95).T
    assert np.all((lo <= truth) & (truth <= hi))


def test_cstr_ukf_log_likelihood_gradient_matches_finite_differences():
    problem, theta = make_problem(cstr_model(**CSTR_KW), cstr_log(2, steps=200), mean0=CSTR_X0, cov0=CSTR_COV0)
    flat, unflatten = flatten(theta)  # every parameter: log k0, log E/R, log UA, log(-ΔH), Q and R factors
    nll = jax.jit(lambda z: problem.negative_log_likelihood(unflatten(z)))
    grad = np.asarray(jax.jit(jax.grad(lambda z: problem.negative_log_likelihood(unflatten(z))))(flat))
    h = 1e-6 * np.maximum(1.0, np.abs(np.asarray(flat)))
    fd = np.array([(nll(flat.at[i].add(h[i])) - nll(flat.at[i].add(-h[i]))) / (2 * h[i]) for i in range(flat.size)])
    np.testing.assert_allclose(grad, fd, rtol=1e-4, atol=1e-4 * np.max(np.abs(fd)))


def test_building_intervals_cover_the_truth():
    """95% Laplace intervals contain the true parameters in >= 90% of 30 independent logs (fits vmapped)."""
    seeds = range(30)
    init = BuildingRC(1, c_air=1.2, c_wall=8.0, r_aw=0.6)
    built = [
        make_problem(init, building_log(100 + s, steps=1000), mean0=jnp.full(2, 15.0), to_model=building_to_model,
                     trainable=BUILDING_TRAINABLE)
        for s in seeds
    ]
    problems = jax.tree.map(lambda *a: jnp.stack(a), *[p for p, _ in built])
    flat0, unflatten = flatten(built[0][1])
    optimizer = optax.lbfgs()

    @jax.jit
    @jax.vmap
    def solve(problem):
        nll = lambda z: problem.negative_log_likelihood(unflatten(z))  # noqa: E731

        def body(carry, _):
            z, state = carry
            value, grad = jax.value_and_grad(nll)(z)
            updates, state = optimizer.update(grad, state, z, value=value, grad=grad, value_fn=nll)
            return (z + updates, state), None

        state0 = jax.tree.map(lambda a: jnp.asarray(a, a.dtype), optimizer.init(flat0))
        (z, _), _ = jax.lax.scan(body, (flat0, state0), None, length=25)
        return z, jax.grad(nll)(z), jax.hessian(nll)(z)

    z, grads, hessians = (np.asarray(a) for a in solve(problems))
    assert np.max(np.abs(grads)) < 1e-3  # every fit converged
    stderr = np.sqrt(np.diagonal(np.linalg.inv(hessians), axis1=1, axis2=2))
    truth = np.log([1.0, 10.0, 0.5])
    covered = np.abs(z - truth) <= scipy.stats.norm.ppf(0.975) * stderr
    print(f"coverage {covered.mean():.3f}")
    assert covered.mean() >= 0.90, covered.mean()


def test_train_config_writes_parameters_that_run_can_load(tmp_path):
    cfg = "configs/building.toml"
    steps = 1500
    rng = np.random.default_rng(0)
    truth = BuildingRC(3).to_linear(1.0, 0.05, 0.2)
    ds = load_tmy3_greensboro().disturbances(0, steps, 1.0)
    us = np.repeat(rng.choice([0.0, 6.0], (steps // 2 + 1, 3)), 2, axis=0)[:steps]
    log = synthetic_log(truth, jax.random.PRNGKey(0), jnp.array([20.0, 20, 20, 18, 18, 18]), us, ds, dropout=0.05)
    path = save_log(log, tmp_path / "building.csv")
    result, files = train_config(cfg, path, out_dir=tmp_path / "out", progress=False)
    assert result.status == "converged" and result.laplace.identified
    from jtwin.config import load_config

    model = load_fitted(load_config(cfg), files["params"])
    np.testing.assert_allclose(np.asarray(model.A), np.asarray(result.model.A))
    assert not np.allclose(np.asarray(model.A), np.asarray(BuildingRC(3).to_linear(1.0).A))  # parameters changed
