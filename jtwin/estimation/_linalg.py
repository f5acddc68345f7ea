"""Small linear-algebra kernels shared by the filters: symmetrisation, guarded Cholesky, masked innovations.

Missing data are handled by *masking*, never by NaN arithmetic: a NaN entry of ``y`` is
replaced by 0 and its row/column of the innovation covariance by the identity, so the
entry contributes nothing to the gain, the quadratic form or the log-determinant, and
gradients stay finite (no NaN ever enters a computation that is later discarded).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
from jax.scipy.stats import chi2
from jaxtyping import Array, Bool, Float


def symmetrize(a: Float[Array, "n n"]) -> Float[Array, "n n"]:
    """``(A + Aᵀ) / 2``."""
    return 0.5 * (a + a.T)


def cov_from_factor(factor: Float[Array, "n k"]) -> Float[Array, "n n"]:
    """``F Fᵀ`` for a (lower-triangular or rectangular) square-root factor ``F``."""
    return factor @ factor.T


def _gershgorin_shift(a: Float[Array, "n n"]) -> Float[Array, ""]:
    """A diagonal shift ``s ≥ 0`` that provably makes ``A + s I`` positive definite (Gershgorin discs).

    ``λ_min(A) ≥ min_i (A_ii - Σ_{j≠i} |A_ij|)``; a relative floor ``n ε max|A_ii|`` is added so a
    singular PSD matrix (zero pivot) becomes strictly positive definite.
    """
    diag = jnp.diagonal(a)
    radius = jnp.sum(jnp.abs(a), axis=1) - jnp.abs(diag)
    eps = jnp.finfo(a.dtype).eps
    floor = a.shape[0] * eps * jnp.maximum(jnp.max(jnp.abs(diag)), jnp.finfo(a.dtype).tiny / eps)
    return jnp.maximum(-jnp.min(diag - radius), 0.0) + floor


def _factorised(chol: Float[Array, "n n"]) -> Bool[Array, ""]:
    """Whether ``jnp.linalg.cholesky`` succeeded: on failure it returns all NaN, and a NaN or ±inf
    input entry reaches its row's pivot, so a finite diagonal is enough to check."""
    return jnp.isfinite(jnp.sum(jnp.diagonal(chol)))


@jax.custom_jvp
def safe_cholesky(a: Float[Array, "n n"]) -> Float[Array, "n n"]:
    """Lower Cholesky factor of the symmetric part of ``A``, repaired when ``A`` is not numerically PD.

    One factorisation in the common case: only if it fails (a NaN pivot: ``A`` singular or
    indefinite from round-off) is ``A`` refactorised with the smallest Gershgorin shift that
    guarantees positive definiteness added to the diagonal (``lax.cond``, so the repair costs
    nothing when it is not needed).  The derivative is that of ``cholesky(A + s I)`` with the
    shift ``s`` held constant (:func:`_cholesky_jvp`), so neither branch can put NaN into
    gradients.  On well-conditioned input the result is exactly ``cholesky(A)``.
    """
    a = symmetrize(a)
    chol = jnp.linalg.cholesky(a)
    failed = ~_factorised(chol)
    eye = jnp.eye(a.shape[0], dtype=a.dtype)
    return jax.lax.cond(failed, lambda: jnp.linalg.cholesky(a + _gershgorin_shift(a) * eye), lambda: chol)


@safe_cholesky.defjvp
def _cholesky_jvp(primals, tangents):
    """The derivative of ``cholesky(A + s I)`` at the returned factor, the shift ``s`` held constant."""
    (a,), (da,) = primals, tangents
    chol = safe_cholesky(a)
    return chol, _cholesky_tangent(chol, da)


def _cholesky_tangent(chol: Float[Array, "n n"], da: Float[Array, "n n"]) -> Float[Array, "n n"]:
    """``dL = L Φ(L⁻¹ dA L⁻ᵀ)`` (``Φ``: lower triangle, halved diagonal) for the symmetric part of ``dA``."""
    left = jsl.solve_triangular(chol, symmetrize(da), lower=True)  # L⁻¹ dA
    inner = jsl.solve_triangular(chol, left.T, lower=True)  # L⁻¹ dA L⁻ᵀ (symmetric)
    return chol @ (jnp.tril(inner) - 0.5 * jnp.diag(jnp.diagonal(inner)))


