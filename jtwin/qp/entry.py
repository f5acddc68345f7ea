"""``solve_qp(P, q, A, l, u, ...)``: the one-call entry point (ADMM unless another solver is given)."""

from __future__ import annotations

from jaxtyping import Array, ArrayLike, Float

from .admm import ADMM, ADMMState
from .base import AbstractQPSolver, solve
from .problem import QPProblem
from .solution import QPSolution, WarmStart


def solve_qp(
    P: Float[ArrayLike, "n n"],
    q: Float[ArrayLike, " n"],
    A: Float[ArrayLike, "m n"],
    l: Float[ArrayLike, " m"],
    u: Float[ArrayLike, " m"],
    *,
    lb: Float[ArrayLike, " n"] | None = None,
    ub: Float[ArrayLike, " n"] | None = None,
    solver: AbstractQPSolver | None = None,
    warm_start: QPSolution | WarmStart | tuple[Array, ...] | None = None,
    throw: bool = False,
    **options,
) -> QPSolution:
    """Solve ``min ½xᵀPx + qᵀx  s.t.  l ≤ Ax ≤ u, lb ≤ x ≤ ub`` on dense arrays.

    Arguments:

    - ``P`` [n, n] symmetric PSD, ``q`` [n], ``A`` [m, n], ``l, u`` [m] (``±inf`` for absent
      sides, ``l_i = u_i`` for equalities); ``lb, ub`` [n] optional variable bounds (kept as a
      diagonal, cheaper than identity rows in ``A``; their multipliers are ``y_bound``).
    - ``solver``: a :class:`~jtwin.qp.AbstractQPSolver` (``ADMM()``, ``InteriorPoint()``…);
      default ``ADMM(**options)``, so ``solve_qp(..., eps_abs=1e-6, polish=True)`` works as it always
      did.  Options and a solver object are not combined: set options on the object.
    - ``warm_start``: a previous :class:`QPSolution` (its ``x, y, y_bound`` and solver state, e.g.
      ADMM's ρ), a :class:`WarmStart`, or a tuple ``(x, y)``, ``(x, y, y_bound)`` or
      ``(x, y, y_bound, rho)`` (the last restarts ADMM from step size ``rho``).
    - ``throw``: raise instead of returning a status that is not ``RESULTS.successful``.

    Returns a :class:`QPSolution`.  jit-, vmap- and grad-able: see :func:`jtwin.qp.solve` for the
    gradient rule, and :class:`~jtwin.qp.ADMM` for the shared-factorisation batching under ``vmap``
    with unbatched ``P, A``.  Bad input raises ValueError naming the argument.
    """
    if solver is None:
        try:
            solver = ADMM(**options)
        except TypeError as exc:  # an unknown keyword
            raise ValueError(f"solve_qp: {exc}; ADMM's options are the fields of jtwin.qp.ADMM") from exc
    elif options:
        raise ValueError(f"{', '.join(sorted(options))}: set options on the solver object, not next to solver=")
    if isinstance(warm_start, tuple) and len(warm_start) == 4:
        x, y, y_bound, rho = warm_start
        warm_start = WarmStart(x=x, y=y, y_bound=y_bound, state=ADMMState(rho=rho, polished=False))
    return solve(solver, QPProblem(P, q, A, l, u, lb, ub), warm_start, throw=throw)
