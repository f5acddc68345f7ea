"""A learning problem: trainable parameters + frozen rest + log segments + objective, as one pytree.

:func:`make_problem` turns a parameter pytree and a :class:`~jtwin.logs.PlantLog` into
``(problem, theta)``: ``theta`` holds the trainable leaves (``None`` elsewhere) and
``problem.loss(theta)`` is a pure, ``jit``/``grad``/``vmap``-able scalar.  Because the problem
is a pytree whose arrays are the data, problems built from different logs of the same shape
stack and ``vmap`` (e.g. to fit many synthetic data sets at once).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree

from .. import _checks
from ..estimation import KF, UKF, AbstractFilter, run_filter
from ..estimation.base import disturbance
from ..logs import PlantLog
from ..models import AbstractModel, LinearModel
from .objectives import negative_log_likelihood, prediction_error
from .params import Selection, trainable_spec
from .segments import Segments, VariableStep, log_arrays, needs_variable_step, split_segments

Method = Literal["mle", "prediction"]
METHODS = ("mle", "prediction")


class Prior(eqx.Module):
    """Gaussian priors over each segment's first state: ``mean`` [S, n], ``cov`` [S, n, n]."""

    mean: Float[Array, "S n"]
    cov: Float[Array, "S n n"]


class Problem(eqx.Module):
    """Everything a loss needs except the trainable parameters ``theta``.

    * ``frozen``: the non-trainable part of the parameter pytree (``eqx.combine(theta, frozen)``
      rebuilds it); ``to_model`` maps the parameters to an ``AbstractModel``;
    * ``train``/``validation``: :class:`~jtwin.learn.segments.Segments` with their priors;
    * ``method``: ``"mle"`` or ``"prediction"`` (``horizon`` steps), see :mod:`jtwin.learn.objectives`.
    """

    frozen: PyTree
    estimator: AbstractFilter
    train: Segments
    train_prior: Prior
    validation: Segments | None
    validation_prior: Prior | None
    to_model: Callable = eqx.field(static=True)
    method: str = eqx.field(static=True)
    horizon: int = eqx.field(static=True)
    variable_step: bool = eqx.field(static=True)

    def params(self, theta: PyTree) -> PyTree:
        """The full parameter pytree: trainable ``theta`` combined with the frozen leaves."""
        return eqx.combine(theta, self.frozen)

    def model(self, theta: PyTree) -> AbstractModel:
        """The model the filter runs (wrapped in ``VariableStep`` for irregularly sampled logs)."""
        model = self.to_model(self.params(theta))
        return VariableStep(model) if self.variable_step else model

    def _totals(self, theta, segments: Segments, prior: Prior, method: str):
        model = self.model(theta)

        def one(m0, c0, ys, us, ds, ts):
            if method == "mle":
                return negative_log_likelihood(model, self.estimator, m0, c0, ys, us, ds, ts)
            return prediction_error(model, self.estimator, m0, c0, ys, us, ds, ts, self.horizon)

        return jax.vmap(one)(prior.mean, prior.cov, segments.ys, segments.us, segments.ds, segments.ts)

    def loss(self, theta: PyTree, batch: Float[Array, " B"] | None = None) -> Float[Array, ""]:
        """The training objective per measured entry over the training segments ``batch`` (indices; all if None)."""
        segments, prior = self.train, self.train_prior
        if batch is not None:
            segments, prior = jax.tree.map(lambda a: a[batch], (segments, prior))
        total, count = self._totals(theta, segments, prior, self.method)
        return jnp.sum(total) / jnp.maximum(jnp.sum(count), 1)

    def validation_loss(self, theta: PyTree) -> Float[Array, ""]:
        """The objective per measured entry over the validation segments (NaN without validation data)."""
        if self.validation is None:
            return jnp.asarray(jnp.nan)
        total, count = self._totals(theta, self.validation, self.validation_prior, self.method)
        return jnp.sum(total) / jnp.maximum(jnp.sum(count), 1)

    def negative_log_likelihood(self, theta: PyTree) -> Float[Array, ""]:
        """``−log p(training data | θ)`` summed over training segments (the Laplace approximation's target)."""
        total, _ = self._totals(theta, self.train, self.train_prior, "mle")
        return jnp.sum(total)


