"""Synthetic plant logs from a model with known parameters (for tests, benchmarks and tutorials)."""

from __future__ import annotations

import jax
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ..logs import PlantLog
from ..models.base import AbstractModel


def synthetic_log(
    model: AbstractModel,
    key: PRNGKeyArray,
    x0: Float[Array, " n"],
    us: Float[Array, "T m"],
    ds: Float[Array, "T p"] | None = None,
    *,
    dropout: float = 0.0,
    t0: float = 0.0,
) -> PlantLog:
    """Simulate ``model`` from ``x0`` under inputs ``us`` (and disturbances ``ds``) with process and
    measurement noise, and drop each measurement entry independently with probability ``dropout`` (NaN).

    Returns a :class:`~jtwin.logs.PlantLog` sampled every ``model.dt`` from ``t0``.
    """
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout: expected a probability in [0, 1), got {dropout}")
    us = np.asarray(us, float)
    k_sim, k_drop = jax.random.split(key)
    traj = model.simulate(k_sim, x0, us.shape[0], us, ds, t0=t0)
    ys = np.array(traj.ys)
    ys[np.asarray(jax.random.uniform(k_drop, ys.shape)) < dropout] = np.nan
    return PlantLog(t=np.asarray(traj.ts), u=us, y=ys, d=None if ds is None else np.asarray(ds, float))
