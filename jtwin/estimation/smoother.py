"""Rauch–Tung–Striebel smoothing of a filtered sequence, with the estimator's own time update."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
from jaxtyping import Array, Float

from ..models.base import AbstractModel
from ._linalg import safe_cholesky, symmetrize
from .base import AbstractFilter, disturbance
from .filter import FilterResult, prepare_inputs


class SmootherResult(eqx.Module):
    """Smoothed estimates of ``x[k]`` given all of ``ys``: ``means`` [T, n], ``covs`` [T, n, n];
    ``gains`` [T, n, n] are the smoother gains ``G_k`` (the last one is zero)."""

    means: Float[Array, "T n"]
    covs: Float[Array, "T n n"]
    gains: Float[Array, "T n n"]


def rts_step(mean, cov, pred_mean, pred_cov, cross, smooth_mean_next, smooth_cov_next):
    """One backward RTS step.

    ``G = C (P⁻)⁻¹``, ``m^s = m + G (m^s₊ - m⁻)``, ``P^s = P + G (P^s₊ - P⁻) Gᵀ``.

    ``C = Cov(x[k], x[k+1])`` from the time update (``P Fᵀ`` for KF/EKF, the sigma-point
    cross-covariance for the UKF), ``m⁻, P⁻`` the prediction of ``x[k+1]`` from the filtered ``(m, P)``.
    """
    gain = jsl.cho_solve((safe_cholesky(pred_cov), True), cross.T).T
    mean_s = mean + gain @ (smooth_mean_next - pred_mean)
    cov_s = symmetrize(cov + gain @ (smooth_cov_next - pred_cov) @ gain.T)
    return mean_s, cov_s, gain


def rts_smoother(
    estimator: AbstractFilter,
    model: AbstractModel,
    result: FilterResult,
    us: Float[Array, "T m"] | None = None,
    ts: Float[Array, " T"] | None = None,
    ds: Float[Array, "T p"] | None = None,
) -> SmootherResult:
    """RTS smoother over the output of :func:`run_filter` (same estimator, model and inputs).

    The predictions ``x[k+1] | ys[0..k]`` and cross-covariances are recomputed from the filtered
    beliefs with ``estimator.predict_with_cross`` (inputs ``us[k]``, ``ts[k]``, ``ds[k]``), so
    :class:`KF` gives the exact RTS smoother, :class:`EKF` the extended one and
    :class:`UKF`/:class:`SquareRootUKF` the unscented RTS smoother (Särkkä 2008).
    Backward pass by ``lax.scan``; ``jit``/``vmap``/``grad``-compatible.
    """
    T = result.means.shape[0]
    with jax.ensure_compile_time_eval():
        us, ts, ds = prepare_inputs(model, T, result.means.dtype, us, ts, ds)

    def predicted(mean, cov, u, t, d):
        belief, cross = estimator.predict_with_cross(model, estimator.init(mean, cov), u, t, disturbance(model, d))
        return belief.mean, belief.cov, cross

    # Predictions from steps 0..T-2 (independent of each other: vmapped).
    pred_means, pred_covs, crosses = jax.vmap(predicted)(
        result.means[:-1], result.covs[:-1], us[:-1], ts[:-1], ds[:-1]
    )

    def backward(carry, inputs):
        mean_s, cov_s, gain = rts_step(*inputs, *carry)
        return (mean_s, cov_s), (mean_s, cov_s, gain)

    last = (result.means[-1], result.covs[-1])
    _, (means, covs, gains) = jax.lax.scan(
        backward, last, (result.means[:-1], result.covs[:-1], pred_means, pred_covs, crosses), reverse=True
    )
    n = result.means.shape[1]
    return SmootherResult(
        means=jnp.concatenate([means, last[0][None]]),
        covs=jnp.concatenate([covs, last[1][None]]),
        gains=jnp.concatenate([gains, jnp.zeros((1, n, n), gains.dtype)]),
    )
