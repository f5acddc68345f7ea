"""Parallel-in-time Kalman filter and RTS smoother for linear models (Särkkä & García-Fernández, 2021).

Each step is turned into an element of an associative operator; ``lax.associative_scan``
combines them in O(log T) depth, which is what makes long sequences fast on a GPU.  The
results equal the sequential :class:`KF` / :func:`rts_smoother` up to round-off.
Missing entries (NaN) are masked as in the sequential filter; χ² gating, being a sequential
decision, is not available here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
from jaxtyping import Array, Float

from ..models.linear import LinearModel
from ._linalg import innovation, mask_covariance, measurement_mask, safe_cholesky, symmetrize
from .filter import FilterResult, prepare_all, prepare_inputs
from .smoother import SmootherResult


def _require_linear(model) -> None:
    if not isinstance(model, LinearModel):
        raise ValueError(
            f"model: the parallel Kalman filter needs a jtwin.models.LinearModel, got {type(model).__name__}"
        )


def _filter_element(F, offset, noise, H, R, y):
    """Element ``(A, b, C, η, J)`` of the step ``x_k = F x_{k-1} + offset + N(0, noise)``, ``y_k = H x_k + N(0, R)``.

    With ``S = H Σ Hᵀ + R``, ``K = Σ Hᵀ S⁻¹`` (Σ = ``noise``): ``A = (I - K H) F``,
    ``b = offset + K (y - H offset)``, ``C = (I - K H) Σ``, ``η = Fᵀ Hᵀ S⁻¹ (y - H offset)``,
    ``J = Fᵀ Hᵀ S⁻¹ H F``.  Missing entries of ``y`` are masked (zero rows of ``H``).
    """
    y0, mask = measurement_mask(y)
    H = mask[:, None] * H
    chol = safe_cholesky(H @ noise @ H.T + mask_covariance(R, mask))
    K = jsl.cho_solve((chol, True), H @ noise).T
    residual = y0 - H @ offset
    HF = H @ F
    I_KH = jnp.eye(F.shape[0], dtype=F.dtype) - K @ H
    return (
        I_KH @ F,
        offset + K @ residual,
        symmetrize(I_KH @ noise),
        HF.T @ jsl.cho_solve((chol, True), residual),
        symmetrize(HF.T @ jsl.cho_solve((chol, True), HF)),
    )


def _filter_combine(earlier, later):
    """The associative filtering operator ``(A, b, C, η, J)ᵢ ⊗ (A, b, C, η, J)ⱼ`` (i before j)."""
    A1, b1, C1, eta1, J1 = earlier
    A2, b2, C2, eta2, J2 = later
    eye = jnp.eye(A1.shape[0], dtype=A1.dtype)
    A2_M = jnp.linalg.solve((eye + C1 @ J2).T, A2.T).T  # A2 (I + C1 J2)⁻¹
    A1t_N = jnp.linalg.solve((eye + J2 @ C1).T, A1).T  # A1ᵀ (I + J2 C1)⁻¹
    return (
        A2_M @ A1,
        A2_M @ (b1 + C1 @ eta2) + b2,
        symmetrize(A2_M @ C1 @ A2.T + C2),
        A1t_N @ (eta2 - J2 @ b1) + eta1,
        symmetrize(A1t_N @ J2 @ A1 + J1),
    )


def parallel_kalman_filter(
    model: LinearModel,
    mean0: Float[Array, " n"],
    cov0: Float[Array, "n n"],
    ys: Float[Array, "T ny"],
    us: Float[Array, "T m"] | None = None,
    ds: Float[Array, "T p"] | None = None,
) -> FilterResult:
    """Kalman filter by an associative scan over time; same conventions and output as ``run_filter(KF(), ...)``.

    The prior ``N(mean0, cov0)`` enters as the first element (``F = 0``); step ``k ≥ 1`` uses
    ``offset = B us[k-1] + E ds[k-1]``.  The log-likelihood terms are evaluated afterwards from
    the one-step predictions (vectorised over time).  Time stamps are not needed by a linear model.
    """
    _require_linear(model)
    ys, mean0, cov0, us, _, ds = prepare_all(model, mean0, cov0, ys, us, None, ds)
    dtype = ys.dtype
    T, n = ys.shape[0], model.state_dim
    offsets = us @ model.B.T + ds @ model.E.T  # offsets[k] drives x[k] -> x[k+1]

    Fs = jnp.concatenate([jnp.zeros((1, n, n), dtype), jnp.broadcast_to(model.A, (T - 1, n, n))])
    step_offsets = jnp.concatenate([mean0[None], offsets[:-1]])
    noises = jnp.concatenate([cov0[None], jnp.broadcast_to(model.Q, (T - 1, n, n))])
    elements = jax.vmap(_filter_element, in_axes=(0, 0, 0, None, None, 0))(
        Fs, step_offsets, noises, model.H, model.R, ys
    )
    _, means, covs, _, _ = jax.lax.associative_scan(jax.vmap(_filter_combine), elements)

    pred_means = jnp.concatenate([mean0[None], means[:-1] @ model.A.T + offsets[:-1]])
    pred_covs = jnp.concatenate([cov0[None], model.A @ covs[:-1] @ model.A.T + model.Q])

    def likelihood(mean, cov, y):
        y0, mask = measurement_mask(y)
        chol = safe_cholesky(mask_covariance(model.H @ cov @ model.H.T + model.R, mask))
        return innovation(y0, mask, model.H @ mean, chol, None)

    info = jax.vmap(likelihood)(pred_means, pred_covs, ys)
    return FilterResult(
        means=means,
        covs=covs,
        log_likelihood=jnp.sum(info.log_likelihood),
        log_likelihoods=info.log_likelihood,
        innovations=info.residual,
        nis=info.nis,
        num_observed=info.num_observed,
        rejected=jnp.zeros(T, bool),
        num_rejected=jnp.asarray(0, jnp.int32),
        next_mean=model.A @ means[-1] + offsets[-1],
        next_cov=symmetrize(model.A @ covs[-1] @ model.A.T + model.Q),
        diagnostics=None,
    )


def _smoother_element(mean, cov, F, offset, Q):
    """Element ``(E, g, L)`` of step k.

    ``E = P Fᵀ (F P Fᵀ + Q)⁻¹``, ``g = m - E (F m + offset)``, ``L = P - E F P``.
    """
    chol = safe_cholesky(F @ cov @ F.T + Q)
    E = jsl.cho_solve((chol, True), F @ cov).T
    return E, mean - E @ (F @ mean + offset), symmetrize(cov - E @ F @ cov)


def _smoother_combine(later, earlier):
    """The associative smoothing operator, applied from the end: ``(E_e E_l, E_e g_l + g_e, E_e L_l E_eᵀ + L_e)``."""
    E1, g1, L1 = later
    E2, g2, L2 = earlier
    return E2 @ E1, E2 @ g1 + g2, symmetrize(E2 @ L1 @ E2.T + L2)


def parallel_rts_smoother(
    model: LinearModel,
    result: FilterResult,
    us: Float[Array, "T m"] | None = None,
    ds: Float[Array, "T p"] | None = None,
) -> SmootherResult:
    """RTS smoother by a reverse associative scan over the filtered sequence (equals ``rts_smoother(KF(), ...)``)."""
    _require_linear(model)
    T, n = result.means.shape
    dtype = result.means.dtype
    with jax.ensure_compile_time_eval():
        us, _, ds = prepare_inputs(model, T, dtype, us, None, ds)
    offsets = us @ model.B.T + ds @ model.E.T
    E, g, L = jax.vmap(_smoother_element, in_axes=(0, 0, None, 0, None))(
        result.means[:-1], result.covs[:-1], model.A, offsets[:-1], model.Q
    )
    elements = (
        jnp.concatenate([E, jnp.zeros((1, n, n), dtype)]),
        jnp.concatenate([g, result.means[-1:]]),
        jnp.concatenate([L, result.covs[-1:]]),
    )
    gains, means, covs = jax.lax.associative_scan(jax.vmap(_smoother_combine), elements, reverse=True)
    return SmootherResult(means=means, covs=covs, gains=elements[0])
