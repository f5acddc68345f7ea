"""FISTA: accelerated proximal gradient with adaptive restart, fixed step (vmap-friendly).

Minimises ``f(x) + g(x)`` with ``f`` convex and ``L``-smooth and ``g`` convex
with an exact prox (:mod:`jtwin.qp.prox`)::

    x⁺ = prox_{g/L}(y − ∇f(y)/L)
    restart if ⟨y − x⁺, x⁺ − x⟩ > 0:   t⁺ = 1,  y⁺ = x⁺          (O'Donoghue & Candès)
    else:  t⁺ = (1 + √(1 + 4t²))/2,   y⁺ = x⁺ + ((t − 1)/t⁺)(x⁺ − x)

The step ``1/L`` is fixed (no line search), ``L`` from :func:`power_iteration`
for quadratic ``f``.  Termination: fixed-point residual
``‖x⁺ − y‖∞ ≤ tol·max(1, ‖x⁺‖∞)`` (the gradient mapping times ``1/L``).
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from .status import MAX_ITER, NUMERICAL_ERROR, SOLVED


class FISTASolution(eqx.Module):
    """``x`` the last iterate, ``status`` (SOLVED / MAX_ITER / NUMERICAL_ERROR), ``iterations``, ``residual``."""

    x: Array
    status: Int[Array, ""]
    iterations: Int[Array, ""]
    residual: Float[Array, ""]


def power_iteration(
    matvec: Callable[[Array], Array], x0: Array, iterations: int = 100, safety: float = 1.02
) -> Float[Array, ""]:
    """Largest eigenvalue of a symmetric PSD operator by power iteration, times ``safety``.

    The Rayleigh quotient approaches ``λ_max`` from below; the ``safety``
    factor makes ``1/L`` a safe FISTA step.  ``x0`` sets shape and dtype and
    must not be orthogonal to the top eigenvector (use a random vector).
    """

    def body(_, v):
        w = matvec(v)
        return w / jnp.maximum(jnp.linalg.norm(w), jnp.finfo(w.dtype).tiny)

    v = jax.lax.fori_loop(0, iterations, body, x0 / jnp.linalg.norm(x0))
    return safety * jnp.vdot(v, matvec(v))


class _State(eqx.Module):
    x: Array
    y: Array
    t: Array
    k: Array
    res: Array


def fista(
    grad_f: Callable[[Array], Array],
    prox_g: Callable[[Array, Array], Array],
    x0: Array,
    lipschitz: Float[Array, ""],
    *,
    max_iter: int = 1000,
    tol: float = 1e-8,
    restart: bool = True,
    unrolled: bool = False,
) -> FISTASolution:
    """Minimise ``f + g`` from ``x0`` (any array shape); ``prox_g(v, t)`` = ``prox_{t g}(v)``.

    ``unrolled=True`` always runs ``max_iter`` iterations in a ``fori_loop``
    (iterates frozen after convergence) so reverse-mode autodiff can run
    through them; otherwise a ``while_loop`` stops at convergence.
    """
    step = 1.0 / lipschitz

    def iterate(s: _State) -> _State:
        x_new = prox_g(s.y - step * grad_f(s.y), step)
        res = jnp.max(jnp.abs(x_new - s.y)) / jnp.maximum(1.0, jnp.max(jnp.abs(x_new)))
        t_new = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * s.t**2))
        y_new = x_new + ((s.t - 1.0) / t_new) * (x_new - s.x)
        if restart:
            again = jnp.vdot(s.y - x_new, x_new - s.x) > 0
            t_new = jnp.where(again, 1.0, t_new)
            y_new = jnp.where(again, x_new, y_new)
        return _State(x=x_new, y=y_new, t=t_new, k=s.k + 1, res=res)

    converged = lambda s: s.res <= tol  # noqa: E731
    init = _State(x=x0, y=x0, t=jnp.ones((), x0.dtype), k=jnp.zeros((), jnp.int32), res=jnp.full((), jnp.finfo(x0.dtype).max, x0.dtype))
    if unrolled:
        freeze = lambda s: jax.tree.map(lambda a, b: jnp.where(converged(s), a, b), s, iterate(s))  # noqa: E731
        st = jax.lax.fori_loop(0, max_iter, lambda _, s: freeze(s), init)
    else:
        st = jax.lax.while_loop(lambda s: (s.k < max_iter) & ~converged(s) & jnp.isfinite(s.res), iterate, init)
    finite = jnp.all(jnp.isfinite(st.x))
    status = jnp.where(~finite, NUMERICAL_ERROR, jnp.where(converged(st), SOLVED, MAX_ITER))
    return FISTASolution(x=jnp.where(finite, st.x, 0.0), status=status, iterations=st.k, residual=st.res)
