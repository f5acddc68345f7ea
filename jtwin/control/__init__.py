"""jtwin.control — U, optimisation-based actuation.

* :class:`AbstractController` — the interface the twin runs (``init``, ``step``, ``fallback``,
  ``input_bounds``), implemented by every controller here; :class:`LQR` — saturated LQR, :mod:`.base`.
* :class:`LinearMPC` — receding-horizon control of ``x⁺ = Ax + Bu + Ed`` with
  tracking, ℓ1 and demand-charge (hinge) costs, input/state boxes, soft state
  constraints, ADMM (:func:`jtwin.qp.solve_qp`) or FISTA solvers; jit, vmap, grad.
* :func:`lqr`, :func:`solve_discrete_are` — discrete LQR by a doubling Riccati solver.
* :class:`TubeMPC`, :class:`ChanceMPC`, :class:`PolytopicMPC` — MPC under uncertainty (tube with
  constraint tightening, Gaussian chance constraints, multi-model/epistemic), :mod:`.robust`.
* :func:`output_feedback_tube_sets`, :func:`steady_state_gain` — the tube twin's sets when it acts
  on a constant-gain Kalman estimate (error bound ``E``, estimate disturbance ``Ŵ``, ``X ⊖ E``).
* :func:`controller_like` — a LinearMPC's problem as another kind (``[controller] kind``), :mod:`.kinds`.
* :func:`terminal_cost`, :func:`maximal_admissible_set`, :func:`certify_decrease`,
  :func:`certify_invariance` — terminal ingredients and their certificates, :mod:`.terminal`.
"""

from .base import LQR, AbstractController, ControlInfo
from .lqr import lqr, solve_discrete_are
from .kinds import CONTROLLER_KINDS, controller_like
from .mpc import LinearMPC, MPCSolution
from .output_feedback import output_feedback_tube_sets, steady_state_gain
from .robust import ChanceMPC, PolytopicMPC, TubeMPC, TubeRollout, TubeState
from .terminal import Certificate, TerminalCost, certify_decrease, certify_invariance, maximal_admissible_set, terminal_cost

__all__ = [
    "AbstractController",
    "CONTROLLER_KINDS",
    "ControlInfo",
    "LQR",
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
    "controller_like",
    "certify_invariance",
    "lqr",
    "maximal_admissible_set",
    "output_feedback_tube_sets",
    "solve_discrete_are",
    "steady_state_gain",
    "terminal_cost",
]
