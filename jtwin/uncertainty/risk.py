"""Risk measures of scenario losses: value at risk and CVaR (Rockafellar–Uryasev).

For losses ``L`` and level ``q ∈ [0, 1)``::

    CVaR_q(L) = min_a  a + E[(L − a)₊] / (1 − q),

minimised at ``a = VaR_q(L)``.  For an empirical sample of ``S`` losses the
minimum is the mean of the worst ``(1 − q)·S`` samples, the boundary sample
weighted fractionally — computed here by a sort, so it is exact, jit-able and
differentiable almost everywhere (usable as a tuning objective with ``grad``).
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Float


def _check_level(q: float) -> None:
    if not 0.0 <= q < 1.0:
        raise ValueError(f"q: expected a level in [0, 1), got {q}")


def _tail_weights(s: int, q: float, dtype) -> tuple[Array, float]:
    tail = (1.0 - q) * s  # number of samples (fractional) in the tail
    return jnp.clip(tail - jnp.arange(s, dtype=dtype), 0.0, 1.0), tail


def cvar(losses: Float[Array, " S"], q: float = 0.95) -> Float[Array, ""]:
    """``CVaR_q`` of an empirical sample (any shape, flattened): mean of the worst ``1 − q`` fraction."""
    _check_level(q)
    losses = jnp.sort(jnp.ravel(jnp.asarray(losses)))[::-1]
    weights, tail = _tail_weights(losses.shape[0], q, losses.dtype)
    return jnp.sum(weights * losses) / tail


def value_at_risk(losses: Float[Array, " S"], q: float = 0.95) -> Float[Array, ""]:
    """``VaR_q``: the smallest ``a`` with empirical ``P(L ≤ a) ≥ q`` (a minimiser of the RU objective)."""
    _check_level(q)
    losses = jnp.sort(jnp.ravel(jnp.asarray(losses)))
    s = losses.shape[0]
    k = jnp.clip(jnp.ceil(q * s - 1e-12).astype(int) - 1, 0, s - 1)
    return losses[k]


def rockafellar_uryasev(losses: Float[Array, " S"], a: Float[Array, ""], q: float = 0.95) -> Float[Array, ""]:
    """The RU auxiliary function ``a + mean((L − a)₊)/(1 − q)``; its minimum over ``a`` is ``CVaR_q``."""
    _check_level(q)
    losses = jnp.ravel(jnp.asarray(losses))
    return a + jnp.mean(jnp.maximum(losses - a, 0.0)) / (1.0 - q)
