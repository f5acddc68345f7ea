"""``run_filter``: a filter scanned over a measurement sequence with ``lax.scan``.

Timing convention (the same as :meth:`jtwin.models.AbstractModel.simulate`)::

    for k in 0..T-1:
        belief_k|k   = update(belief_k|k-1, ys[k], us[k], ts[k])     # ys[k] measures x[k]
        belief_k+1|k = predict(belief_k|k, us[k], ts[k], ds[k])       # x[k+1] = f(x[k], u[k], t[k], d[k]) + w[k]

``mean0``/``cov0`` is the prior over ``x[0]`` (before ``ys[0]``).  The returned ``means[k]``/
``covs[k]`` are the *filtered* estimates of ``x[k]`` given ``ys[0..k]``; ``next_mean``/``next_cov``
is the one-step prediction of ``x[T]``.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from .. import _checks
from ..models.base import AbstractModel
from .base import AbstractFilter, disturbance


class FilterResult(eqx.Module):
    """Output of :func:`run_filter` (all arrays stacked over the T steps).

    * ``means`` [T, n], ``covs`` [T, n, n]: filtered estimates of ``x[k]`` given ``ys[0..k]``;
    * ``log_likelihood``: ``Σ_k log p(ys[k] | ys[0..k-1])`` over observed, accepted entries
      (the exact marginal likelihood for linear-Gaussian models; differentiable);
    * ``log_likelihoods`` [T]: the per-step terms;
    * ``innovations`` [T, ny] (0 where missing), ``nis`` [T], ``num_observed`` [T];
    * ``rejected`` [T] and ``num_rejected``: measurements the χ² gate skipped;
    * ``next_mean`` [n], ``next_cov`` [n, n]: prediction of ``x[T]``;
    * ``diagnostics``: estimator-specific per-step arrays (e.g. EKF ``{"validity_ratio": [T]}``) or ``None``.
    """

    means: Float[Array, "T n"]
    covs: Float[Array, "T n n"]
    log_likelihood: Float[Array, ""]
    log_likelihoods: Float[Array, " T"]
    innovations: Float[Array, "T ny"]
    nis: Float[Array, " T"]
    num_observed: Int[Array, " T"]
    rejected: Bool[Array, " T"]
    num_rejected: Int[Array, ""]
    next_mean: Float[Array, " n"]
    next_cov: Float[Array, "n n"]
    diagnostics: dict | None


def prepare_measurements(model: AbstractModel, ys) -> Float[Array, "T ny"]:
    """Validate ``ys`` [T, ny]: NaN entries mean "not measured"; ±inf is rejected."""
    ys = _checks.as_array("ys", ys, (None, model.output_dim), finite=False)
    if _checks.is_concrete(ys) and bool(jnp.any(jnp.isinf(ys))):
        raise ValueError("ys: contains ±inf; use NaN for entries that were not measured")
    return ys


def prepare_inputs(model: AbstractModel, T: int, dtype, us, ts, ds):
    """Validate and default the per-step inputs ``(us [T, m], ts [T], ds [T, p])`` (finite).

    Defaults: zero inputs, ``ts = dt · k``, zero disturbances.  Errors name the argument and shape.
    """
    us = jnp.zeros((T, model.input_dim), dtype) if us is None else _checks.as_array("us", us, (T, model.input_dim))
    ts = model.dt * jnp.arange(T, dtype=dtype) if ts is None else _checks.as_array("ts", ts, (T,))
    p = model.disturbance_dim
    ds = jnp.zeros((T, p), dtype) if ds is None else _checks.as_array("ds", ds, (T, p))
    return us.astype(dtype), ts.astype(dtype), ds.astype(dtype)


def prepare_prior(model: AbstractModel, mean0, cov0):
    """Validate the prior ``N(mean0, cov0)`` over ``x[0]``: shapes (n,), (n, n); finite, symmetric PSD."""
    n = model.state_dim
    mean0 = _checks.as_array("mean0", mean0, (n,))
    cov0 = _checks.as_array("cov0", cov0, (n, n))
    if _checks.is_concrete(cov0):
        _checks.covariance_factor("cov0", cov0, n)  # raises on asymmetric / indefinite input
    return mean0, cov0


def prepare_all(model: AbstractModel, mean0, cov0, ys, us, ts, ds):
    """Validate everything :func:`run_filter` receives; return arrays in one floating dtype.

    Checks run eagerly on concrete values even when called under ``jit`` with closed-over
    constants (``jax.ensure_compile_time_eval``); traced values get the static shape checks only.
    """
    with jax.ensure_compile_time_eval():
        ys = prepare_measurements(model, ys)
        mean0, cov0 = prepare_prior(model, mean0, cov0)
        dtype = jnp.result_type(ys, mean0, cov0)
        us, ts, ds = prepare_inputs(model, ys.shape[0], dtype, us, ts, ds)
    return ys.astype(dtype), mean0.astype(dtype), cov0.astype(dtype), us, ts, ds


def run_filter(
    estimator: AbstractFilter,
    model: AbstractModel,
    mean0: Float[Array, " n"],
    cov0: Float[Array, "n n"],
    ys: Float[Array, "T ny"],
    us: Float[Array, "T m"] | None = None,
    ts: Float[Array, " T"] | None = None,
    ds: Float[Array, "T p"] | None = None,
) -> FilterResult:
    """Filter ``ys`` with ``estimator`` under ``model`` (``lax.scan``; ``jit``/``vmap``/``grad``-compatible).

    At step k the filter updates with ``ys[k]`` (a measurement of ``x[k]``; NaN entries are
    skipped) and then predicts to ``k+1`` with ``us[k]``, ``ts[k]``, ``ds[k]`` — the convention of
    ``model.simulate``.  ``us`` default to zeros, ``ts`` to ``dt · k``, ``ds`` to zeros.
    Returns the filtered means/covariances of ``x[k]`` and the log-likelihood (see
    :class:`FilterResult`).  To batch scenarios, ``jax.vmap`` this function.
    """
    ys, mean0, cov0, us, ts, ds = prepare_all(model, mean0, cov0, ys, us, ts, ds)
    dtype = ys.dtype

    def step(belief, inputs):
        y, u, t, d = inputs
        d = disturbance(model, d)
        posterior, info = estimator.update(model, belief, y, u, t)
        diagnostics = estimator.diagnostics(model, posterior, u, t, d)
        return estimator.predict(model, posterior, u, t, d), (posterior.mean, posterior.cov, info, diagnostics)

    prior = estimator.init(mean0, cov0)
    final, (means, covs, info, diagnostics) = jax.lax.scan(step, prior, (ys, us, ts, ds))
    return FilterResult(
        means=means,
        covs=covs,
        log_likelihood=jnp.sum(info.log_likelihood),
        log_likelihoods=info.log_likelihood,
        innovations=info.innovation,
        nis=info.nis,
        num_observed=info.num_observed,
        rejected=info.rejected,
        num_rejected=jnp.sum(info.rejected.astype(jnp.int32)),
        next_mean=final.mean,
        next_cov=final.cov,
        diagnostics=diagnostics,
    )
