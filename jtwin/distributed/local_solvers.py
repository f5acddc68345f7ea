"""Local x-updates of ADMM: the proximal step of one agent's cost.

Every ADMM variant in this package asks each agent, in parallel, for

    x = argmin_x  f(x) + (ρ/2)‖x − v‖²      subject to  l ≤ x ≤ u  (optional box)

with ``f(x) = local_objective(x, data_i)`` convex, ``v`` and ``ρ > 0`` given by
the outer iteration.  The solvers here are ``eqx.Module`` strategies with two
pure methods, vmapped over the agents by the caller:

* ``init(objective, data, x0) -> cache``: per-agent precomputation, once;
* ``solve(objective, data, cache, v, rho, x_prev, mult, box) -> (x, mult)``:
  one proximal step, warm-started at the previous local iterate ``x_prev`` and,
  with a box, at the previous box multiplier ``mult`` (shape ``(n,)``).

Available strategies:

* :class:`QuadraticSolver` — exact for quadratic ``f`` (the Hessian and the
  gradient at 0 are extracted by autodiff once and eigendecomposed, so every
  ``ρ`` — including the adapted ones — is solved in closed form at O(n²));
* :class:`NewtonSolver` — any twice-differentiable convex ``f``: a few damped
  (proximal) Newton steps with autodiff Hessians and Armijo backtracking;
* :class:`LBFGSSolver` — any differentiable convex ``f`` without a box:
  ``optax.lbfgs`` steps (no Hessian, for larger ``n``).

With a box, the quadratic sub-problems are solved by a short inner ADMM
(:func:`box_quadratic_minimize`) warm-started from the previous outer
iteration, so its error vanishes as the outer iteration converges.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, PyTree

Objective = Callable[[Float[Array, " n"], PyTree], Float[Array, ""]]
Box = tuple[Float[Array, " n"], Float[Array, " n"]] | None


def _eig_solve(eigvals: Float[Array, " n"], eigvecs: Float[Array, "n n"], rhs: Float[Array, " n"]) -> Float[Array, " n"]:
    """``V diag(1/λ) Vᵀ rhs``: solve with a matrix given by its eigendecomposition (λ > 0)."""
    return eigvecs @ ((eigvecs.T @ rhs) / eigvals)


def _convex_eigh(hessian: Float[Array, "n n"]) -> tuple[Float[Array, " n"], Float[Array, "n n"]]:
    """Eigendecomposition of a symmetrised Hessian with round-off negative eigenvalues clipped to 0."""
    eigvals, eigvecs = jnp.linalg.eigh(0.5 * (hessian + hessian.T))
    return jnp.maximum(eigvals, 0.0), eigvecs


def box_quadratic_minimize(
    eigvals: Float[Array, " n"],
    eigvecs: Float[Array, "n n"],
    g: Float[Array, " n"],
    lower: Float[Array, " n"],
    upper: Float[Array, " n"],
    x0: Float[Array, " n"],
    mult0: Float[Array, " n"],
    iterations: int,
) -> tuple[Float[Array, " n"], Float[Array, " n"]]:
    """Minimise ``½ xᵀHx + gᵀx`` over ``lower ≤ x ≤ upper`` with ``H = V diag(λ) Vᵀ``, ``λ > 0``.

    ADMM on the splitting ``x = y``, ``y`` in the box, with penalty
    ``σ = √(λ_min λ_max)`` (the linear-rate-optimal choice for strongly convex
    QPs)::

        x̃ ← (H + σI)⁻¹ (σ(y − w) − g)
        y ← clip(x̃ + w, lower, upper)
        w ← w + x̃ − y

    run for a fixed number of ``iterations`` (jit/vmap friendly).  Returns the
    feasible iterate ``y`` and the box multiplier ``σw`` (KKT: ``Hy + g + σw = 0``
    at convergence), which warm-starts the next call through ``x0``/``mult0``.
    """
    sigma = jnp.sqrt(jnp.min(eigvals) * jnp.max(eigvals))

    def body(_, carry):
        y, w = carry
        x_tilde = _eig_solve(eigvals + sigma, eigvecs, sigma * (y - w) - g)
        y_new = jnp.clip(x_tilde + w, lower, upper)
        return y_new, w + x_tilde - y_new

    y, w = jax.lax.fori_loop(0, iterations, body, (jnp.clip(x0, lower, upper), mult0 / sigma))
    return y, sigma * w


class LocalSolver(eqx.Module):
    """Strategy for ``argmin_x f(x) + (ρ/2)‖x − v‖²`` (optionally over a box); see the module docstring."""

    supports_box: ClassVar[bool] = True

    def init(self, objective: Objective, data: PyTree, x0: Float[Array, " n"]) -> PyTree:
        """Per-agent precomputation (default: nothing)."""
        del objective, data, x0
        return ()

    def solve(
        self,
        objective: Objective,
        data: PyTree,
        cache: PyTree,
        v: Float[Array, " n"],
        rho: Float[Array, ""],
        x_prev: Float[Array, " n"],
        mult: Float[Array, " n"],
        box: Box,
    ) -> tuple[Float[Array, " n"], Float[Array, " n"]]:
        raise NotImplementedError


class QuadraticSolver(LocalSolver):
    """Exact x-update for quadratic costs ``f(x) = ½ xᵀPx + qᵀx + c`` (P symmetric PSD).

    ``P = ∇²f(0)`` and ``q = ∇f(0)`` are taken by autodiff in :meth:`init` and
    ``P = V diag(λ) Vᵀ`` is eigendecomposed once, so the update
    ``x = (P + ρI)⁻¹(ρv − q) = V diag(1/(λ+ρ)) Vᵀ (ρv − q)`` is exact for every ρ
    (residual balancing changes ρ without refactorising).  With a box, the
    same quadratic is minimised over the box by :func:`box_quadratic_minimize`
    with ``inner_iterations`` warm-started steps.  Only valid for quadratic
    ``f`` (``consensus_admm`` checks this on the first agent).
    """

    inner_iterations: int = eqx.field(static=True, default=50)

    def init(self, objective, data, x0):
        origin = jnp.zeros_like(x0)
        eigvals, eigvecs = _convex_eigh(jax.hessian(objective)(origin, data))
        return eigvals, eigvecs, jax.grad(objective)(origin, data)

    def solve(self, objective, data, cache, v, rho, x_prev, mult, box):
        eigvals, eigvecs, q = cache
        g = q - rho * v
        if box is None:
            return _eig_solve(eigvals + rho, eigvecs, -g), mult
        return box_quadratic_minimize(eigvals + rho, eigvecs, g, box[0], box[1], x_prev, mult, self.inner_iterations)


class NewtonSolver(LocalSolver):
    """Damped (proximal) Newton steps on ``φ(x) = f(x) + (ρ/2)‖x − v‖²`` with autodiff Hessians.

    Each of the ``steps`` iterations takes ``g = ∇φ(x)``, ``H = ∇²f(x) + ρI``
    (negative round-off eigenvalues of ``∇²f`` clipped to 0), the Newton
    direction ``d = argmin ½dᵀHd + gᵀd`` (over ``box − x`` when a box is given,
    by :func:`box_quadratic_minimize`), then halves the step until the Armijo
    condition ``φ(x + td) ≤ φ(x) + 10⁻⁴ t gᵀd + δ`` holds (at most
    ``max_backtracks`` times); the round-off slack ``δ = 64 ε (1 + |φ(x)|)``
    makes the test accept full steps near the solution, where ``φ`` differences
    are pure round-off (so sharded and vmapped runs take the same steps).  Exact in one step for quadratic ``f`` without a
    box; quadratically convergent near the solution otherwise.
    """

    steps: int = eqx.field(static=True, default=5)
    inner_iterations: int = eqx.field(static=True, default=50)
    max_backtracks: int = eqx.field(static=True, default=30)

    def solve(self, objective, data, cache, v, rho, x_prev, mult, box):
        def phi(x):
            return objective(x, data) + 0.5 * rho * jnp.sum((x - v) ** 2)

        def newton_step(_, carry):
            x, mult = carry
            value, g = jax.value_and_grad(phi)(x)
            eigvals, eigvecs = _convex_eigh(jax.hessian(objective)(x, data))
            if box is None:
                d = _eig_solve(eigvals + rho, eigvecs, -g)
            else:
                d, mult = box_quadratic_minimize(
                    eigvals + rho, eigvecs, g, box[0] - x, box[1] - x, jnp.zeros_like(x), mult, self.inner_iterations
                )
            slope = jnp.minimum(jnp.dot(g, d), 0.0)
            roundoff = 64.0 * jnp.finfo(value.dtype).eps * (1.0 + jnp.abs(value))

            def needs_backtrack(state):
                t, count = state
                return (phi(x + t * d) > value + 1e-4 * t * slope + roundoff) & (count < self.max_backtracks)

            t, _ = jax.lax.while_loop(needs_backtrack, lambda s: (0.5 * s[0], s[1] + 1), (jnp.ones_like(value), 0))
            return x + t * d, mult

        x0 = x_prev if box is None else jnp.clip(x_prev, box[0], box[1])
        return jax.lax.fori_loop(0, self.steps, newton_step, (x0, mult))


class LBFGSSolver(LocalSolver):
    """``steps`` iterations of ``optax.lbfgs`` (zoom line search) on ``f(x) + (ρ/2)‖x − v‖²``, no box.

    For differentiable convex costs whose Hessian is too large to form; the
    x-update is then inexact, so give it enough ``steps`` for the accuracy
    wanted (it is warm-started at the previous local iterate).
    """

    supports_box: ClassVar[bool] = False
    steps: int = eqx.field(static=True, default=20)
    memory: int = eqx.field(static=True, default=10)

    def solve(self, objective, data, cache, v, rho, x_prev, mult, box):
        def phi(x):
            return objective(x, data) + 0.5 * rho * jnp.sum((x - v) ** 2)

        optimizer = optax.lbfgs(memory_size=self.memory)
        value_and_grad = optax.value_and_grad_from_state(phi)

        def step(_, carry):
            x, state = carry
            value, g = value_and_grad(x, state=state)
            updates, state = optimizer.update(g, state, x, value=value, grad=g, value_fn=phi)
            return optax.apply_updates(x, updates), state

        x, _ = jax.lax.fori_loop(0, self.steps, step, (x_prev, optimizer.init(x_prev)))
        return x, mult


_BY_NAME = {"quadratic": QuadraticSolver, "newton": NewtonSolver, "lbfgs": LBFGSSolver}


def resolve_solver(x_update: LocalSolver | str | None) -> LocalSolver:
    """``None`` → :class:`NewtonSolver`; ``"quadratic" | "newton" | "lbfgs"`` → that solver with defaults."""
    if x_update is None:
        return NewtonSolver()
    if isinstance(x_update, LocalSolver):
        return x_update
    if isinstance(x_update, str) and x_update in _BY_NAME:
        return _BY_NAME[x_update]()
    raise ValueError(
        f"x_update: expected None, a LocalSolver or one of {sorted(_BY_NAME)}, got {x_update!r}"
    )
