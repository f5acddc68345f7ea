"""jtwin.control — U, optimisation-based actuation.

* :class:`LinearMPC` — receding-horizon control of ``x⁺ = Ax + Bu + Ed`` with
  tracking, ℓ1 and demand-charge (hinge) costs, input/state boxes, soft state
  constraints, ADMM (:func:`jtwin.qp.solve_qp`) or FISTA solvers; jit, vmap, grad.
* :func:`lqr`, :func:`solve_discrete_are` — discrete LQR by a doubling Riccati solver.
* :class:`TubeMPC`, :class:`ChanceMPC`, :class:`PolytopicMPC` — MPC under uncertainty (tube with
  constraint tightening, Gaussian chance constraints, multi-model/epistemic), :mod:`.robust`.
* :func:`terminal_cost`, :func:`maximal_admissible_set`, :func:`certify_decrease`,
  :func:`certify_invariance` — terminal ingredients and their certificates, :mod:`.terminal`.
"""

from .lqr import lqr, solve_discrete_are
from .mpc import LinearMPC, MPCSolution
from .robust import ChanceMPC, PolytopicMPC, TubeMPC, TubeRollout, TubeState
from .terminal import Certificate, TerminalCost, certify_decrease, certify_invariance, maximal_admissible_set, terminal_cost

__all__ = [
    "Certificate",
    "ChanceMPC",
    "LinearMPC",
    "MPCSolution",
    "PolytopicMPC",
    "TerminalCost",
    "TubeMPC",
    "TubeRollout",
    "TubeState",
    "certify_decrease",
    "certify_invariance",
    "lqr",
    "maximal_admissible_set",
    "solve_discrete_are",
    "terminal_cost",
]
