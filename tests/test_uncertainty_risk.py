"""CVaR/VaR vs the Rockafellar–Uryasev linear program (cvxpy) and CVaR as a gradient-based tuning objective."""

import cvxpy as cp
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jtwin.kpi import summarize
from jtwin.uncertainty import cvar, rockafellar_uryasev, value_at_risk


def ru_lp(losses, q):
    """min_a a + Σ s_i / ((1 − q) S)  s.t. s ≥ L − a, s ≥ 0 (Rockafellar & Uryasev 2000)."""
    a, s = cp.Variable(), cp.Variable(losses.size)
    prob = cp.Problem(cp.Minimize(a + cp.sum(s) / ((1 - q) * losses.size)), [s >= losses - a, s >= 0])
    prob.solve(solver=cp.CLARABEL)
    return prob.value


@pytest.mark.parametrize("size, q", [(1000, 0.95), (37, 0.9), (10, 0.0)])
def test_cvar_matches_rockafellar_uryasev_lp(size, q):
    losses = np.random.default_rng(size).lognormal(size=size)
    assert float(cvar(losses, q)) == pytest.approx(ru_lp(losses, q), rel=1e-6)
    a = value_at_risk(losses, q)
    assert float(rockafellar_uryasev(losses, a, q)) == pytest.approx(ru_lp(losses, q), rel=1e-6)
    assert float(a) == pytest.approx(np.quantile(losses, q, method="inverted_cdf"))


def test_kpi_summary_uses_cvar_and_bad_level_raises():
    v = np.arange(1.0, 101.0)
    assert summarize({"loss": v}, q=0.9)["loss"]["cvar"] == pytest.approx(np.mean(v[-10:]))
    with pytest.raises(ValueError, match="q"):
        cvar(v, 1.0)


def test_cvar_as_tuning_objective():
    """Tune the gain k of u = −kx for x⁺ = 1.2x + u + w by gradient descent on CVaR_0.9 of the closed-loop cost."""
    rng = np.random.default_rng(0)
    w = jnp.asarray(rng.standard_t(3, size=(400, 30)) * 0.1)
    x0 = jnp.asarray(rng.normal(size=400))

    def losses(k):
        def run(x, ws):
            def step(x, wk):
                u = -k * x
                return 1.2 * x + u + wk, x**2 + 0.5 * u**2

            return jnp.sum(jax.lax.scan(step, x, ws)[1])

        return jax.vmap(run)(x0, w)

    objective = jax.jit(lambda k: cvar(losses(k), 0.9))
    grad = jax.jit(jax.grad(lambda k: cvar(losses(k), 0.9)))
    opt = optax.adam(optax.piecewise_constant_schedule(0.02, {300: 0.1, 450: 0.1}))
    k = jnp.asarray(0.3)
    state = opt.init(k)
    for _ in range(600):
        updates, state = opt.update(grad(k), state)
        k = optax.apply_updates(k, updates)
    k = float(k)
    grid = np.linspace(0.3, 1.5, 1201)
    values = np.array([ru_lp(np.asarray(losses(g)), 0.9) for g in grid[::40]])
    k_grid = grid[::40][np.argmin(values)]
    fine = np.linspace(k_grid - 0.03, k_grid + 0.03, 31)
    k_ref = fine[np.argmin([ru_lp(np.asarray(losses(g)), 0.9) for g in fine])]
    assert k == pytest.approx(k_ref, abs=2e-3)
    assert float(objective(k)) <= float(objective(k_ref)) * (1 + 1e-6)
