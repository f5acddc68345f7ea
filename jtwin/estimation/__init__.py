"""jtwin.estimation — D, data assimilation: Gaussian filters and smoothers as pure JAX.

* Estimators (``equinox.Module`` with pure ``init`` / ``predict`` / ``update`` on a belief pytree):
  :class:`KF` (linear models, Joseph form), :class:`EKF` (autodiff Jacobians + validity
  diagnostic), :class:`UKF` (scaled sigma points, noise augmentation), :class:`SquareRootUKF`.
* :func:`run_filter` — ``lax.scan`` over a measurement sequence; missing entries (NaN) skipped,
  optional χ² gating, per-step log-likelihood; ``jit``/``vmap``/``grad``-compatible.
* :func:`rts_smoother` — Rauch–Tung–Striebel smoothing with any of the estimators.
* :func:`parallel_kalman_filter`, :func:`parallel_rts_smoother` — parallel-in-time (associative scan).
* :func:`augment_parameters` — joint state–parameter estimation with random-walk parameters.
"""

from .base import AbstractFilter
from .belief import Belief, SqrtBelief, UpdateInfo
from .extended import EKF, validity_ratio
from .filter import FilterResult, run_filter
from .joint import ParameterAugmentedModel, augment_parameters, joint_prior
from .kalman import KF
from .parallel import parallel_kalman_filter, parallel_rts_smoother
from .smoother import SmootherResult, rts_smoother
from .square_root import SquareRootUKF
from .unscented import UKF, sigma_points, unscented_weights

__all__ = [
    "EKF",
    "KF",
    "UKF",
    "AbstractFilter",
    "Belief",
    "FilterResult",
    "ParameterAugmentedModel",
    "SmootherResult",
    "SqrtBelief",
    "SquareRootUKF",
    "UpdateInfo",
    "augment_parameters",
    "joint_prior",
    "parallel_kalman_filter",
    "parallel_rts_smoother",
    "rts_smoother",
    "run_filter",
    "sigma_points",
    "unscented_weights",
    "validity_ratio",
]
