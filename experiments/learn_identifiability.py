"""Which plant parameters a log identifies: relative standard errors from the Fisher information.

For a synthetic log of each example plant (known parameters, process and measurement noise,
10% missing measurements) the observed Fisher information ``H = ∇²(−log p(y | θ))`` at the
true θ gives the Cramér–Rao standard errors ``√diag(H⁻¹)`` of the log-parameters, i.e. their
relative errors.  Parameters with small errors, and no strong correlation with another, are
the ones ``jtwin train`` fits by default; the rest stay frozen at their prior values.

    .venv/bin/python experiments/learn_identifiability.py
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import jtwin  # noqa: F401  (float64)
from jtwin.learn import laplace, make_problem, synthetic_log
from jtwin.models.library import BuildingRC, cstr_model, load_tmy3_greensboro


def report(title: str, lap) -> None:
    print(f"\n{title}")
    if not lap.identified:
        print(f"  not identified: the Fisher information is singular or indefinite; {lap.weakest}")
        return
    corr = lap.covariance / np.outer(lap.stderr, lap.stderr)
    for i, name in enumerate(lap.names):
        partner = int(np.argmax(np.where(np.arange(len(lap.names)) == i, 0, np.abs(corr[i]))))
        print(f"  {name:<28} relative std error {100 * lap.stderr[i]:7.2f}%   "
              f"strongest correlation {corr[i, partner]:+.3f} with {lap.names[partner]}")


def building() -> None:
    dt, steps = 0.25, 2000
    to_model = lambda p: p.to_linear(dt, 0.02, 0.1)  # noqa: E731
    rng = np.random.default_rng(0)
    ds = load_tmy3_greensboro().disturbances(0, steps, dt)
    us = np.repeat(rng.choice([0.0, 6.0], (steps // 4 + 1, 1)), 4, axis=0)[:steps]
    log = synthetic_log(to_model(BuildingRC(1)), jax.random.PRNGKey(0), jnp.full(2, 15.0), us, ds, dropout=0.1)
    names = ("log_c_air", "log_c_wall", "log_r_aw", "log_r_wo", "log_r_win", "log_solar_area", "logit_frac_air")
    problem, theta = make_problem(BuildingRC(1), log, mean0=jnp.full(2, 15.0), to_model=to_model, trainable=names)
    report(f"building, 1 zone, {steps} samples of {dt} h (r_zz has no neighbour to act on)", laplace(problem, theta, "gradient"))


def cstr() -> None:
    steps = 1000
    kw = dict(substeps=2, measure_concentration=True, r_std=(0.005, 0.1))
    rng = np.random.default_rng(0)
    us = 300 + np.repeat(rng.choice([-5.0, 1.0], (steps // 10 + 1, 1)), 10, axis=0)[:steps]
    ds = np.repeat(rng.normal(0, [0.03, 1.0], (steps // 20 + 1, 2)), 20, axis=0)[:steps]
    x0 = jnp.array([0.8, 330.0])
    log = synthetic_log(cstr_model(**kw), jax.random.PRNGKey(0), x0, us, ds, dropout=0.1)
    for names in (("log_k0", "log_e_over_r", "log_ua", "log_neg_dh"), ("log_k0", "log_ua", "log_neg_dh")):
        problem, theta = make_problem(cstr_model(**kw), log, mean0=x0, cov0=jnp.diag(jnp.array([0.01, 1.0])), trainable=names)
        report(f"CSTR, {steps} samples of 0.05 min, Ca and T measured: {', '.join(names)}", laplace(problem, theta, "gradient"))


if __name__ == "__main__":
    building()
    cstr()