def _identity(params):
    return params


def default_estimator(model: AbstractModel) -> AbstractFilter:
    """KF for linear models, UKF otherwise (derivative-free in the state, so gradients need one AD level)."""
    return KF() if isinstance(model, LinearModel) else UKF()


def segment_priors(
    model: AbstractModel, estimator: AbstractFilter, mean0, cov0, arrays, starts
) -> Prior:
    """Priors of segments starting at ``starts``: ``N(mean0, cov0)`` at sample 0, else the one-step
    prediction of ``x[k]`` from the filtered belief at ``k − 1`` under ``model`` (one filter pass over the log)."""
    ys, us, ds, ts = arrays
    result = run_filter(estimator, model, mean0, cov0, ys, us, ts, ds)

    def prior_at(k):
        j = jnp.maximum(k - 1, 0)
        belief = estimator.init(result.means[j], result.covs[j])
        pred = estimator.predict(model, belief, us[j], ts[j], disturbance(model, ds[j]))
        first = k == 0
        return jnp.where(first, mean0, pred.mean), jnp.where(first, cov0, pred.cov)

    mean, cov = jax.vmap(prior_at)(starts)
    return Prior(mean, cov)


def make_problem(
    params: PyTree,
    log: PlantLog,
    *,
    mean0: Float[Array, " n"],
    cov0: Float[Array, "n n"] | None = None,
    to_model: Callable[[PyTree], AbstractModel] | None = None,
    method: Method = "mle",
    trainable: Selection = None,
    estimator: AbstractFilter | None = None,
    horizon: int = 10,
    segment_length: int | None = None,
    validation: float = 0.0,
) -> tuple[Problem, PyTree]:
    """Build the :class:`Problem` of fitting ``params`` to ``log``; returns ``(problem, theta0)``.

    * ``params``: a model, or any pytree of parameters with ``to_model(params) -> AbstractModel``
      (e.g. ``BuildingRC`` with ``lambda p: p.to_linear(dt)``);
    * ``mean0`` [n], ``cov0`` [n, n] (default identity): prior of the state at the log's first sample;
      later segments start from the initial model's one-step filter prediction (held fixed);
    * ``trainable``: which leaves to fit (see :func:`~jtwin.learn.params.trainable_spec`);
    * ``estimator``: the filter (default :func:`default_estimator`);
    * ``method``/``horizon``: the objective; ``segment_length``/``validation``: see
      :func:`~jtwin.learn.segments.split_segments`.

    Raises ``ValueError`` naming the argument for a bad method, shapes, or a log that does not
    match the model.
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    if int(horizon) != horizon or horizon < 1:
        raise ValueError(f"horizon: expected a positive integer, got {horizon}")
    to_model = _identity if to_model is None else to_model
    model0 = to_model(params)
    if not isinstance(model0, AbstractModel):
        raise ValueError(f"to_model: expected it to return a jtwin model, got {type(model0).__name__}")
    log.check_model(model0)
    estimator = default_estimator(model0) if estimator is None else estimator
    variable = needs_variable_step(log, model0)
    n = model0.state_dim
    mean0 = _checks.as_array("mean0", mean0, (n,))
    dtype = jnp.result_type(mean0, jax.tree.leaves(eqx.filter(params, eqx.is_inexact_array))[0])
    cov0 = jnp.eye(n, dtype=dtype) if cov0 is None else _checks.check_covariance("cov0", cov0, n)
    mean0, cov0 = mean0.astype(dtype), cov0.astype(dtype)
    arrays = log_arrays(log, variable, dtype)
    train, val = split_segments(arrays, segment_length, validation)
    spec = trainable_spec(params, trainable)
    theta, frozen = eqx.partition(params, spec)
    filter_model = VariableStep(model0) if variable else model0
    starts = train.start if val is None else jnp.concatenate([train.start, val.start])
    priors = eqx.filter_jit(segment_priors)(filter_model, estimator, mean0, cov0, arrays, starts)
    train_prior = jax.tree.map(lambda a: a[: train.count], priors)
    val_prior = None if val is None else jax.tree.map(lambda a: a[train.count :], priors)
    problem = Problem(frozen, estimator, train, train_prior, val, val_prior, to_model, method, int(horizon), variable)
    return problem, theta
