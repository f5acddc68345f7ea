"""Exact proximal operators for the non-smooth MPC costs.

``prox_{t g}(v) = argmin_x  g(x) + ‖x − v‖² / (2t)``.  All operators are
closed form or exact finite procedures (no inner iterations), elementwise or
on one vector, and jit/vmap/grad-compatible.

* ``g = α‖x‖₁ + 𝟙[lo ≤ x ≤ hi]``: separable, ``clip(soft(v, tα), lo, hi)``.
* ``g = β·max(0, cᵀx − ρ)`` (hinge of a linear form): three cases.
* ``g = α‖x‖₁ + 𝟙[lo, hi] + β·max(0, cᵀx − ρ)`` (the MPC stage cost):
  ``x(θ) = prox_{t(ℓ1+box)}(v − tβθc)`` with the hinge's subgradient weight
  ``θ ∈ [0, 1]`` fixed by ``cᵀx(θ) = ρ``; ``θ ↦ cᵀx(θ)`` is non-increasing and
  piecewise linear with known breakpoints, so the root is found exactly by
  evaluating it at the sorted breakpoints and interpolating linearly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float


def soft_threshold(v: Float[Array, "*s"], tau: ArrayLike) -> Float[Array, "*s"]:
    """``sign(v)·max(|v| − τ, 0)``, the prox of ``τ‖·‖₁``."""
    return jnp.sign(v) * jnp.maximum(jnp.abs(v) - tau, 0.0)


def prox_l1_box(
    v: Float[Array, "*s"], t: ArrayLike, alpha: ArrayLike, lo: ArrayLike, hi: ArrayLike
) -> Float[Array, "*s"]:
    """Prox of ``t·(α‖x‖₁ + 𝟙[lo ≤ x ≤ hi])``: ``clip(soft(v, tα), lo, hi)`` (``lo ≤ hi``, ±inf allowed)."""
    return jnp.clip(soft_threshold(v, t * alpha), lo, hi)


def prox_hinge(
    v: Float[Array, " m"], t: ArrayLike, beta: ArrayLike, c: Float[Array, " m"], rho: ArrayLike
) -> Float[Array, " m"]:
    """Prox of ``t·β·max(0, cᵀx − ρ)``.

    ``v`` if ``cᵀv ≤ ρ``; ``v − tβc`` if ``cᵀv − tβ‖c‖² ≥ ρ``; otherwise the
    projection of ``v`` onto the hyperplane ``cᵀx = ρ``.
    """
    cv = c @ v
    cc = c @ c
    on_plane = v - ((cv - rho) / jnp.where(cc > 0, cc, 1.0)) * c
    return jnp.where(cv <= rho, v, jnp.where(cv - t * beta * cc >= rho, v - t * beta * c, on_plane))


def prox_l1_box_hinge(
    v: Float[Array, " m"],
    t: ArrayLike,
    alpha: ArrayLike,
    lo: Float[Array, " m"],
    hi: Float[Array, " m"],
    beta: ArrayLike,
    c: Float[Array, " m"],
    rho: ArrayLike,
) -> Float[Array, " m"]:
    """Exact prox of ``t·(α‖x‖₁ + 𝟙[lo ≤ x ≤ hi] + β·max(0, cᵀx − ρ))``.

    With ``s = tβ`` and ``x(θ) = clip(soft(v − sθc, tα), lo, hi)``, the
    optimality condition is ``x = x(θ)`` with ``θ = 0`` if ``cᵀx < ρ``, ``θ = 1``
    if ``cᵀx > ρ`` and ``θ ∈ [0, 1]`` if ``cᵀx = ρ``.  ``φ(θ) = cᵀx(θ)`` is
    non-increasing and linear between the breakpoints where a component of
    ``v − sθc`` crosses ``±tα`` or the value mapped onto ``lo``/``hi``, so the
    root of ``φ(θ) = ρ`` is exact after sorting these (at most ``4m + 2``)
    breakpoints.  If the box and the hinge region cannot meet the result is the
    boundary point the subgradient condition selects (``θ = 1``).
    """
    tau = t * alpha
    s = t * beta
    x_of = lambda theta: prox_l1_box(v - s * theta * c, t, alpha, lo, hi)  # noqa: E731
    kinks = jnp.stack(
        [
            jnp.broadcast_to(tau, v.shape),
            jnp.broadcast_to(-tau, v.shape),
            lo + tau * jnp.sign(lo),
            hi + tau * jnp.sign(hi),
        ]
    )  # [4, m] values of w_j = v_j − sθc_j where x_j(θ) has a kink
    denom = s * c
    theta = (v[None, :] - kinks) / jnp.where(denom != 0, denom, 1.0)[None, :]
    theta = jnp.where(jnp.isfinite(theta) & (denom != 0)[None, :], jnp.clip(theta, 0.0, 1.0), 0.0)
    grid = jnp.sort(jnp.concatenate([jnp.zeros(1, v.dtype), jnp.ones(1, v.dtype), theta.ravel()]))
    values = jax.vmap(lambda g: c @ x_of(g))(grid)
    # φ is non-increasing: find the last grid point with φ ≥ ρ and interpolate to the next one
    above = values >= rho
    i = jnp.clip(jnp.sum(above) - 1, 0, grid.shape[0] - 2)
    g0, g1, f0, f1 = grid[i], grid[i + 1], values[i], values[i + 1]
    slope = f0 - f1
    theta_star = jnp.where(slope > 0, g0 + (f0 - rho) * (g1 - g0) / jnp.where(slope > 0, slope, 1.0), g0)
    theta_star = jnp.where(values[0] <= rho, 0.0, jnp.where(values[-1] >= rho, 1.0, theta_star))
    return x_of(theta_star)
