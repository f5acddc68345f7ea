"""jtwin.qp — convex QP and proximal solvers in pure JAX (jit / vmap / grad).

* :func:`solve_qp` — OSQP's ADMM algorithm on dense arrays (Ruiz scaling,
  per-row ρ, over-relaxation, adaptive ρ on a fixed schedule, infeasibility
  certificates, polishing, warm start, shared factorisation under ``vmap``,
  implicit or unrolled differentiation).
* :func:`fista` — accelerated proximal gradient with adaptive restart, and the
  exact proximal operators of :mod:`jtwin.qp.prox`.
* Status codes: :data:`SOLVED`, :data:`MAX_ITER`, :data:`PRIMAL_INFEASIBLE`,
  :data:`DUAL_INFEASIBLE`, :data:`NUMERICAL_ERROR`; :func:`status_name`.
"""

from .admm import ADMMSettings, QPSolution, solve_qp
from .fista import FISTASolution, fista, power_iteration
from .implicit import attach_kkt_gradient
from .prox import prox_hinge, prox_l1_box, prox_l1_box_hinge, soft_threshold
from .scaling import Scaling, ruiz_equilibrate
from .status import DUAL_INFEASIBLE, MAX_ITER, NUMERICAL_ERROR, PRIMAL_INFEASIBLE, SOLVED, status_name

__all__ = [
    "ADMMSettings",
    "DUAL_INFEASIBLE",
    "FISTASolution",
    "MAX_ITER",
    "NUMERICAL_ERROR",
    "PRIMAL_INFEASIBLE",
    "QPSolution",
    "SOLVED",
    "Scaling",
    "attach_kkt_gradient",
    "fista",
    "power_iteration",
    "prox_hinge",
    "prox_l1_box",
    "prox_l1_box_hinge",
    "ruiz_equilibrate",
    "soft_threshold",
    "solve_qp",
    "status_name",
]
