"""Positive physical parameters stored as logarithms, so gradient steps keep them positive."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def unconstrained(name: str, value) -> jnp.ndarray:
    """``log(value)`` after checking that every entry is finite and positive (error names ``name``)."""
    v = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise ValueError(f"{name}: expected finite positive values, got {value!r}")
    return jnp.asarray(np.log(v))


def positive(raw: jnp.ndarray) -> jnp.ndarray:
    """The positive parameter held by its unconstrained (log) representation."""
    return jnp.exp(raw)