@jax.custom_jvp
def whitened_cross_covariance(
    s: Float[Array, "ny ny"], cross: Float[Array, "n ny"], cov: Float[Array, "n n"]
) -> tuple[Float[Array, "ny ny"], Float[Array, "n ny"]]:
    """``(L, C L⁻ᵀ)`` with ``L = safe_cholesky(S)``: the factor of the innovation covariance and the
    whitened cross-covariance ``K L`` (``K = C S⁻¹``), from which ``K S Kᵀ = (C L⁻ᵀ)(C L⁻ᵀ)ᵀ``.

    Computed by one Cholesky factorisation of the joint covariance ``[[S, Cᵀ], [C, P]]`` of
    ``(y, x)``, whose factor is ``[[L, 0], [C L⁻ᵀ, chol(P - C S⁻¹ Cᵀ)]]``: no triangular solve
    with a many-column right-hand side (LAPACK ``trsm``, which OpenBLAS runs multithreaded, very
    slowly on a loaded machine, for a 40 × 40 system).  Where the joint matrix is not numerically
    positive definite (the posterior covariance ``P - C S⁻¹ Cᵀ`` cancels below round-off), falls
    back to ``safe_cholesky(S)`` and a triangular solve (``lax.cond``).  Derivatives are those of
    the formulas (:func:`_whitened_cross_jvp`), whichever branch ran.
    """
    ny = s.shape[0]
    joint = jnp.linalg.cholesky(symmetrize(jnp.block([[s, cross.T], [cross, cov]])))

    def separate():
        chol = safe_cholesky(s)
        return chol, jsl.solve_triangular(chol, cross.T, lower=True).T

    return jax.lax.cond(_factorised(joint), lambda: (joint[:ny, :ny], joint[ny:, :ny]), separate)


@whitened_cross_covariance.defjvp
def _whitened_cross_jvp(primals, tangents):
    """``dL`` as in :func:`_cholesky_jvp`; ``d(C L⁻ᵀ) = (dC - C L⁻ᵀ dLᵀ) L⁻ᵀ``."""
    s, cross, cov = primals
    ds, dcross, _ = tangents
    chol, whitened = whitened_cross_covariance(s, cross, cov)
    dchol = _cholesky_tangent(chol, ds)
    dwhitened = jsl.solve_triangular(chol, (dcross - whitened @ dchol.T).T, lower=True).T
    return (chol, whitened), (dchol, dwhitened)


def measurement_mask(y: Float[Array, " ny"]) -> tuple[Float[Array, " ny"], Float[Array, " ny"]]:
    """``(y0, mask)``: ``mask`` is 1.0 where ``y`` is finite (measured), 0.0 where NaN (missing); ``y0`` has 0 there."""
    observed = jnp.isfinite(y)
    return jnp.where(observed, y, 0.0), observed.astype(y.dtype)


def mask_covariance(s: Float[Array, "ny ny"], mask: Float[Array, " ny"]) -> Float[Array, "ny ny"]:
    """``M S M + (I - M)`` with ``M = diag(mask)``: the observed block of ``S`` and the identity elsewhere."""
    return mask[:, None] * s * mask[None, :] + jnp.diag(1.0 - mask)


class Innovation(eqx.Module):
    """A masked innovation and its statistics (internal).

    ``residual`` [ny] is ``M (y - ŷ)``; ``chol`` is the lower factor of ``M S M + (I - M)``.
    """

    residual: Float[Array, " ny"]
    chol: Float[Array, "ny ny"]
    log_likelihood: Float[Array, ""]
    nis: Float[Array, ""]
    num_observed: Array
    accepted: Bool[Array, ""]


def innovation(
    y0: Float[Array, " ny"],
    mask: Float[Array, " ny"],
    y_pred: Float[Array, " ny"],
    chol: Float[Array, "ny ny"],
    gate: float | None,
) -> Innovation:
    """Masked innovation statistics from the factor ``chol`` of the masked innovation covariance.

    ``e = M (y - ŷ)``; see :func:`innovation_from_whitened` (``w = L⁻¹ e``).
    """
    residual = mask * (y0 - y_pred)
    return innovation_from_whitened(residual, jsl.solve_triangular(chol, residual, lower=True), mask, chol, gate)


def innovation_from_whitened(
    residual: Float[Array, " ny"],
    whitened: Float[Array, " ny"],
    mask: Float[Array, " ny"],
    chol: Float[Array, "ny ny"],
    gate: float | None,
) -> Innovation:
    """Innovation statistics from the masked residual ``e`` and its whitened form ``w = L⁻¹ e``.

    ``NIS = eᵀ S⁻¹ e = wᵀ w``, ``log p(y_obs) = -½ (NIS + log det S_obs + k log 2π)`` with
    ``k = Σ mask``.  With a gate ``α``, the measurement is accepted unless ``P(χ²_k > NIS) < α``.
    """
    nis = whitened @ whitened
    logdet = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))
    k = jnp.sum(mask)
    log_likelihood = -0.5 * (nis + logdet + k * jnp.log(2.0 * jnp.pi).astype(residual.dtype))
    if gate is None:
        accepted = jnp.asarray(True)
    else:
        p_value = chi2.sf(jax.lax.stop_gradient(nis), jnp.maximum(k, 1.0))
        accepted = (k == 0) | (p_value >= gate)
    return Innovation(residual, chol, log_likelihood, nis, k.astype(jnp.int32), accepted)


def gain(cross: Float[Array, "n ny"], mask: Float[Array, " ny"], chol: Float[Array, "ny ny"]) -> Float[Array, "n ny"]:
    """Kalman gain ``K = C M S_m⁻¹`` (zero columns for missing entries) by two triangular solves."""
    return jsl.cho_solve((chol, True), (cross * mask[None, :]).T).T
