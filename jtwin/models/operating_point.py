"""Operating points of a model: Jacobian linearisation and steady states.

For any model ``x⁺ = f(x, u, t, d)``, ``y = h(x, u, t)`` and an operating point
``(x̄, ū, d̄)`` at time ``t``, the first-order expansion in deviation variables
``δx = x − x̄``, ``δu = u − ū``, ``δd = d − d̄`` is::

    f(x̄+δx, ū+δu, t, d̄+δd) ≈ f(x̄, ū, t, d̄) + A δx + B δu + E δd,
    h(x̄+δx, ū, t)          ≈ h(x̄, ū, t) + H δx,

    A = ∂f/∂x,  B = ∂f/∂u,  E = ∂f/∂d,  H = ∂h/∂x   (at the operating point, by autodiff).

The constant ``f(x̄, ū, t, d̄) − x̄`` vanishes exactly at a steady state; :func:`steady_state`
finds one with prescribed values of some states (e.g. a setpoint) by Newton's method.
Jacobians use ``jax.jacfwd`` unless the model is only reverse-differentiable (an ODE model
with diffrax's default checkpointed adjoint), then ``jax.jacrev`` (:func:`jacobian_transform`).
"""

from __future__ import annotations

from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from .._checks import as_array
from ..qp.results import CODES, RESULTS, from_code
from .base import AbstractModel
from .linear import LinearModel


def jacobian_transform(model: AbstractModel) -> Callable:
    """``jax.jacfwd``, or ``jax.jacrev`` for a model that only reverse mode can differentiate: an ODE
    model whose diffrax adjoint is not ``ForwardMode`` (the default checkpointed adjoint is a custom VJP)."""
    adjoint = getattr(model, "adjoint", None)
    reverse_only = adjoint is not None and not isinstance(adjoint, diffrax.ForwardMode)
    return jax.jacrev if reverse_only else jax.jacfwd


def _point(model: AbstractModel, x, u, d, dtype=None):
    """``x`` [n], ``u`` [m], ``d`` [p] (zeros if None) as arrays of one floating dtype."""
    x = as_array("x", x, (model.state_dim,))
    dtype = jnp.result_type(x, float) if dtype is None else dtype
    u = as_array("u", u, (model.input_dim,)).astype(dtype)
    p = model.disturbance_dim
    d = jnp.zeros(p, dtype) if d is None else as_array("d", d, (p,)).astype(dtype)
    return x.astype(dtype), u, d


def linearize(
    model: AbstractModel,
    x: Float[Array, " n"],
    u: Float[Array, " m"],
    t=0.0,
    d: Float[Array, " p"] | None = None,
) -> LinearModel:
    """The Jacobians of ``model`` at ``(x, u, t, d)`` as a deviation-variable :class:`LinearModel`.

    Returns ``LinearModel(A, B, H, Q, R', E)`` [n, n], [n, m], [ny, n], [n, n], [ny, ny], [n, p] with
    ``A, B, E, H`` as in the module docstring, the model's ``Q`` and ``R' = Φ R Φᵀ`` (the
    measurement-noise covariance; ``R`` itself for additive noise) and the model's ``dt``.
    It describes ``δx⁺ = A δx + B δu + E δd + w``, ``δy = H δx + v``; the constant term
    ``f(x, u, t, d) − x`` is left to the caller (zero at a steady state).  For a
    ``LinearModel`` it returns its own ``A, B, E, H`` (the expansion is exact).
    """
    x, u, d = _point(model, x, u, d)
    p = model.disturbance_dim
    jac = jacobian_transform(model)
    f = lambda x_, u_, d_: model.transition(x_, u_, t, d_ if p else None)  # noqa: E731
    A, B, E = jac(f, argnums=(0, 1, 2))(x, u, d)
    H = jac(lambda x_: model.observe(x_, u, t))(x)
    gain = model.noise_gain(x, u, t)
    R = model.R if model.additive_measurement_noise else gain @ model.R @ gain.T
    return LinearModel(A, B, H, model.Q, R, E if p else None, dt=model.dt)


class SteadyState(eqx.Module):
    """Result of :func:`steady_state`: ``x`` [n], ``u`` [m] with ``f(x, u, t, d) = x`` and ``S x = r``;
    ``residual`` the final ``‖(f − x, S x − r)‖∞``, ``iterations``, ``status`` (a
    :class:`jtwin.qp.RESULTS` item: successful, max_iterations_reached or numerical_error)."""

    x: Float[Array, " n"]
    u: Float[Array, " m"]
    residual: Float[Array, ""]
    iterations: Int[Array, ""]
    status: RESULTS


def steady_state(
    model: AbstractModel,
    x_guess: Float[Array, " n"],
    u_guess: Float[Array, " m"],
    select: Float[Array, "k n"],
    target: Float[Array, " k"],
    *,
    t=0.0,
    d: Float[Array, " p"] | None = None,
    tol: float | None = None,
    max_iter: int = 50,
) -> SteadyState:
    """A steady state ``x = f(x, u, t, d)`` whose selected states hit a target: ``S x = r``.

    Gauss–Newton on ``g(x, u) = (f(x, u, t, d) − x, S x − r)`` [n + k] over ``z = (x, u)``
    [n + m]: ``z ← z − J⁺ g`` with the least-squares (minimum-norm) step, which is Newton's
    step when ``k = m`` (e.g. one setpoint per input).  Stops when
    ``‖g‖∞ ≤ tol · (1 + ‖z‖∞)`` (``tol`` default ``√eps`` of the dtype) → ``successful``, after
    ``max_iter`` steps → ``max_iterations_reached``, or on a non-finite iterate → ``numerical_error``.
    jit-compatible (``lax.while_loop``); check ``status`` before using the result.
    """
    x, u, d = _point(model, x_guess, u_guess, d)
    n, m = x.shape[0], u.shape[0]
    S = as_array("select", select, (None, n)).astype(x.dtype)
    r = as_array("target", target, (S.shape[0],)).astype(x.dtype)
    if not (isinstance(max_iter, int) and max_iter >= 1):
        raise ValueError(f"max_iter: expected a positive int, got {max_iter!r}")
    tol = float(jnp.sqrt(jnp.finfo(x.dtype).eps)) if tol is None else float(tol)
    if not tol > 0:
        raise ValueError(f"tol: expected a positive tolerance, got {tol}")
    p = model.disturbance_dim
    jac = jacobian_transform(model)

    def residual(z):
        xz, uz = z[:n], z[n:]
        return jnp.concatenate([model.transition(xz, uz, t, d if p else None) - xz, S @ xz - r])

    def size(z, g):
        return jnp.max(jnp.abs(g)), tol * (1.0 + jnp.max(jnp.abs(z)))

    def cond(state):
        z, g, k = state
        err, bound = size(z, g)
        return (k < max_iter) & (err > bound) & jnp.all(jnp.isfinite(z))

    def body(state):
        z, g, k = state
        step = jnp.linalg.lstsq(jac(residual)(z), g)[0]
        z = z - step
        return z, residual(z), k + 1

    z0 = jnp.concatenate([x, u])
    z, g, k = jax.lax.while_loop(cond, body, (z0, residual(z0), jnp.asarray(0, jnp.int32)))
    err, bound = size(z, g)
    finite = jnp.all(jnp.isfinite(z)) & jnp.isfinite(err)
    code = jnp.where(err <= bound, CODES["successful"], CODES["max_iterations_reached"])
    status = from_code(jnp.where(finite, code, CODES["numerical_error"]))
    return SteadyState(x=z[:n], u=z[n:m + n], residual=err, iterations=k, status=status)
