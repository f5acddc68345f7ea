"""jtwin.uncertainty — sets, chance constraints, risk measures and parameter confidence sets.

* :class:`Polytope`, :func:`reachable_support`, :func:`mrpi_outer` — H-polytopes, support
  functions of the disturbance reachable sets ``⊕_{i<t} Φ^i W`` and the mRPI outer bound
  (host-side set computations for tube MPC, :mod:`jtwin.control.robust`).
* :func:`propagate_covariance`, :func:`gaussian_backoff`, :func:`bonferroni` — Gaussian
  chance-constraint tightening (aleatoric uncertainty), pure JAX.
* :func:`cvar`, :func:`value_at_risk`, :func:`rockafellar_uryasev` — risk of scenario losses.
* :class:`ConfidenceEllipsoid`, :func:`least_squares_confidence`, :func:`box_vertices` —
  confidence sets ``Θ_δ`` for parameters (epistemic uncertainty).
"""

from .chance import bonferroni, gaussian_backoff, propagate_covariance
from .epistemic import ConfidenceEllipsoid, box_vertices, least_squares_confidence
from .risk import cvar, rockafellar_uryasev, value_at_risk
from .sets import MRPIOuter, Polytope, mrpi_outer, reachable_support

__all__ = [
    "ConfidenceEllipsoid",
    "MRPIOuter",
    "Polytope",
    "bonferroni",
    "box_vertices",
    "cvar",
    "gaussian_backoff",
    "least_squares_confidence",
    "mrpi_outer",
    "propagate_covariance",
    "reachable_support",
    "rockafellar_uryasev",
    "value_at_risk",
]
