"""Continuous-time models integrated over one sample period (input held constant).

Adaptive steps go through diffrax.  Fixed steps with an explicit Runge–Kutta solver (``RK4``,
``diffrax.Tsit5`` ...) apply the solver's Butcher tableau directly (:func:`fixed_step_solve`):
the same arithmetic without diffrax's solve loop and its bookkeeping, which matters when the
transition is ``vmap``-ed over sigma points inside a filter's ``lax.scan``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .function import UserFunctionModel

_RK4_TABLEAU = diffrax.ButcherTableau(
    c=np.array([0.5, 0.5, 1.0]),
    b_sol=np.array([1 / 6, 1 / 3, 1 / 3, 1 / 6]),
    b_error=np.zeros(4),
    a_lower=(np.array([0.5]), np.array([0.0, 0.5]), np.array([0.0, 0.0, 1.0])),
)


def stage_coefficients(tableau: diffrax.ButcherTableau) -> tuple[np.ndarray, np.ndarray]:
    """``(c [s], rows [s, s])`` of an explicit tableau, trimmed to the ``s`` stages the result uses.

    Stage ``j`` is evaluated at ``t + cⱼ h``; ``rows[j]`` combines the stage slopes into the next
    input: ``x + h Σᵢ rows[j, i] kᵢ`` is stage ``j + 1``'s input (``aⱼ₊₁``), and for the last
    stage the step result (``b``).  Trailing stages with ``bⱼ = 0`` (the FSAL stage of e.g.
    Tsit5, which only feeds the error estimate) are dropped.
    """
    s = 1 + int(np.flatnonzero(tableau.b_sol)[-1])
    rows = np.zeros((s, s))
    for j in range(1, s):
        rows[j - 1, :j] = tableau.a_lower[j - 1]
    rows[s - 1] = tableau.b_sol[:s]
    return np.concatenate([[tableau.c1], tableau.c])[:s], rows


def fixed_step_solve(field: Callable, tableau: diffrax.ButcherTableau, t0, x0, dt, substeps: int):
    """Integrate ``dx/dt = field(t, x)`` over ``[t0, t0 + dt]`` with ``substeps`` equal explicit RK steps.

    ``kⱼ = field(t + cⱼh, x + h Σ_{i<j} aⱼᵢ kᵢ)``, ``x⁺ = x + h Σⱼ bⱼ kⱼ`` (``x`` any shape).
    The stages run as a ``lax.scan`` (inside a scan over the substeps) whose carry holds the next
    stage's input and the slopes so far, so each stage input is computed once and stored.
    Unrolled, XLA fuses every stage into the next one's kernel and re-evaluates it at each index
    the vector field reads (for a stencil such as Lorenz-96's, work growing geometrically with
    the number of stages).  Differentiable by ordinary reverse mode.
    """
    c, rows = stage_coefficients(tableau)
    s, dtype = len(c), x0.dtype
    h = dt / substeps
    c, rows = jnp.asarray(h * c, dtype), jnp.asarray(h * rows, dtype)

    def substep(carry, t):
        x, slopes = carry

        def stage(carry, j):
            y, slopes = carry
            slope = field(t + c[j], y).astype(dtype)  # the state's dtype, e.g. float32 with float64 parameters
            slopes = jax.lax.dynamic_update_index_in_dim(slopes, slope, j, 0)
            return (x + sum(rows[j, i] * slopes[i] for i in range(s)), slopes), None

        return jax.lax.scan(stage, (x, slopes), jnp.arange(s))[0], None

    # The slope buffer is carried across substeps: a stage reads only slopes written earlier in
    # its own substep (the stale ones have zero coefficients).
    slopes = jnp.zeros((s, *x0.shape), dtype)
    return jax.lax.scan(substep, (x0, slopes), t0 + h * jnp.arange(substeps, dtype=dtype))[0][0]


def has_explicit_tableau(solver: diffrax.AbstractSolver) -> bool:
    """Whether ``solver`` is an explicit Runge–Kutta method with a single Butcher tableau."""
    tableau = getattr(solver, "tableau", None)
    explicit = isinstance(tableau, diffrax.ButcherTableau) and not tableau.implicit
    return isinstance(solver, diffrax.AbstractERK) and explicit


class RK4(diffrax.AbstractERK):
    """The classical fourth-order Runge–Kutta method, for fixed steps only (it has no error estimate)."""

    tableau: ClassVar[diffrax.ButcherTableau] = _RK4_TABLEAU
    interpolation_cls: ClassVar[Callable] = diffrax.ThirdOrderHermitePolynomialInterpolation.from_k

    def order(self, terms):
        del terms
        return 4


class ODEModel(UserFunctionModel):
    """Continuous-time dynamics ``dx/dt = vector_field(t, x, u[, d])`` sampled every ``dt``.

    The transition integrates from ``t`` to ``t + dt`` with ``u`` (and ``d``) held constant
    (zero-order hold), using diffrax:

    * ``solver``: any diffrax solver, default ``diffrax.Tsit5()``.
    * ``substeps``: ``None`` (default) for adaptive steps with a PID controller at
      ``rtol``/``atol``; an integer for that many fixed steps per period (fast under ``vmap``,
      and the only valid choice for ``RK4``).
    * ``adjoint``: how gradients are taken, default ``diffrax.RecursiveCheckpointAdjoint()``
      (memory-bounded backprop through the solver); ``diffrax.BacksolveAdjoint()`` for O(1) memory.

    Fixed substeps with an explicit Runge–Kutta solver and the default adjoint are integrated by
    :func:`fixed_step_solve` (the solver's tableau applied directly; same result as diffrax to
    round-off, a much smaller compiled program); everything else calls ``diffrax.diffeqsolve``.

    Measurement and noise as in :class:`~jtwin.models.FunctionModel`.  Parameters of a
    ``vector_field`` that is an ``equinox.Module`` are learnable (gradients flow through the solve).
    """

    vector_field: Callable
    solver: diffrax.AbstractSolver
    adjoint: diffrax.AbstractAdjoint
    dt: float = eqx.field(static=True)
    substeps: int | None = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)

    def __init__(
        self,
        vector_field,
        h,
        dt: float,
        Q,
        R,
        solver: diffrax.AbstractSolver | None = None,
        *,
        input_dim: int = 0,
        disturbance_dim: int = 0,
        noise_gain=None,
        substeps: int | None = None,
        rtol: float = 1e-8,
        atol: float = 1e-10,
        max_steps: int = 4096,
        adjoint: diffrax.AbstractAdjoint | None = None,
    ):
        if not dt > 0:
            raise ValueError(f"dt: expected a positive sample period, got {dt}")
        if substeps is not None and (int(substeps) != substeps or substeps < 1):
            raise ValueError(f"substeps: expected None (adaptive) or a positive integer, got {substeps}")
        solver = diffrax.Tsit5() if solver is None else solver
        if substeps is None and isinstance(solver, RK4):
            raise ValueError("substeps: RK4 has no error estimate; give a fixed number of substeps")
        self.vector_field = vector_field
        self.solver = solver
        self.adjoint = diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint
        self.dt = float(dt)
        self.substeps = None if substeps is None else int(substeps)
        self.rtol, self.atol, self.max_steps = float(rtol), float(atol), int(max_steps)
        probe = (
            (lambda x, u, d: vector_field(0.0, x, u, d)) if disturbance_dim else (lambda x, u, d: vector_field(0.0, x, u))
        )
        self._init_common(h, Q, R, input_dim, disturbance_dim, noise_gain, "vector_field(t, x, u)", probe)

    @property
    def _direct_fixed_step(self) -> bool:
        """Fixed steps can bypass diffrax: an explicit tableau, and gradients by plain backprop."""
        return has_explicit_tableau(self.solver) and type(self.adjoint) is diffrax.RecursiveCheckpointAdjoint

    def transition(self, x, u, t=0.0, d=None, dt=None):
        """Integrate over ``[t, t + dt]`` (``dt`` defaults to the model's sample period)."""
        dt = self.dt if dt is None else dt
        args = (u,) if self.disturbance_dim == 0 else (u, d)
        if self.substeps is not None and self._direct_fixed_step:
            field = lambda s, y: self.vector_field(s, y, *args)  # noqa: E731
            return fixed_step_solve(field, self.solver.tableau, t, x, dt, self.substeps)
        term = diffrax.ODETerm(lambda s, y, a: self.vector_field(s, y, *a))
        if self.substeps is None:
            controller, dt0 = diffrax.PIDController(rtol=self.rtol, atol=self.atol), None
        else:
            controller, dt0 = diffrax.ConstantStepSize(), dt / self.substeps
        sol = diffrax.diffeqsolve(
            term,
            self.solver,
            t0=t,
            t1=t + dt,
            dt0=dt0,
            y0=x,
            args=args,
            stepsize_controller=controller,
            saveat=diffrax.SaveAt(t1=True),
            max_steps=self.max_steps if self.substeps is None else self.substeps + 1,
            adjoint=self.adjoint,
            throw=False,
        )
        return sol.ys[-1]
