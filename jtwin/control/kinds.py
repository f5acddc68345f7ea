"""Controllers by name: a :class:`~jtwin.control.LinearMPC`'s problem handed to another controller kind.

``[controller] kind`` of a config (``"mpc" | "tube" | "chance" | "polytopic" | "lqr"``) selects one of
these; each keeps the MPC's model ``(A, B)``, weights ``Q, R``, horizon, ℓ1/hinge terms and solver,
and turns its boxes into polytopes ``X = {xmin ≤ x ≤ xmax}``, ``U = {umin ≤ u ≤ umax}``:

* ``"lqr"``: :class:`~jtwin.control.LQR` ``u = K(x − x_ref)`` saturated to ``U`` (no forecast, no ℓ1/hinge).
* ``"polytopic"``: :class:`~jtwin.control.PolytopicMPC` with hard ``X``, ``U`` (no forecast).
* ``"chance"``: :class:`~jtwin.control.ChanceMPC`, rows of ``X``/``U`` held with probability
  ``1 − eps`` under the process noise ``noise_cov`` and the filter's covariance.
* ``"tube"``: :class:`~jtwin.control.TubeMPC` with ``W`` the box of ``±sigmas`` standard deviations
  of ``noise_cov`` (a bound that holds with the Gaussian probability of that box, not surely);
  it regulates to the origin, so it needs ``x_ref = 0`` (a linearised twin at its operating point).

The robust kinds take no disturbance forecast: the twin then hands them none.
"""

import numpy as np

from ..uncertainty.sets import Polytope
from .base import LQR, AbstractController
from .mpc import LinearMPC
from .robust import ChanceMPC, PolytopicMPC, TubeMPC

#: Each kind's name in words (``jtwin run``'s header).
CONTROLLER_NAMES = {"mpc": "MPC", "tube": "tube MPC", "chance": "chance-constrained MPC", "polytopic": "polytopic MPC", "lqr": "LQR"}
CONTROLLER_KINDS = tuple(CONTROLLER_NAMES)


def _box(lo, hi) -> Polytope | None:
    """``{lo ≤ v ≤ hi}``, or None when no bound is finite."""
    if not (np.isfinite(lo).any() or np.isfinite(hi).any()):
        return None
    return Polytope.box(lo, hi)


def controller_like(kind: str, mpc: LinearMPC, noise_cov, *, eps: float = 0.05, sigmas: float = 3.0) -> AbstractController:
    """The controller ``kind`` (module docstring) on ``mpc``'s problem; ``noise_cov`` [n, n] the process noise."""
    if kind not in CONTROLLER_KINDS:
        raise ValueError(f"kind: expected one of {list(CONTROLLER_KINDS)}, got {kind!r}")
    if kind == "mpc":
        return mpc
    umin, umax, xmin, xmax = mpc._bounds()
    xref = np.asarray(mpc.xref[0])
    if kind == "lqr":
        return LQR(mpc.A, mpc.B, mpc.Q, mpc.R, xref=xref, umin=umin, umax=umax)
    X, U = _box(xmin, xmax), _box(umin, umax)
    costs = dict(alpha=float(mpc.alpha), beta=float(mpc.beta), c=mpc.c, rho=float(mpc.rho), solver=mpc.solver)
    N = mpc.horizon
    if kind == "polytopic":
        return PolytopicMPC(mpc.A, mpc.B, N, mpc.Q, mpc.R, X, U, xref=xref, **costs)
    if kind == "chance":
        return ChanceMPC(mpc.A, mpc.B, N, mpc.Q, mpc.R, X, U, noise_cov, eps, xref=xref, **costs)
    if np.any(xref != 0):
        raise ValueError("kind: 'tube' regulates to the origin; it needs xref = 0 (a twin linearised at its operating point)")
    if X is None or U is None:
        raise ValueError("kind: 'tube' needs finite state and input bounds (the sets it tightens)")
    half = sigmas * np.sqrt(np.diag(np.asarray(noise_cov, float)))
    return TubeMPC(mpc.A, mpc.B, N, mpc.Q, mpc.R, X, U, Polytope.box(-half, half), **costs)
