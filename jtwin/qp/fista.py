"""FISTA: accelerated proximal gradient with adaptive restart, fixed step (vmap-friendly).

:func:`fista` minimises ``f(x) + g(x)`` with ``f`` convex and ``L``-smooth and ``g`` convex
with an exact prox (:mod:`jtwin.qp.prox`)::

    x⁺ = prox_{g/L}(y − ∇f(y)/L)
    restart if ⟨y − x⁺, x⁺ − x⟩ > 0:   t⁺ = 1,  y⁺ = x⁺          (O'Donoghue & Candès)
    else:  t⁺ = (1 + √(1 + 4t²))/2,   y⁺ = x⁺ + ((t − 1)/t⁺)(x⁺ − x)

The step ``1/L`` is fixed (no line search), ``L`` from :func:`power_iteration`
for quadratic ``f``.  Termination: fixed-point residual
``‖x⁺ − y‖∞ ≤ tol·max(1, ‖x⁺‖∞)`` (the gradient mapping times ``1/L``).
:class:`FISTA` is the same loop as a :class:`~jtwin.qp.AbstractQPSolver` for box-constrained QPs.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from .base import AbstractQPSolver, check_options
from .problem import QPProblem, kkt_residuals
from .results import CODES, RESULTS, from_code
from .solution import QPSolution, WarmStart


class FISTASolution(eqx.Module):
    """``x`` the last iterate, ``status`` (a :class:`~jtwin.qp.RESULTS` item: successful,
    max_iterations_reached or numerical_error), ``iterations``, ``residual``."""

    x: Array
    status: RESULTS
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
    code = jnp.where(converged(st), CODES["successful"], CODES["max_iterations_reached"])
    status = from_code(jnp.where(finite, code, CODES["numerical_error"]))
    return FISTASolution(x=jnp.where(finite, st.x, 0.0), status=status, iterations=st.k, residual=st.res)


class FISTA(AbstractQPSolver):
    """FISTA for the QPs it fits: ``min ½xᵀPx + qᵀx  s.t.  lb ≤ x ≤ ub`` (no rows in ``A``).

    The prox of the box is the projection, the step ``1/L`` with ``L`` the largest eigenvalue
    of ``P`` (:func:`power_iteration`).  The bound multipliers are read off the gradient,
    ``y_bound = −(Px + q)`` on variables at a bound, so ``RESULTS.successful`` means the same as
    for the other solvers: primal residual, dual residual and duality gap within
    ``eps_abs + eps_rel·scale`` (:func:`jtwin.qp.kkt_residuals`).  The MPC's ℓ1/hinge problem
    uses the same loop with its own exact prox (``LinearMPC(solver=FISTA())``).

    Arguments: ``eps_abs, eps_rel`` tolerances; ``max_iter``; ``restart`` (adaptive restart);
    ``differentiation``: ``"implicit"`` or ``"unrolled"``.
    """

    eps_abs: float = eqx.field(static=True, default=1e-6)
    eps_rel: float = eqx.field(static=True, default=1e-6)
    max_iter: int = eqx.field(static=True, default=5000)
    differentiation: str = eqx.field(static=True, default="implicit")
    restart: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        check_options(self.eps_abs, self.eps_rel, self.max_iter, self.differentiation)

    @property
    def tolerance(self) -> float:
        """Fixed-point tolerance of the inner loop: a thousandth of the tighter KKT tolerance."""
        return min(t for t in (self.eps_abs, self.eps_rel) if t > 0) * 1e-3

    def run(self, problem: QPProblem, warm_start: WarmStart | None) -> QPSolution:
        if problem.m:
            raise ValueError(f"A: FISTA solves QPs whose only constraints are variable bounds; got {problem.m} rows")
        n, dtype = problem.n, problem.q.dtype
        lb = problem.lb if problem.has_bounds else jnp.full(n, -jnp.inf, dtype)
        ub = problem.ub if problem.has_bounds else jnp.full(n, jnp.inf, dtype)
        P, q = problem.P, problem.q
        start = jax.random.normal(jax.random.PRNGKey(0), (n,), dtype)
        L = jnp.maximum(power_iteration(lambda v: P @ v, start), jnp.finfo(dtype).tiny)
        x0 = jnp.zeros(n, dtype) if warm_start is None else warm_start.x
        inner = fista(
            lambda x: P @ x + q, lambda v, t: jnp.clip(v, lb, ub), jnp.clip(x0, lb, ub), L,
            max_iter=self.max_iter, tol=self.tolerance, restart=self.restart,
            unrolled=self.differentiation == "unrolled",
        )  # fmt: skip
        x = inner.x
        grad = P @ x + q
        at_bound = (x <= lb) | (x >= ub)
        y_bound = jnp.where(at_bound, -grad, 0.0)
        empty = jnp.zeros(0, dtype)
        res = kkt_residuals(problem, x, empty, y_bound, self.eps_abs, self.eps_rel)
        code = jnp.where(res.converged(), CODES["successful"], CODES["max_iterations_reached"])
        code = jnp.where(inner.status == RESULTS.numerical_error, CODES["numerical_error"], code)
        return QPSolution(
            x=x, y=empty, y_bound=y_bound, z=empty, status=from_code(code), iterations=inner.iterations,
            primal_residual=res.primal, dual_residual=res.dual, duality_gap=res.gap,
            objective=problem.objective(x), state=None,
        )  # fmt: skip
