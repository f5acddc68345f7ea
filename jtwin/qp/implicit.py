"""Implicit differentiation of a QP solution through its KKT conditions.

At a solution ``(x, y)`` of ``min ½xᵀPx + qᵀx  s.t.  l ≤ Ax ≤ u`` with active
set ``𝒜 = {i : y_i ≠ 0}`` (``y_i > 0``: upper bound ``u_i`` active,
``y_i < 0``: lower bound ``l_i``), the solution satisfies

    F₁ = P x + q + Aᵀ y = 0,
    F₂ᵢ = Aᵢ x − bᵢ = 0   (i ∈ 𝒜, bᵢ = uᵢ or lᵢ),     F₂ᵢ = yᵢ = 0   (i ∉ 𝒜).

By the implicit function theorem the vector-Jacobian product of ``(x, y)``
with a cotangent ``(x̄, ȳ)`` is ``θ̄ = −wᵀ ∂F/∂θ`` with ``Jᵀw = (x̄, ȳ)`` and
``J = [[P, Aᵀ], [M A, I − M]]``, ``M = diag(1_𝒜)`` (as in OptNet and qpax).
This gives ``q̄ = −w_x``, ``P̄ = −w_x xᵀ``, ``Ā = −(y w_xᵀ + (M w_y) xᵀ)``,
``ū_i = w_{y,i}`` on active upper rows and ``l̄_i = w_{y,i}`` on active lower
rows.  ``Jᵀw = (x̄, ȳ)`` is solved by one LU factorisation of the quasi-definite
shift ``Jᵀ + δ·diag(1, …, 1, −1_𝒜)`` (as in OSQP's polishing; ``δ = 1e-10·max|J|``)
followed by three steps of iterative refinement towards the unshifted system:
exact to round-off when ``J`` is non-singular, and bounded instead of NaN when
the active set is degenerate (linearly dependent active rows).  This costs an
LU of ``J`` instead of the SVD a least-squares solve needs (14× less for the
building MPC's 504-row system).
ADMM sets the multipliers of strictly inactive rows to exactly zero, so the
active set read from ``y`` is the one the iterates identified.

:func:`attach_fixed_point_gradient` does the same for a fixed point of a map
(FISTA's proximal-gradient step on the MPC's non-smooth costs).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float


@jax.custom_vjp
def attach_kkt_gradient(
    P: Float[Array, "n n"],
    q: Float[Array, " n"],
    A: Float[Array, "m n"],
    l: Float[Array, " m"],
    u: Float[Array, " m"],
    x: Float[Array, " n"],
    y: Float[Array, " m"],
    valid: Bool[Array, ""],
) -> tuple[Float[Array, " n"], Float[Array, " m"]]:
    """Identity on ``(x, y)`` whose VJP is the implicit KKT derivative w.r.t. ``P, q, A, l, u``.

    ``x, y`` must be a solution of the QP (computed without gradient); when
    ``valid`` is false (the solve did not succeed) the returned gradients are zero.
    """
    return x, y


def _fwd(P, q, A, l, u, x, y, valid):
    return (x, y), (P, A, x, y, valid)


def _bwd(res, cot):
    P, A, x, y, valid = res
    gx, gy = cot
    n = x.shape[0]
    upper, lower = y > 0, y < 0
    act = (upper | lower).astype(x.dtype)
    J = jnp.block([[P, A.T], [act[:, None] * A, jnp.diag(1.0 - act)]])
    delta = 1e-10 * jnp.max(jnp.abs(J))
    w = refined_solve(J.T, jnp.concatenate([gx, gy]), delta * jnp.concatenate([jnp.ones(n, x.dtype), -act]), refine=3)
    w = jnp.where(valid & jnp.all(jnp.isfinite(w)), w, 0.0)
    wx, wy = w[:n], w[n:]
    P_bar = -jnp.outer(wx, x)
    q_bar = -wx
    A_bar = -(jnp.outer(y, wx) + jnp.outer(act * wy, x))
    u_bar = jnp.where(upper, wy, 0.0)
    l_bar = jnp.where(lower, wy, 0.0)
    return P_bar, q_bar, A_bar, l_bar, u_bar, jnp.zeros_like(x), jnp.zeros_like(y), None


def refined_solve(K, b, shift, refine: int):
    """``K⁻¹b`` from one LU of ``K + diag(shift)`` and ``refine`` steps of iterative refinement
    towards the unshifted system (the quasi-definite regularisation of OSQP's polishing)."""
    lu = jax.scipy.linalg.lu_factor(K + jnp.diag(shift).astype(K.dtype))
    w = jax.scipy.linalg.lu_solve(lu, b)
    for _ in range(refine):
        w = w + jax.scipy.linalg.lu_solve(lu, b - K @ w)
    return w


attach_kkt_gradient.defvjp(_fwd, _bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def attach_fixed_point_gradient(T: Callable, x: Float[Array, " n"], params) -> Float[Array, " n"]:
    """Identity on ``x``, a fixed point ``x = T(x, params)`` (e.g. a converged proximal-gradient
    step), whose VJP is the implicit derivative of the fixed point w.r.t. ``params``:

        x̄ ↦ (∂T/∂θ)ᵀ w,   (I − ∂T/∂x)ᵀ w = x̄.

    ``∂T/∂x`` is formed densely (``jacfwd``, ``n`` forward passes; the proximal operators are
    piecewise linear, so this is exact away from kinks); ``params`` is any pytree of arrays.
    A non-finite solve gives a zero gradient instead of NaN.
    """
    return x


def _fp_fwd(T, x, params):
    return x, (x, params)


def _fp_bwd(T, res, x_bar):
    x, params = res
    Jx = jax.jacfwd(lambda v: T(v, params))(x)
    w = jnp.linalg.solve(jnp.eye(x.shape[0], dtype=x.dtype) - Jx.T, x_bar)
    w = jnp.where(jnp.all(jnp.isfinite(w)), w, 0.0)
    _, vjp = jax.vjp(lambda p: T(x, p), params)
    return jnp.zeros_like(x), vjp(w)[0]


attach_fixed_point_gradient.defvjp(_fp_fwd, _fp_bwd)
