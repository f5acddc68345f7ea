"""Validation of a (deliberately imperfect) building-thermal twin against logged KPIs.

Plant: first-order room temperature x+ = a x + b u + w with a = 0.95; the twin
uses a = 0.94 (a modelling error).  KPIs per step: room temperature and heating
power.  Reports tolerance probabilities with exact one-sided 95% lower bounds,
the regret bound L_J max_k ||e_k||_inf for the operating cost
J(T, P) = (T - 21)^2 + 0.3 P, and a PNG of the error distributions.

    .venv/bin/python experiments/validation_report.py [--png PATH]
"""

import argparse
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp

import jtwin  # noqa: F401  (float64)
from jtwin import validation

A_PLANT, A_TWIN, B, STEPS = 0.95, 0.94, 0.5, 2000


def kpis(a, x0, u):
    """Temperature and heating power trajectories of x+ = a x + (1 - a) 15 + b u."""

    def step(x, u_k):
        x_next = a * x + (1 - a) * 15.0 + B * u_k
        return x_next, jnp.stack([x_next, u_k])

    return jax.lax.scan(step, x0, u)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--png", default=str(Path(tempfile.gettempdir()) / "jtwin_validation.png"))
    args = parser.parse_args()
    key_u, key_w, key_v = jax.random.split(jax.random.key(0), 3)
    u = 0.6 + 0.2 * jax.random.normal(key_u, (STEPS,))
    measured = kpis(A_PLANT, 20.0, u) + jax.random.normal(key_v, (STEPS, 2)) * jnp.array([0.05, 0.01])
    # one-step-ahead twin prediction from the measured temperature (the assimilated state)
    temp_pred = A_TWIN * jnp.concatenate([jnp.array([20.0]), measured[:-1, 0]]) + (1 - A_TWIN) * 15.0 + B * u
    predicted = jnp.stack([temp_pred, u], axis=1)
    cost = lambda y: (y[0] - 21.0) ** 2 + 0.3 * y[1]  # noqa: E731
    report = validation.validate(
        predicted, measured, tol=[0.15, 0.03], names=["temperature", "power"], cost=cost
    )
    print(report.table())
    print(f"plot: {report.plot(args.png)}")


if __name__ == "__main__":
    main()
