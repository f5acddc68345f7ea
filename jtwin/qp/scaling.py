"""Ruiz equilibration of a QP, as in OSQP.

For ``min ½xᵀPx + qᵀx  s.t.  l ≤ Ax ≤ u`` the scaled problem is

    P̄ = c·D P D,   q̄ = c·D q,   Ā = E A D,   l̄ = E l,   ū = E u,

with diagonal ``D`` (variables), ``E`` (constraints) and a cost scale ``c``.
Its solution maps back as ``x = D x̄``, ``y = E ȳ / c``, ``Ax = E⁻¹ z̄``.

Each Ruiz pass divides every column of the KKT matrix ``[[P, Aᵀ], [A, 0]]`` by
the square root of its ∞-norm, then rescales the cost so the mean column norm
of ``P`` (or ``‖q‖∞`` when larger; for a batch the median problem's) becomes one.  Norms are clipped to
``[1e-4, 1e4]`` (tiny norms are treated as one) exactly as OSQP does.
The scaling carries no gradient: the QP's solution does not depend on it.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

_MIN_SCALING = 1e-4
_MAX_SCALING = 1e4


class Scaling(eqx.Module):
    """Diagonal scaling ``(D, E, c)`` of a QP; ``D`` has shape [n], ``E`` shape [m]."""

    D: Float[Array, " n"]
    E: Float[Array, " m"]
    c: Float[Array, ""]


def _limit(norm: Array) -> Array:
    norm = jnp.where(norm < _MIN_SCALING, 1.0, norm)
    return jnp.minimum(norm, _MAX_SCALING)


def ruiz_equilibrate(
    P: Float[Array, "n n"],
    A: Float[Array, "m n"],
    q: Float[Array, "*batch n"],
    iterations: int = 10,
) -> Scaling:
    """Ruiz equilibration of ``(P, A)`` with OSQP's cost scaling.

    ``q`` is the linear cost, or a batch of them (leading axes) for problems
    that share ``P`` and ``A``; it only enters the cost scale ``c`` through
    ``‖D q‖∞``, for a batch the median over its problems (the maximum let one
    problem with a huge cost shrink everyone's ``c`` and stall the whole batch).
    ``iterations=0`` returns the identity scaling.
    """
    P, A, q = jax.lax.stop_gradient((P, A, q))
    n, m = P.shape[0], A.shape[0]
    D = jnp.ones(n, P.dtype)
    E = jnp.ones(m, P.dtype)
    c = jnp.ones((), P.dtype)
    for _ in range(iterations):  # a handful of static passes, unrolled at trace time
        col = jnp.max(jnp.abs(P), axis=0)
        if m:
            col = jnp.maximum(col, jnp.max(jnp.abs(A), axis=0))
        d = 1.0 / jnp.sqrt(_limit(col))
        e = 1.0 / jnp.sqrt(_limit(jnp.max(jnp.abs(A), axis=1))) if m else E
        P = d[:, None] * P * d[None, :]
        A = e[:, None] * A * d[None, :]
        D, E = D * d, E * e
        q = d * q
        q_norm = jnp.median(jnp.max(jnp.abs(q), axis=-1))  # a batch's typical problem, not its largest
        cost = jnp.maximum(_limit(jnp.mean(jnp.max(jnp.abs(P), axis=0))), _limit(c * q_norm))
        gamma = 1.0 / _limit(cost)
        P = gamma * P
        c = c * gamma
    return Scaling(D=D, E=E, c=c)
