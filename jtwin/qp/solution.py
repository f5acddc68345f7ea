"""What every QP solver returns (:class:`QPSolution`) and what it may start from (:class:`WarmStart`)."""

from __future__ import annotations

import equinox as eqx
from jaxtyping import Array, Float, Int, PyTree

from .results import RESULTS


class QPSolution(eqx.Module):
    """Result of a QP solve, the same fields for every solver (unscaled).

    * ``x`` [n] primal point; ``y`` [m] multipliers of ``l ≤ Ax ≤ u`` (``y > 0`` on an
      active upper side, ``< 0`` on an active lower side); ``y_bound`` [n] multipliers of
      ``lb ≤ x ≤ ub`` (zero without bounds); ``z`` [m] ``Ax`` projected onto ``[l, u]``.
    * ``status``: a :class:`jtwin.qp.RESULTS` item; ``is_successful(status)`` means the
      primal residual, dual residual and duality gap all met the tolerance.
    * ``iterations``; ``primal_residual`` ``‖Cx − Π(Cx)‖∞``, ``dual_residual``
      ``‖Px + q + Aᵀy + y_bound‖∞``, ``duality_gap`` ``|xᵀPx + qᵀx + S(y)|``
      (:func:`jtwin.qp.kkt_residuals`); ``objective`` ``½xᵀPx + qᵀx``.
    * ``state``: the solver's own warm-start state (opaque; e.g. ADMM's step size ρ).

    For infeasible problems ``x, y`` hold the last iterate (not a solution).
    """

    x: Float[Array, " n"]
    y: Float[Array, " m"]
    y_bound: Float[Array, " n"]
    z: Float[Array, " m"]
    status: RESULTS
    iterations: Int[Array, ""]
    primal_residual: Float[Array, ""]
    dual_residual: Float[Array, ""]
    duality_gap: Float[Array, ""]
    objective: Float[Array, ""]
    state: PyTree


class WarmStart(eqx.Module):
    """A starting point: ``x`` [n], ``y`` [m], ``y_bound`` [n] and the solver state of a previous
    solve (``None``: the solver's default).  Any :class:`QPSolution` can be passed where a warm
    start is expected."""

    x: Float[Array, " n"]
    y: Float[Array, " m"]
    y_bound: Float[Array, " n"]
    state: PyTree = None
