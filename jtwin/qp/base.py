"""The QP solver interface: :class:`AbstractQPSolver` and :func:`solve`, which every solver goes through.

A solver is an ``eqx.Module`` holding its options (validated once, in
``__check_init__``); its :meth:`~AbstractQPSolver.run` maps a
:class:`~jtwin.qp.QPProblem` (and an optional :class:`~jtwin.qp.WarmStart`) to a
:class:`~jtwin.qp.QPSolution` without caring about gradients.  :func:`solve`
adds what is common to all solvers: the implicit KKT gradient
(:mod:`jtwin.qp.implicit`, attached once here for any solver), bounded variables
returned exactly inside their bounds, the solver-independent residuals and duality gap of
the returned point, and ``throw=``.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp

from .. import _checks
from .implicit import attach_kkt_gradient
from .problem import QPProblem, kkt_residuals
from .results import is_successful, throw_if_failed
from .solution import QPSolution, WarmStart

DIFFERENTIATION = ("implicit", "unrolled")


class AbstractQPSolver(eqx.Module):
    """A dense convex QP solver (see :func:`solve`).

    Every solver has ``eps_abs``, ``eps_rel`` (its termination tolerances, met by the
    primal residual, the dual residual and the duality gap of :func:`jtwin.qp.kkt_residuals`
    before it reports ``RESULTS.successful``), ``max_iter`` and ``differentiation``:
    ``"implicit"`` (gradients from the KKT conditions at the solution) or ``"unrolled"``
    (autodiff through the iterations; only solvers whose loop allows it).
    """

    eps_abs: eqx.AbstractVar[float]
    eps_rel: eqx.AbstractVar[float]
    max_iter: eqx.AbstractVar[int]
    differentiation: eqx.AbstractVar[str]

    @abc.abstractmethod
    def run(self, problem: QPProblem, warm_start: WarmStart | None) -> QPSolution:
        """Solve ``problem`` (no gradient handling: :func:`solve` attaches it).  jit/vmap-able."""


def check_options(eps_abs: float, eps_rel: float, max_iter: int, differentiation: str, allowed=DIFFERENTIATION) -> None:
    """The option checks every solver shares (raises ValueError naming the option)."""
    for name, value in (("eps_abs", eps_abs), ("eps_rel", eps_rel)):
        if not value >= 0:
            raise ValueError(f"{name}: expected a non-negative number, got {value}")
    if not eps_abs + eps_rel > 0:
        raise ValueError("eps_abs, eps_rel: at least one tolerance must be positive")
    if not (isinstance(max_iter, int) and max_iter >= 1):
        raise ValueError(f"max_iter: expected a positive integer, got {max_iter!r}")
    if differentiation not in allowed:
        raise ValueError(f"differentiation: expected one of {list(allowed)}, got {differentiation!r}")


def as_warm_start(problem: QPProblem, warm_start) -> WarmStart | None:
    """A :class:`WarmStart` from a previous :class:`QPSolution`, a ``WarmStart``, a tuple
    ``(x, y)`` / ``(x, y, y_bound)``, or ``None``; shapes are checked against ``problem``."""
    if warm_start is None:
        return None
    n, m = problem.n, problem.m
    if isinstance(warm_start, (QPSolution, WarmStart)):
        x, y, yb, state = warm_start.x, warm_start.y, warm_start.y_bound, warm_start.state
    elif isinstance(warm_start, tuple) and len(warm_start) in (2, 3):
        x, y, yb, state = *warm_start[:2], (warm_start[2] if len(warm_start) == 3 else jnp.zeros(n)), None
    else:
        raise ValueError("warm_start: expected a QPSolution, a WarmStart or a tuple (x, y), (x, y, y_bound) or (x, y, y_bound, rho)")
    dtype = problem.q.dtype
    x = _checks.as_array("warm_start.x", x, (n,)).astype(dtype)
    y = _checks.as_array("warm_start.y", y, (m,)).astype(dtype)
    yb = _checks.as_array("warm_start.y_bound", yb, (n,)).astype(dtype)
    return WarmStart(x=x, y=y, y_bound=yb, state=state)


@eqx.filter_jit
def _solve(solver: AbstractQPSolver, problem: QPProblem, warm_start: WarmStart | None) -> QPSolution:
    if solver.differentiation == "unrolled":
        sol = solver.run(problem, warm_start)
    else:
        sol = solver.run(*jax.lax.stop_gradient((problem, warm_start)))
    if problem.has_bounds:  # bounded variables exactly inside their bounds, whatever the solver's round-off
        lb, ub = jax.lax.stop_gradient((problem.lb, problem.ub))
        sol = eqx.tree_at(lambda s: s.x, sol, jnp.clip(sol.x, lb, ub))
    if solver.differentiation != "unrolled":
        C, l, u = problem.rows()
        yc = jnp.concatenate([sol.y, sol.y_bound]) if problem.has_bounds else sol.y
        x, yc = attach_kkt_gradient(problem.P, problem.q, C, l, u, sol.x, yc, is_successful(sol.status))
        y, y_bound = (yc[: problem.m], yc[problem.m :]) if problem.has_bounds else (yc, sol.y_bound)
        sol = eqx.tree_at(lambda s: (s.x, s.y, s.y_bound), sol, (x, y, y_bound))
    res = kkt_residuals(problem, sol.x, sol.y, sol.y_bound)
    return eqx.tree_at(
        lambda s: (s.primal_residual, s.dual_residual, s.duality_gap, s.objective),
        sol,
        (res.primal, res.dual, res.gap, problem.objective(sol.x)),
    )


def solve(
    solver: AbstractQPSolver,
    problem: QPProblem,
    warm_start: QPSolution | WarmStart | tuple | None = None,
    *,
    throw: bool = False,
) -> QPSolution:
    """Solve ``problem`` with ``solver``: ``min ½xᵀPx + qᵀx  s.t.  l ≤ Ax ≤ u, lb ≤ x ≤ ub``.

    Returns a :class:`QPSolution` whose ``primal_residual``, ``dual_residual``,
    ``duality_gap`` and ``objective`` are computed here, the same way for every
    solver.  With ``solver.differentiation == "implicit"`` reverse-mode gradients
    w.r.t. every array of ``problem`` come from the KKT conditions at the active set
    (zero where the solve did not succeed).  ``throw=True`` raises (an
    ``EquinoxRuntimeError`` carrying the status message) when any solve of a batch is not
    successful, instead of returning the status.  jit-, vmap- and grad-able.
    """
    if not isinstance(solver, AbstractQPSolver):
        raise ValueError(f"solver: expected a jtwin.qp solver (ADMM(), InteriorPoint(), …), got {type(solver).__name__}")
    sol = _solve(solver, problem, as_warm_start(problem, warm_start))
    return throw_if_failed(sol, sol.status) if throw else sol
