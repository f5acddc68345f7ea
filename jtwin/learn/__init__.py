"""jtwin.learn — fit model parameters to plant logs, with uncertainty.

* :func:`fit` — maximum likelihood through a filter (KF/EKF/UKF) or multi-step prediction error,
  optax optimisers, trainable leaves chosen by equinox filtering, mini-batches of log segments
  (``vmap``), time-ordered validation split, early stopping, a progress bar; returns a
  :class:`FitResult` with Laplace confidence intervals and a report (table, loss PNG, saved params).
* :func:`make_problem` / :class:`Problem` — the pure loss behind ``fit`` (``jit``/``grad``/``vmap``).
* :func:`laplace` — ``N(θ̂, H⁻¹)`` from the Hessian of the negative log-likelihood.
* :func:`save_params` / :func:`load_params` — equinox serialisation of fitted parameters.
* :func:`tune` — MPC weights or model parameters tuned by gradient through the closed loop
  (plant + filter + MPC over a batch of scenarios, ``jax.checkpoint`` over time chunks);
  :class:`TrackingCost` a smooth closed-loop KPI, :class:`TwinParameters` the parametrisation.

Logs are read by :func:`jtwin.logs.load_log`.
"""

from .fit import FitResult, fit
from .laplace import Laplace, laplace, nll_hessian
from .objectives import negative_log_likelihood, prediction_error
from .params import physical, scalar_names, trainable_spec
from .problem import Prior, Problem, default_estimator, make_problem
from .report import load_params, save_params
from .segments import Segments, VariableStep, split_segments
from .synthetic import synthetic_log
from .tune import TrackingCost, TuneProblem, TuneResult, TwinParameters, tune

__all__ = [
    "FitResult",
    "Laplace",
    "Prior",
    "Problem",
    "Segments",
    "TrackingCost",
    "TuneProblem",
    "TuneResult",
    "TwinParameters",
    "VariableStep",
    "default_estimator",
    "fit",
    "laplace",
    "load_params",
    "make_problem",
    "negative_log_likelihood",
    "nll_hessian",
    "physical",
    "prediction_error",
    "save_params",
    "scalar_names",
    "split_segments",
    "synthetic_log",
    "trainable_spec",
    "tune",
]
