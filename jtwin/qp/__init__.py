"""jtwin.qp — convex QP and proximal solvers in pure JAX (jit / vmap / grad).

One interface (:class:`AbstractQPSolver`, ``solve(solver, problem)``) and three solvers:

* :class:`ADMM` — OSQP's algorithm on dense arrays (Ruiz scaling, per-row ρ,
  over-relaxation, adaptive ρ on a fixed schedule, infeasibility certificates,
  polishing, warm start, one shared factorisation under ``vmap`` when ``P, A`` are shared).
* :class:`InteriorPoint` — primal–dual Mehrotra predictor–corrector (dense), to 1e-9.
* :class:`FISTA` — accelerated proximal gradient for box-constrained QPs (and, through
  :func:`fista`, the MPC's ℓ1/hinge problem with the exact proxes of :mod:`jtwin.qp.prox`).

:class:`QPProblem` is the problem pytree, :class:`QPSolution` the common result (with
primal/dual residuals and duality gap), :class:`RESULTS` the one status type
(:func:`is_successful`).  :func:`solve_qp` is the one-call entry point (ADMM by default).
Gradients: the implicit KKT derivative (:mod:`jtwin.qp.implicit`) for every solver.
"""

from .admm import ADMM, ADMMState
from .base import AbstractQPSolver, solve
from .entry import solve_qp
from .fista import FISTA, FISTASolution, fista, power_iteration
from .implicit import attach_fixed_point_gradient, attach_kkt_gradient
from .ipm import InteriorPoint
from .problem import KKTResiduals, QPProblem, kkt_residuals
from .prox import prox_hinge, prox_l1_box, prox_l1_box_hinge, soft_threshold
from .registry import SOLVERS, make_solver, solver_name
from .results import RESULTS, is_successful, status_code, status_name, throw_if_failed
from .scaling import Scaling, ruiz_equilibrate
from .solution import QPSolution, WarmStart

__all__ = [
    "ADMM",
    "ADMMState",
    "AbstractQPSolver",
    "FISTA",
    "FISTASolution",
    "InteriorPoint",
    "KKTResiduals",
    "QPProblem",
    "QPSolution",
    "RESULTS",
    "SOLVERS",
    "Scaling",
    "WarmStart",
    "attach_fixed_point_gradient",
    "attach_kkt_gradient",
    "fista",
    "is_successful",
    "kkt_residuals",
    "make_solver",
    "power_iteration",
    "prox_hinge",
    "prox_l1_box",
    "prox_l1_box_hinge",
    "ruiz_equilibrate",
    "soft_threshold",
    "solve",
    "solve_qp",
    "solver_name",
    "status_code",
    "status_name",
    "throw_if_failed",
]
