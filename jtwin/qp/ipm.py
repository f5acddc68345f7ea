"""A primal–dual interior-point method (Mehrotra's predictor–corrector) for dense convex QPs.

Problem (``P`` [n, n] symmetric PSD, ``A`` [m, n], sides may be ``±inf``, ``l_i = u_i`` an equality)::

    minimise  ½ xᵀP x + qᵀx    subject to  l ≤ A x ≤ u,   lb ≤ x ≤ ub  (optional).

**Rows.**  The variable bounds become identity rows, ``C = [A; I]`` [k, n] with sides
``l_C ≤ Cx ≤ u_C`` (``k = m`` or ``m + n``).  Every row is one of (boolean masks, data under
``jit``, so shapes stay static): an *equality* (``l = u`` finite), an *inequality* with a
finite lower side ``𝓛`` and/or a finite upper side ``𝓤``, or *free* (both sides infinite,
dropped).  Each finite inequality side gets a slack and a multiplier,

    C x − l − s_l = 0,   u − C x − s_u = 0,   s_l, z_l, s_u, z_u ≥ 0,

and the row multiplier is ``y = z_u − z_l`` (``y_eq`` on an equality), so ``y > 0`` on an active
upper side and ``y < 0`` on an active lower side, the convention of :class:`~jtwin.qp.QPSolution`.
In cone form the sides are ``Āx + s = b̄`` with ``Ā = (−C_𝓛; C_𝓤; C_eq)``, ``b̄ = (−l; u; b)``,
``s ≥ 0`` on the inequality sides and ``s = 0`` on equalities, ``Āᵀz = Cᵀy``.

**Homogeneous self-dual embedding** (as in Clarabel, Goulart & Chen 2024).  The iterates
``(x, s, z, τ, κ)``, ``s, z, τ, κ > 0``, are driven towards

    Px + Āᵀz + qτ = 0,   Āx + s − b̄τ = 0,   κ + xᵀPx/τ + qᵀx + b̄ᵀz = 0,   s∘z = 0,   τκ = 0.

A solution has ``τ > 0`` and ``(x, z)/τ`` solves the QP; ``τ → 0`` with ``κ > 0`` leaves a
certificate of infeasibility in ``z`` (primal) or ``x`` (dual).

**Newton step.**  With ``W² = S Z⁻¹`` per side and ``Σ = z_l/s_l + z_u/s_u`` per inequality row,
eliminating the slacks and side multipliers leaves the quasi-definite system (size ``n + k``)

    [ P + ρI        C̃ᵀ      ] [Δx]   [ a ]
    [   C̃     −(Σ⁻¹ + δ)    ] [Δy] = [ b ]

(``Σ⁻¹`` is replaced by ``0`` on equality rows and the row is decoupled, ``Δy = 0``, on free
rows).  It is factorised once per iteration (LU with partial pivoting) with the regularisation
``ρ = δ = regularisation``; ``refinement`` steps of iterative refinement towards the
unregularised matrix make each solve exact to round-off.  Three solves share the factorisation:
the ``τ`` column (right-hand side ``(−q, b̄)``), Mehrotra's predictor (affine, ``σ = 0``) and
corrector (``r_c = s∘z + Δs_aff∘Δz_aff − σμ``, ``σ = (μ_aff/μ)³``, residuals scaled by
``1 − σ``); ``Δτ`` follows from the linearised third equation and ``τΔκ + κΔτ = −r_{c,τ}``.  One
step length for all variables, ``α = min(1, η·α_max)`` with the fraction to the boundary
``η = step_fraction``.

**Scaling and start.**  The problem is Ruiz-equilibrated (:func:`~jtwin.qp.scaling.ruiz_equilibrate`
on ``(P, C)``, ``scaling`` passes).  The cold start solves the system above with ``Σ = 1`` (the
minimiser of ``½xᵀPx + qᵀx + ½‖C_ineq x − Π(0)‖²`` subject to the equalities), then sets each slack
to ``max(s, 1)`` and each side multiplier to ``1``.  ``warm_start=True`` starts from a given
``x`` and multipliers instead, both pushed at least ``warm_start_margin`` inside.

**Termination** (checked on the unscaled problem before each step, the definitions of
:func:`~jtwin.qp.kkt_residuals`): successful when the primal residual, the dual residual and the
duality gap are all below ``ε_abs + ε_rel·scale``, for the iterate with the multipliers of
*inactive* sides (``z ≤ s``) snapped to zero, so that the active set read from ``y`` by the
implicit gradient is the one the iterates identified (the unsnapped iterate only counts at the
iteration limit, for degenerate problems where snapping keeps failing the dual test).

**Infeasibility** is read from the embedding's iterates, normalised to unit ∞-norm and tested
in the scaled space with ``ε = eps_infeasible``:

* primal infeasible: ``ŷ`` with ``‖C̄ᵀŷ‖∞ ≤ ε`` and ``ūᵀŷ⁺ + l̄ᵀŷ⁻ ≤ −ε`` (Farkas; ``ŷ`` is zero on
  infinite sides by construction);
* dual infeasible: ``x̂`` with ``‖P̄x̂‖∞ ≤ ε``, ``q̄ᵀx̂ ≤ −ε`` and ``C̄x̂`` in the recession cone of the
  sides (``≤ ε`` on finite upper sides, ``≥ −ε`` on finite lower sides).

For an infeasible problem the returned ``x`` and ``y`` are these normalised iterates (the
certificates, mapped back to the original scaling).  Non-finite data or iterates give
``RESULTS.numerical_error`` with a zero point.  Under ``vmap`` each problem keeps its own loop state: a finished problem is frozen while the others iterate.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from .base import AbstractQPSolver, check_options
from .problem import QPProblem, kkt_residuals, support
from .results import DUAL_INF, MAX_ITER, NUMERICAL, PRIMAL_INF, RUNNING, SOLVED, from_loop_code
from .scaling import Scaling, ruiz_equilibrate
from .solution import QPSolution, WarmStart



class _Rows(eqx.Module):
    """The Ruiz-scaled problem with the bounds as rows: ``P̄`` [n, n], ``q̄`` [n], ``C̄`` [k, n], finite
    sides ``lo, hi`` [k] (``0`` where infinite) and the row masks (``eq``, ``low``/``up``: a finite
    inequality side, ``free``)."""

    P: Float[Array, "n n"]
    q: Float[Array, " n"]
    C: Float[Array, "k n"]
    lo: Float[Array, " k"]
    hi: Float[Array, " k"]
    eq: Bool[Array, " k"]
    low: Bool[Array, " k"]
    up: Bool[Array, " k"]
    free: Bool[Array, " k"]
    scaling: Scaling


def _scaled_rows(problem: QPProblem, passes: int) -> _Rows:
    C, l, u = problem.rows()
    sc = ruiz_equilibrate(problem.P, C, problem.q, passes)
    eq = (l == u) & jnp.isfinite(l)
    low, up = jnp.isfinite(l) & ~eq, jnp.isfinite(u) & ~eq
    return _Rows(
        P=sc.c * sc.D[:, None] * problem.P * sc.D[None, :],
        q=sc.c * sc.D * problem.q,
        C=sc.E[:, None] * C * sc.D[None, :],
        lo=jnp.where(jnp.isfinite(l), sc.E * l, 0.0),
        hi=jnp.where(jnp.isfinite(u), sc.E * u, 0.0),
        eq=eq,
        low=low,
        up=up,
        free=~(eq | low | up),
        scaling=sc,
    )


class _Iterate(eqx.Module):
    """Scaled point of the homogeneous embedding: ``x`` [n], ``y_eq`` [k] (equality rows), slacks and
    multipliers of the lower and upper sides [k] (``s = 1, z = 0`` on absent sides), ``τ, κ``."""

    x: Float[Array, " n"]
    y_eq: Float[Array, " k"]
    s_l: Float[Array, " k"]
    z_l: Float[Array, " k"]
    s_u: Float[Array, " k"]
    z_u: Float[Array, " k"]
    tau: Float[Array, ""]
    kappa: Float[Array, ""]

    def y(self, rows: _Rows) -> Float[Array, " k"]:
        """Row multipliers ``y = z_u − z_l`` (``y_eq`` on equalities), not divided by ``τ``."""
        return jnp.where(rows.eq, self.y_eq, self.z_u - self.z_l)


class _Loop(eqx.Module):
    point: _Iterate
    iterations: Int[Array, ""]
    code: Int[Array, ""]


def _tree_where(pred: Array, a, b):
    return jax.tree.map(lambda u, v: jnp.where(pred, u, v), a, b)


class _Residuals(eqx.Module):
    """Residuals of the embedding: ``r_x = P̄x + q̄τ + C̄ᵀy`` [n]; side residuals
    ``r_l = s_l − (C̄x − lτ)``, ``r_u = s_u − (uτ − C̄x)``, ``r_eq = C̄x − bτ`` [k] (masked to their
    rows); ``r_τ = κ + xᵀP̄x/τ + q̄ᵀx + S(y)`` with ``S(y) = uᵀz_u − lᵀz_l + bᵀy_eq``."""

    x: Float[Array, " n"]
    l: Float[Array, " k"]
    u: Float[Array, " k"]
    eq: Float[Array, " k"]
    tau: Float[Array, ""]


def _residuals(rows: _Rows, p: _Iterate) -> _Residuals:
    Cx, Px = rows.C @ p.x, rows.P @ p.x
    y = p.y(rows)
    return _Residuals(
        x=Px + rows.q * p.tau + rows.C.T @ y,
        l=jnp.where(rows.low, p.s_l - (Cx - rows.lo * p.tau), 0.0),
        u=jnp.where(rows.up, p.s_u - (rows.hi * p.tau - Cx), 0.0),
        eq=jnp.where(rows.eq, Cx - rows.lo * p.tau, 0.0),
        tau=p.kappa + p.x @ Px / p.tau + rows.q @ p.x + _side_support(rows, p),
    )


def _side_support(rows: _Rows, p: _Iterate) -> Float[Array, ""]:
    """``uᵀz_u − lᵀz_l + bᵀy_eq`` (``bᵀz`` of the cone form)."""
    return jnp.sum(jnp.where(rows.up, rows.hi * p.z_u, 0.0) - jnp.where(rows.low, rows.lo * p.z_l, 0.0) + jnp.where(rows.eq, rows.lo * p.y_eq, 0.0))


class _Factor(eqx.Module):
    """LU of the regularised KKT matrix ``K + diag(shift)``, kept with ``K + diag(shift)`` itself
    for iterative refinement towards ``K``."""

    K_reg: Float[Array, "n+k n+k"]
    shift: Float[Array, " n+k"]
    lu: tuple
    refinement: int = eqx.field(static=True)

    def solve(self, b: Float[Array, " n+k"]) -> Float[Array, " n+k"]:
        def refine(_, w):
            return w + jax.scipy.linalg.lu_solve(self.lu, b - (self.K_reg @ w - self.shift * w))

        return jax.lax.fori_loop(0, self.refinement, refine, jax.scipy.linalg.lu_solve(self.lu, b))


def _weights(rows: _Rows, p: _Iterate) -> Float[Array, " k"]:
    """``Σ = z_l/s_l + z_u/s_u`` over the finite inequality sides (one on other rows)."""
    sigma = jnp.where(rows.low, p.z_l / p.s_l, 0.0) + jnp.where(rows.up, p.z_u / p.s_u, 0.0)
    return jnp.where(rows.low | rows.up, sigma, 1.0)


def _factor(rows: _Rows, sigma: Float[Array, " k"], reg: float, refinement: int) -> _Factor:
    """Factorise the step system for the inequality weights ``Σ`` [k] (used on inequality rows only)."""
    n = rows.q.shape[0]
    Ct = jnp.where(rows.free[:, None], 0.0, rows.C)
    d_true = jnp.where(rows.eq, 0.0, jnp.where(rows.free, 1.0, 1.0 / sigma))
    shift = jnp.concatenate([jnp.full(n, reg, rows.q.dtype), jnp.where(rows.free, 0.0, -reg)])
    K_reg = jnp.block([[rows.P, Ct.T], [Ct, -jnp.diag(d_true)]]) + jnp.diag(shift)
    return _Factor(K_reg=K_reg, shift=shift, lu=jax.scipy.linalg.lu_factor(K_reg), refinement=refinement)


class _Sides(eqx.Module):
    """A right-hand side or solution of the side system (see :func:`_solve_sides`)."""

    x: Float[Array, " n"]
    l: Float[Array, " k"]
    u: Float[Array, " k"]
    eq: Float[Array, " k"]


def _solve_sides(rows: _Rows, p: _Iterate, fac: _Factor, rhs: _Sides) -> _Sides:
    """Solve, for ``(Δx, Δz_l, Δz_u, Δy_eq)``, the linear system with side weights ``W² = S Z⁻¹``

        P̄Δx + C̄ᵀ(Δz_u − Δz_l + Δy_eq) = a,   −C̄Δx − W_l²Δz_l = b_l,   C̄Δx − W_u²Δz_u = b_u,   C̄Δx = b_eq

    by eliminating the sides (``Δy = ΣC̄Δx + g``, ``g = Z_l S_l⁻¹b_l − Z_u S_u⁻¹b_u``)."""
    n = rows.q.shape[0]
    w_l, w_u = p.z_l / p.s_l, p.z_u / p.s_u
    g = jnp.where(rows.low, w_l * rhs.l, 0.0) - jnp.where(rows.up, w_u * rhs.u, 0.0)
    r_y = jnp.where(rows.eq, rhs.eq, jnp.where(rows.free, 0.0, -g / _weights(rows, p)))
    step = fac.solve(jnp.concatenate([rhs.x, r_y]))
    dx, dy = step[:n], step[n:]
    Cdx = rows.C @ dx
    return _Sides(
        x=dx,
        l=jnp.where(rows.low, -w_l * (Cdx + rhs.l), 0.0),
        u=jnp.where(rows.up, w_u * (Cdx - rhs.u), 0.0),
        eq=jnp.where(rows.eq, dy, 0.0),
    )


def _direction(rows, p: _Iterate, r: _Residuals, fac: _Factor, const: _Sides, scale, rc_l, rc_u, rc_tau) -> _Iterate:
    """Newton direction of the embedding for the residuals ``scale·r`` and the complementarity
    residuals ``rc = s∘z − target`` (sides) and ``rc_τ = τκ − target``; ``const`` is the solution
    for the ``τ`` column (right-hand side ``(−q̄, l, u, b)``)."""
    # the slacks: Z Δs + S Δz = −rc with Δs_l = C̄Δx − lΔτ − scale·r_l, Δs_u = uΔτ − C̄Δx − scale·r_u
    rhs = _Sides(
        x=-scale * r.x,
        l=jnp.where(rows.low, -scale * r.l + rc_l / p.z_l, 0.0),
        u=jnp.where(rows.up, -scale * r.u + rc_u / p.z_u, 0.0),
        eq=-scale * r.eq,
    )
    v = _solve_sides(rows, p, fac, rhs)
    xi = p.x / p.tau
    Pxi = rows.P @ xi
    lin = lambda w: (rows.q + 2 * Pxi) @ w.x + jnp.sum(  # noqa: E731
        jnp.where(rows.up, rows.hi * w.u, 0.0) - jnp.where(rows.low, rows.lo * w.l, 0.0) + jnp.where(rows.eq, rows.lo * w.eq, 0.0)
    )
    # Δκ = −(q̄ + 2P̄ξ)ᵀΔx − S(Δz) + ξᵀP̄ξΔτ − scale·r_τ   and   κΔτ + τΔκ = −rc_τ
    dtau = (rc_tau / p.tau - lin(v) - scale * r.tau) / (-p.kappa / p.tau + lin(const) - xi @ Pxi)
    d = jax.tree.map(lambda a, b: a + dtau * b, v, const)
    Cdx = rows.C @ d.x
    ds_l = jnp.where(rows.low, Cdx - rows.lo * dtau - scale * r.l, 0.0)
    ds_u = jnp.where(rows.up, rows.hi * dtau - Cdx - scale * r.u, 0.0)
    return _Iterate(
        x=d.x, y_eq=d.eq, s_l=ds_l, z_l=d.l, s_u=ds_u, z_u=d.u, tau=dtau, kappa=-(rc_tau + p.kappa * dtau) / p.tau
    )


def _ratio(v: Array, dv: Array) -> Float[Array, ""]:
    """Largest ``α ≤ 1`` with ``v + α dv ≥ 0``."""
    return jnp.minimum(jnp.min(jnp.where(dv < 0, -v / jnp.where(dv < 0, dv, -1.0), jnp.inf), initial=jnp.inf), 1.0)


def _max_step(p: _Iterate, d: _Iterate) -> Float[Array, ""]:
    """Largest step ``≤ 1`` keeping the slacks, side multipliers, ``τ`` and ``κ`` non-negative."""
    pairs = ((p.s_l, d.s_l), (p.z_l, d.z_l), (p.s_u, d.s_u), (p.z_u, d.z_u), (p.tau[None], d.tau[None]), (p.kappa[None], d.kappa[None]))
    return jnp.min(jnp.stack([_ratio(v, dv) for v, dv in pairs]))


def _advance(p: _Iterate, d: _Iterate, alpha) -> _Iterate:
    return jax.tree.map(lambda v, dv: v + alpha * dv, p, d)


def _complementarity(rows: _Rows, p: _Iterate) -> Float[Array, ""]:
    """``μ = (s_lᵀz_l + s_uᵀz_u + τκ) / (number of finite inequality sides + 1)``."""
    total = jnp.sum(jnp.where(rows.low, p.s_l * p.z_l, 0.0) + jnp.where(rows.up, p.s_u * p.z_u, 0.0)) + p.tau * p.kappa
    return total / (jnp.sum(rows.low) + jnp.sum(rows.up) + 1)


def _start(rows: _Rows, reg: float, refinement: int, x0=None, y0=None, margin: float = 1.0) -> _Iterate:
    """Cold start (``x0 = None``) or a warm start pushed ``margin`` inside (see the module docstring)."""
    k = rows.lo.shape[0]
    if x0 is None:
        target = jnp.where(rows.eq, rows.lo, jnp.clip(0.0, jnp.where(rows.low, rows.lo, -jnp.inf), jnp.where(rows.up, rows.hi, jnp.inf)))
        fac = _factor(rows, jnp.ones(k, rows.q.dtype), reg, refinement)
        sol = fac.solve(jnp.concatenate([-rows.q, jnp.where(rows.free, 0.0, target)]))
        x0 = sol[: rows.q.shape[0]]
        y0 = jnp.zeros(k, rows.q.dtype)
    Cx = rows.C @ x0
    one = jnp.ones((), rows.q.dtype)
    return _Iterate(
        x=x0,
        y_eq=jnp.where(rows.eq, y0, 0.0),
        s_l=jnp.where(rows.low, jnp.maximum(Cx - rows.lo, margin), 1.0),
        z_l=jnp.where(rows.low, jnp.maximum(-y0, 0.0) + margin, 0.0),
        s_u=jnp.where(rows.up, jnp.maximum(rows.hi - Cx, margin), 1.0),
        z_u=jnp.where(rows.up, jnp.maximum(y0, 0.0) + margin, 0.0),
        tau=one,
        kappa=one,
    )


def _snapped(rows: _Rows, p: _Iterate) -> Float[Array, " k"]:
    """Row multipliers with the multipliers of inactive sides (``z ≤ s``) set to zero."""
    return jnp.where(rows.eq, p.y_eq, jnp.where(p.z_u > p.s_u, p.z_u, 0.0) - jnp.where(p.z_l > p.s_l, p.z_l, 0.0))


def _unit(v: Array) -> Array:
    norm = jnp.max(jnp.abs(v), initial=0.0)
    return v / jnp.where(norm > 0, norm, 1.0), norm > 0


def _primal_certificate(rows: _Rows, y: Float[Array, " k"], eps: float) -> Bool[Array, ""]:
    """``y`` (normalised) certifies ``{x : l ≤ C̄x ≤ u}`` empty: ``‖C̄ᵀŷ‖∞ ≤ ε`` and ``S(ŷ) ≤ −ε``."""
    y, nonzero = _unit(y)
    lo = jnp.where(rows.low | rows.eq, rows.lo, -jnp.inf)
    hi = jnp.where(rows.up | rows.eq, rows.hi, jnp.inf)
    return nonzero & (jnp.max(jnp.abs(rows.C.T @ y), initial=0.0) <= eps) & (support(lo, hi, y) <= -eps)


def _dual_certificate(rows: _Rows, d: Float[Array, " n"], eps: float) -> Bool[Array, ""]:
    """``d`` (normalised) is a descent direction of unbounded cost: ``P̄d̂ ≈ 0``, ``q̄ᵀd̂ ≤ −ε``, ``C̄d̂``
    in the recession cone of the sides."""
    d, nonzero = _unit(d)
    Cd = rows.C @ d
    cone = jnp.all(jnp.where(rows.up | rows.eq, Cd <= eps, True) & jnp.where(rows.low | rows.eq, Cd >= -eps, True))
    return nonzero & (jnp.max(jnp.abs(rows.P @ d), initial=0.0) <= eps) & (rows.q @ d <= -eps) & cone


class InteriorPoint(AbstractQPSolver):
    """Mehrotra's predictor–corrector interior-point method on dense arrays (see the module
    docstring for the algorithm, the infeasibility certificates and the shapes).

    Arguments:

    - ``eps_abs, eps_rel``: termination tolerances (default ``1e-8`` each, an interior-point
      method converges quadratically near the end, so tight tolerances cost a few iterations);
      the primal residual, dual residual and duality gap of :func:`~jtwin.qp.kkt_residuals`
      must all pass for ``RESULTS.successful``.  For qpbenchmark's absolute tolerances use
      ``eps_rel=0``.
    - ``max_iter``: iteration limit (``RESULTS.max_iterations_reached`` after it).
    - ``differentiation``: ``"implicit"`` only (:func:`~jtwin.qp.solve` attaches the KKT gradient).
    - ``warm_start``: start from a given warm start (``x`` and multipliers pushed
      ``warm_start_margin`` inside) instead of the cold start; a cold start is the default.
    - ``eps_infeasible``: tolerance of the infeasibility certificates (scaled problem).
    - ``regularisation``: primal and dual regularisation ``ρ = δ`` of the factorised KKT matrix;
      ``refinement``: iterative-refinement steps per solve; ``step_fraction``: fraction to the
      boundary ``η``; ``scaling``: Ruiz passes (``0``: none).
    """

    eps_abs: float = eqx.field(static=True, default=1e-8)
    eps_rel: float = eqx.field(static=True, default=1e-8)
    max_iter: int = eqx.field(static=True, default=100)
    differentiation: str = eqx.field(static=True, default="implicit")
    warm_start: bool = eqx.field(static=True, default=False)
    warm_start_margin: float = eqx.field(static=True, default=1e-2)
    eps_infeasible: float = eqx.field(static=True, default=1e-6)
    regularisation: float = eqx.field(static=True, default=1e-9)
    refinement: int = eqx.field(static=True, default=3)
    step_fraction: float = eqx.field(static=True, default=0.99)
    scaling: int = eqx.field(static=True, default=10)

    def __check_init__(self):
        check_options(self.eps_abs, self.eps_rel, self.max_iter, self.differentiation, allowed=("implicit",))
        for name in ("eps_infeasible", "regularisation", "warm_start_margin"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected a positive number, got {getattr(self, name)}")
        if not 0 < self.step_fraction < 1:
            raise ValueError(f"step_fraction: expected a number in (0, 1), got {self.step_fraction}")
        for name in ("refinement", "scaling"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 0):
                raise ValueError(f"{name}: expected a non-negative integer, got {getattr(self, name)!r}")

    def _unscaled(self, problem: QPProblem, rows: _Rows, x, y):
        """``(x, y, y_bound)`` of the original problem from scaled ``x`` [n] and row multipliers ``y`` [k]."""
        sc = rows.scaling
        x, y = sc.D * x, sc.E * y / sc.c
        m = problem.m
        return (x, y[:m], y[m:]) if problem.has_bounds else (x, y, jnp.zeros_like(x))

    def _converged(self, problem, rows, x, y):
        return kkt_residuals(problem, *self._unscaled(problem, rows, x, y), self.eps_abs, self.eps_rel).converged()

    def _check(self, problem: QPProblem, rows: _Rows, st: _Loop) -> Int[Array, ""]:
        p = st.point
        finite = jnp.all(jnp.array([jnp.all(jnp.isfinite(v)) for v in jax.tree.leaves(p)]))
        x = p.x / p.tau
        last = st.iterations >= self.max_iter
        solved = self._converged(problem, rows, x, _snapped(rows, p) / p.tau) | (last & self._converged(problem, rows, x, p.y(rows) / p.tau))
        eps = self.eps_infeasible
        primal_inf = _primal_certificate(rows, p.y(rows), eps)
        dual_inf = _dual_certificate(rows, p.x, eps)
        code = jnp.where(solved, SOLVED, jnp.where(primal_inf, PRIMAL_INF, jnp.where(dual_inf, DUAL_INF, RUNNING)))
        code = jnp.where(finite, code, NUMERICAL)
        return jnp.where((code == RUNNING) & last, MAX_ITER, code)

    def _step(self, rows: _Rows, p: _Iterate) -> _Iterate:
        """One predictor–corrector step of the embedding."""
        r = _residuals(rows, p)
        fac = _factor(rows, _weights(rows, p), self.regularisation, self.refinement)
        const = _solve_sides(rows, p, fac, _Sides(x=-rows.q, l=jnp.where(rows.low, -rows.lo, 0.0), u=jnp.where(rows.up, rows.hi, 0.0), eq=jnp.where(rows.eq, rows.lo, 0.0)))
        comp_l = jnp.where(rows.low, p.s_l * p.z_l, 0.0)
        comp_u = jnp.where(rows.up, p.s_u * p.z_u, 0.0)
        comp_tau = p.tau * p.kappa
        aff = _direction(rows, p, r, fac, const, 1.0, comp_l, comp_u, comp_tau)
        mu = _complementarity(rows, p)
        mu_aff = _complementarity(rows, _advance(p, aff, _max_step(p, aff)))
        sigma = jnp.clip(mu_aff / jnp.where(mu > 0, mu, 1.0), 0.0, 1.0) ** 3
        rc_l = jnp.where(rows.low, comp_l + aff.s_l * aff.z_l - sigma * mu, 0.0)
        rc_u = jnp.where(rows.up, comp_u + aff.s_u * aff.z_u - sigma * mu, 0.0)
        rc_tau = comp_tau + aff.tau * aff.kappa - sigma * mu
        d = _direction(rows, p, r, fac, const, 1.0 - sigma, rc_l, rc_u, rc_tau)
        return _advance(p, d, jnp.minimum(1.0, self.step_fraction * _max_step(p, d)))

    def run(self, problem: QPProblem, warm_start: WarmStart | None = None) -> QPSolution:
        """Solve ``problem`` (see :class:`InteriorPoint`); jit- and vmap-able."""
        data_ok = jnp.all(jnp.array([jnp.all(jnp.isfinite(v)) for v in (problem.P, problem.q, problem.A)]))
        data_ok &= ~jnp.any(jnp.array([jnp.any(jnp.isnan(v)) for v in jax.tree.leaves((problem.l, problem.u, problem.lb, problem.ub))]))
        rows = _scaled_rows(problem, self.scaling)
        if self.warm_start and warm_start is not None:
            sc = rows.scaling
            y_rows = jnp.concatenate([warm_start.y, warm_start.y_bound]) if problem.has_bounds else warm_start.y
            start = _start(rows, self.regularisation, self.refinement, warm_start.x / sc.D, sc.c * y_rows / sc.E, self.warm_start_margin)
        else:
            start = _start(rows, self.regularisation, self.refinement)
        init = _Loop(point=start, iterations=jnp.zeros((), jnp.int32), code=jnp.where(data_ok, RUNNING, NUMERICAL))

        def body(st: _Loop) -> _Loop:
            code = self._check(problem, rows, st)
            stepped = _Loop(point=self._step(rows, st.point), iterations=st.iterations + 1, code=code)
            return _tree_where(code == RUNNING, stepped, eqx.tree_at(lambda s: s.code, st, code))

        st = jax.lax.while_loop(lambda st: st.code == RUNNING, body, init)
        p = st.point
        x, y_raw, y_snap = p.x / p.tau, p.y(rows) / p.tau, _snapped(rows, p) / p.tau
        y = jnp.where(self._converged(problem, rows, x, y_snap), y_snap, y_raw)
        infeasible = (st.code == PRIMAL_INF) | (st.code == DUAL_INF)
        x = jnp.where(infeasible, _unit(p.x)[0], x)
        y = jnp.where(infeasible, _unit(p.y(rows))[0], y)
        ok = st.code != NUMERICAL
        x, y, y_bound = jax.tree.map(lambda v: jnp.where(ok, v, 0.0), self._unscaled(problem, rows, x, y))
        res = kkt_residuals(problem, x, y, y_bound)
        return QPSolution(
            x=x,
            y=y,
            y_bound=y_bound,
            z=jnp.clip(problem.A @ x, problem.l, problem.u),
            status=from_loop_code(st.code),
            iterations=st.iterations,
            primal_residual=res.primal,
            dual_residual=res.dual,
            duality_gap=res.gap,
            objective=problem.objective(x),
            state=None,
        )
