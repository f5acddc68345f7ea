"""jtwin.control — U, optimisation-based actuation.

* :class:`LinearMPC` — receding-horizon control of ``x⁺ = Ax + Bu + Ed`` with
  tracking, ℓ1 and demand-charge (hinge) costs, input/state boxes, soft state
  constraints, ADMM (:func:`jtwin.qp.solve_qp`) or FISTA solvers; jit, vmap, grad.
* :func:`lqr`, :func:`solve_discrete_are` — discrete LQR by a doubling Riccati solver.
"""

from .lqr import lqr, solve_discrete_are
from .mpc import LinearMPC, MPCSolution

__all__ = ["LinearMPC", "MPCSolution", "lqr", "solve_discrete_are"]
