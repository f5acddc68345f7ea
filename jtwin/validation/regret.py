"""Decision-regret bound ``ΔJ ≤ L_J · max_k ‖e_k‖∞`` with the Lipschitz constant ``L_J`` from autodiff.

For a cost ``J: R^K → R`` of the KPI vector, the mean-value theorem along the
segment from ``Y`` to ``Ŷ = Y + e`` gives

    |J(Ŷ) − J(Y)| ≤ sup_y ‖∇J(y)‖₁ · ‖e‖∞ ,

the 1-norm being the dual of the ∞-norm.  So ``L_J = sup_{y ∈ box} ‖∇J(y)‖₁``
over a box containing both predictions and observations, and the bound is
``L_J · max_k ‖e_k‖∞`` with ``‖e_k‖∞ = max_i |e[i, k]|``.

:func:`lipschitz_constant` estimates the supremum by multi-start projected
sign-gradient (Rprop) ascent of ``g(y) = ‖∇J(y)‖₁`` over the box, with ``∇J`` and
``∇g`` from ``jax.grad``, keeping the best value seen.  It is exact for costs
whose gradient norm is maximised at a box vertex or is constant (linear ``J``,
convex quadratics: ``‖Qy + c‖₁`` is convex, so its maximum is at a vertex), and
a lower estimate of the supremum in general (ascent finds local maxima; more
starts make it tighter).

When the optimal policy ``u*(y) = argmin_u C(u, y)`` is computable,
:func:`decision_regret` measures the regret of acting on the twin's
predictions, ``C(u*(Ŷ), Y) − C(u*(Y), Y) ≥ 0``; it is at most
``2 · L · ‖e‖∞`` with ``L = sup_{u, y} ‖∇_y C(u, y)‖₁`` (add and subtract
``C(u*(Ŷ), Ŷ)`` and ``C(u*(Y), Ŷ)``, and use optimality of ``u*(Ŷ)`` at ``Ŷ``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import as_array

Cost = Callable[[Float[Array, " k"]], Float[Array, ""]]


class LipschitzEstimate(NamedTuple):
    """``value``: estimate of ``sup ‖∇J‖₁`` over the box; ``argmax``: the point ``[k]`` where it was attained."""

    value: Float[Array, ""]
    argmax: Float[Array, " k"]


def gradient_dual_norm(cost: Cost, y: Float[Array, " k"]) -> Float[Array, ""]:
    """``‖∇J(y)‖₁``: the local Lipschitz constant of ``J`` w.r.t. the ∞-norm on the KPIs."""
    return jnp.sum(jnp.abs(jax.grad(cost)(y)))


def lipschitz_constant(
    cost: Cost,
    lower: Float[Array, " k"],
    upper: Float[Array, " k"],
    *,
    key: PRNGKeyArray | None = None,
    num_starts: int = 64,
    steps: int = 200,
) -> LipschitzEstimate:
    """Estimate ``L_J = sup_{lower ≤ y ≤ upper} ‖∇J(y)‖₁`` by multi-start projected sign-gradient ascent.

    Starts: the box centre and ``num_starts − 1`` uniform points.  Each step
    moves ``y ← clip(y + s ⊙ sign(∇g(y)))`` with per-coordinate steps ``s``
    adapted as in Rprop (×1.2 while the gradient sign holds, ×0.5 when it flips;
    initially 10% of the box width), and the best ``g`` seen over all iterates
    is returned (see the module docstring for when this is exact).  Pure JAX:
    ``cost`` must be a JAX-traceable function of a ``[k]`` vector.
    """
    lower = as_array("lower", lower, (None,))
    upper = as_array("upper", upper, lower.shape)
    if bool(jnp.any(upper < lower)):
        raise ValueError("upper: expected upper >= lower elementwise")
    if num_starts < 1 or steps < 0:
        raise ValueError(f"num_starts, steps: expected num_starts >= 1 and steps >= 0, got {num_starts}, {steps}")
    key = jax.random.key(0) if key is None else key
    return _ascend(cost, lower, upper, key, num_starts, steps)


def _ascend(cost, lower, upper, key, num_starts, steps) -> LipschitzEstimate:
    g = lambda y: gradient_dual_norm(cost, y)  # noqa: E731
    g_and_grad = jax.vmap(jax.value_and_grad(g))
    width = upper - lower
    starts = lower + width * jax.random.uniform(key, (num_starts, lower.shape[0]), lower.dtype)
    starts = starts.at[0].set(lower + 0.5 * width)

    def body(_, carry):  # projected Rprop: per-coordinate steps grow x1.2 on a steady sign, halve on a flip
        y, step, last_sign, best, best_y = carry
        value, slope = g_and_grad(y)
        improved = value > best
        best, best_y = jnp.where(improved, value, best), jnp.where(improved[:, None], y, best_y)
        sign = jnp.sign(slope)
        step = jnp.clip(jnp.where(sign * last_sign < 0, 0.5 * step, 1.2 * step), 1e-12 * width, 0.5 * width)
        return jnp.clip(y + step * sign, lower, upper), step, sign, best, best_y

    step0 = jnp.broadcast_to(0.1 * width, starts.shape)
    init = (starts, step0, jnp.zeros_like(starts), jnp.full((num_starts,), -jnp.inf, lower.dtype), starts)
    y, _, _, best, best_y = jax.lax.fori_loop(0, steps, body, init)
    final = jax.vmap(g)(y)
    best, best_y = jnp.where(final > best, final, best), jnp.where((final > best)[:, None], y, best_y)
    i = jnp.argmax(best)
    return LipschitzEstimate(best[i], best_y[i])


def regret_bound(lipschitz, errors: Float[Array, "n k"]) -> Float[Array, ""]:
    """``L_J · max_k ‖e_k‖∞`` (NaN errors, i.e. missing samples, are ignored)."""
    e = jnp.asarray(errors)
    return jnp.asarray(lipschitz) * jnp.max(jnp.where(jnp.isnan(e), 0.0, jnp.abs(e)))


def cost_gap(cost: Cost, y_pred: Float[Array, "n k"], y_true: Float[Array, "n k"]) -> Float[Array, " n"]:
    """``J(Ŷ_i) − J(Y_i)`` per sample: the cost error the bound controls (``vmap`` over samples)."""
    return jax.vmap(cost)(y_pred) - jax.vmap(cost)(y_true)


def decision_regret(
    cost: Callable[[Array, Float[Array, " k"]], Float[Array, ""]],
    policy: Callable[[Float[Array, " k"]], Array],
    y_pred: Float[Array, "n k"],
    y_true: Float[Array, "n k"],
) -> Float[Array, " n"]:
    """Regret ``C(u*(Ŷ_i), Y_i) − C(u*(Y_i), Y_i)`` of deciding on the twin's KPIs, per sample.

    ``cost(u, y)`` is the cost of decision ``u`` when the KPIs are ``y``;
    ``policy(y)`` returns the optimal decision ``u*(y)``.  Bounded by
    ``2 L ‖e‖∞`` (module docstring).
    """

    def one(y_hat, y):
        return cost(policy(y_hat), y) - cost(policy(y), y)

    return jax.vmap(one)(y_pred, y_true)


def kpi_box(*arrays) -> tuple[np.ndarray, np.ndarray]:
    """Per-KPI ``(lower, upper)`` over the rows of the given ``[n, k]`` arrays (NaNs ignored)."""
    stacked = np.concatenate([np.asarray(a, dtype=np.float64) for a in arrays], axis=0)
    return np.nanmin(stacked, axis=0), np.nanmax(stacked, axis=0)
