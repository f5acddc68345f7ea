"""The QP every dense solver of :mod:`jtwin.qp` takes: one pytree ``(P, q, A, l, u, lb, ub)``.

    minimise ½ xᵀP x + qᵀx   subject to   l ≤ A x ≤ u,   lb ≤ x ≤ ub

``P`` [n, n] symmetric positive semidefinite, ``q`` [n], ``A`` [m, n], ``l, u`` [m]
(``±inf`` for absent sides, ``l_i = u_i`` for an equality), optional variable bounds
``lb, ub`` [n] (``None``: no bounds; solvers treat them as a diagonal, not as rows of ``A``).
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .. import _checks


def _check_order(lo_name: str, hi_name: str, lo, hi) -> None:
    """``lo ≤ hi`` and no NaN, checked with numpy on concrete values (jnp ops on constants are staged under jit)."""
    if _checks.is_concrete(lo) and _checks.is_concrete(hi):
        lo, hi = np.asarray(lo), np.asarray(hi)
        if np.isnan(lo).any() or np.isnan(hi).any():
            raise ValueError(f"{lo_name}, {hi_name}: bounds contain NaN; use ±inf for absent bounds")
        if np.any(lo > hi):
            bad = np.nonzero(lo > hi)[0].tolist()
            raise ValueError(f"{lo_name}, {hi_name}: need {lo_name} <= {hi_name} elementwise; violated at rows {bad}")


class QPProblem(eqx.Module):
    """A dense convex QP; the constructor checks shapes, NaN and ``l ≤ u`` (errors name the field).

    All arrays are cast to one floating dtype.  ``lb, ub`` are both ``None``
    (no variable bounds) or both [n] (a missing side given alone becomes ``∓inf``).
    """

    P: Float[Array, "n n"]
    q: Float[Array, " n"]
    A: Float[Array, "m n"]
    l: Float[Array, " m"]
    u: Float[Array, " m"]
    lb: Float[Array, " n"] | None
    ub: Float[Array, " n"] | None

    def __init__(
        self,
        P: Float[ArrayLike, "n n"],
        q: Float[ArrayLike, " n"],
        A: Float[ArrayLike, "m n"],
        l: Float[ArrayLike, " m"],
        u: Float[ArrayLike, " m"],
        lb: Float[ArrayLike, " n"] | None = None,
        ub: Float[ArrayLike, " n"] | None = None,
    ):
        P = _checks.as_array("P", P, (None, None))
        n = P.shape[0]
        P = _checks.as_array("P", P, (n, n))
        q = _checks.as_array("q", q, (n,))
        A = _checks.as_array("A", A, (None, n))
        m = A.shape[0]
        l = _checks.as_array("l", l, (m,), finite=False)
        u = _checks.as_array("u", u, (m,), finite=False)
        _check_order("l", "u", l, u)
        arrays = [P, q, A, l, u]
        if lb is not None or ub is not None:
            lb = jnp.full(n, -jnp.inf) if lb is None else _checks.as_array("lb", lb, (n,), finite=False)
            ub = jnp.full(n, jnp.inf) if ub is None else _checks.as_array("ub", ub, (n,), finite=False)
            _check_order("lb", "ub", lb, ub)
            arrays += [lb, ub]
        dtype = jnp.result_type(*arrays)
        self.P, self.q, self.A, self.l, self.u = (v.astype(dtype) for v in (P, q, A, l, u))
        self.lb, self.ub = (None, None) if lb is None else (lb.astype(dtype), ub.astype(dtype))

    @property
    def n(self) -> int:
        return self.q.shape[-1]

    @property
    def m(self) -> int:
        return self.l.shape[-1]

    @property
    def has_bounds(self) -> bool:
        return self.lb is not None

    def rows(self) -> tuple[Float[Array, "m+n n"], Float[Array, " m+n"], Float[Array, " m+n"]]:
        """``(C, l_C, u_C)`` with the variable bounds as identity rows after ``A`` (``C = A`` without bounds)."""
        if not self.has_bounds:
            return self.A, self.l, self.u
        C = jnp.concatenate([self.A, jnp.eye(self.n, dtype=self.A.dtype)])
        return C, jnp.concatenate([self.l, self.lb]), jnp.concatenate([self.u, self.ub])

    def objective(self, x: Float[Array, " n"]) -> Float[Array, ""]:
        """``½xᵀPx + qᵀx``."""
        return 0.5 * x @ (self.P @ x) + self.q @ x


def support(lo: Float[Array, "*batch k"], hi: Float[Array, "*batch k"], y: Float[Array, "*batch k"]) -> Float[Array, "*batch"]:
    """Support function of the box ``[lo, hi]`` at ``y``: ``hiᵀy⁺ + loᵀy⁻`` over the last axis
    (an infinite side counts where ``y`` is zero on it, as it must be for a finite value)."""
    up = jnp.where(jnp.isfinite(hi), hi, 0.0) * jnp.maximum(y, 0.0)
    down = jnp.where(jnp.isfinite(lo), lo, 0.0) * jnp.minimum(y, 0.0)
    return jnp.sum(up + down, axis=-1)


class KKTResiduals(eqx.Module):
    """Unscaled optimality measures of a primal–dual point (qpbenchmark's / OSQP 1.x's definitions).

    * ``primal``: ``‖Cx − Π_[l,u](Cx)‖∞`` over the rows of ``A`` and the variable bounds;
    * ``dual``: ``‖Px + q + Aᵀy + y_bound‖∞``;
    * ``gap``: ``|xᵀPx + qᵀx + S_[l,u](y) + S_[lb,ub](y_bound)|`` with ``S`` the box's support function;
    * ``eps_primal, eps_dual, eps_gap``: ``ε_abs + ε_rel·(scale)`` thresholds for each, with OSQP's
      scales ``max(‖Ax‖∞, ‖z‖∞)``, ``max(‖Px‖∞, ‖Aᵀy‖∞, ‖q‖∞)`` and ``max(|xᵀPx|, |qᵀx|, |S|)``.
    """

    primal: Float[Array, ""]
    dual: Float[Array, ""]
    gap: Float[Array, ""]
    eps_primal: Float[Array, ""]
    eps_dual: Float[Array, ""]
    eps_gap: Float[Array, ""]

    def converged(self):
        return (self.primal <= self.eps_primal) & (self.dual <= self.eps_dual) & (self.gap <= self.eps_gap)


def kkt_residuals(
    problem: QPProblem,
    x: Float[Array, " n"],
    y: Float[Array, " m"],
    y_bound: Float[Array, " n"],
    eps_abs: float = 0.0,
    eps_rel: float = 0.0,
) -> KKTResiduals:
    """:class:`KKTResiduals` of ``(x, y, y_bound)`` for ``problem`` (``y > 0``: upper side active, ``< 0``: lower)."""
    inf = lambda v: jnp.max(jnp.abs(v), initial=0.0)  # noqa: E731
    C, lo, hi = problem.rows()
    yc = jnp.concatenate([y, y_bound]) if problem.has_bounds else y
    Cx = C @ x
    z = jnp.clip(Cx, lo, hi)
    Px = problem.P @ x
    CTy = C.T @ yc
    xPx, qx = x @ Px, problem.q @ x
    s = support(lo, hi, yc)
    return KKTResiduals(
        primal=inf(Cx - z),
        dual=inf(Px + problem.q + CTy),
        gap=jnp.abs(xPx + qx + s),
        eps_primal=eps_abs + eps_rel * jnp.maximum(inf(Cx), inf(z)),
        eps_dual=eps_abs + eps_rel * jnp.maximum(jnp.maximum(inf(Px), inf(CTy)), inf(problem.q)),
        eps_gap=eps_abs + eps_rel * jnp.maximum(jnp.maximum(jnp.abs(xPx), jnp.abs(qx)), jnp.abs(s)),
    )

