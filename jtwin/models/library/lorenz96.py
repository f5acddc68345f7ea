"""Assimilation test bed: the Lorenz-96 model ``dx_i/dt = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F`` (cyclic indices).

Chaotic for F = 8 and n ≥ 4 (the standard test bed has n = 40).  Dimensionless time;
one "day" is about 0.2 time units.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..ode import RK4, ODEModel


class Lorenz96(eqx.Module):
    """The Lorenz-96 vector field with learnable forcing ``F``; no control input."""

    forcing: Float[Array, ""]

    def __init__(self, forcing=8.0):
        self.forcing = jnp.asarray(forcing, float)

    def __call__(self, t, x, u):
        return (jnp.roll(x, -1) - jnp.roll(x, 2)) * jnp.roll(x, 1) - x + self.forcing


def lorenz96_model(
    n: int = 40,
    forcing: float = 8.0,
    dt: float = 0.05,
    substeps: int = 4,
    q_std: float = 0.0,
    r_std: float = 1.0,
    observe_every: int = 1,
) -> ODEModel:
    """Lorenz-96 with ``n`` variables as an ``ODEModel``: classical RK4 with ``substeps`` fixed steps per ``dt``.

    Measures every ``observe_every``-th variable with noise std ``r_std``; process noise std ``q_std``.
    """
    if int(n) != n or n < 4:
        raise ValueError(f"n: expected an integer >= 4, got {n}")
    return ODEModel(
        Lorenz96(forcing),
        lambda x, u, t: x[::observe_every],
        dt,
        q_std**2 * np.eye(n),
        r_std**2 * np.eye(len(range(0, n, observe_every))),
        solver=RK4(),
        substeps=substeps,
    )
