"""Square-root UKF: the UKF propagating Cholesky factors (QR and rank-one updates), never a covariance."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._linalg import innovation, measurement_mask, safe_cholesky
from .base import finish_update
from .belief import SqrtBelief
from .unscented import UnscentedBase


def qr_factor(compound: Float[Array, "n k"]) -> Float[Array, "n n"]:
    """Lower-triangular ``L`` with ``L Lᵀ = A Aᵀ`` (``k ≥ n``) from a QR of ``Aᵀ``.

    The diagonal is made positive and floored at ``n ε max|L_ii|`` (a round-off-sized
    perturbation) so that triangular solves with a rank-deficient factor stay finite.
    """
    r = jnp.linalg.qr(compound.T, mode="r")
    diag = jnp.abs(jnp.diagonal(r))
    signs = jnp.where(jnp.diagonal(r) < 0, -1.0, 1.0).astype(r.dtype)
    low = r.T * signs[None, :]
    eps, tiny = jnp.finfo(r.dtype).eps, jnp.finfo(r.dtype).tiny
    floor = low.shape[0] * eps * jax.lax.stop_gradient(jnp.max(diag)) + tiny
    return low + jnp.diag(jnp.maximum(diag, floor) - diag)


def cholesky_update(factor: Float[Array, "n n"], x: Float[Array, " n"], sign: float) -> Float[Array, "n n"]:
    """Rank-one update of a lower Cholesky factor: ``L' L'ᵀ = L Lᵀ + sign · x xᵀ`` (``sign`` = ±1), O(n²).

    A downdate (``sign = -1``) that would make the matrix indefinite is clamped (the pivot
    is floored at ``ε |L_kk|``), so the factor stays finite and triangular.
    """
    n = factor.shape[0]
    rows = jnp.arange(n)
    eps = jnp.finfo(factor.dtype).eps
    tiny = jnp.finfo(factor.dtype).tiny

    def column(k, carry):
        low, x = carry
        pivot = low[k, k]
        pivot_safe = jnp.where(jnp.abs(pivot) > tiny, pivot, tiny)
        r = jnp.sqrt(jnp.maximum(pivot**2 + sign * x[k] ** 2, (eps * pivot) ** 2 + tiny))
        c, s = r / pivot_safe, x[k] / pivot_safe
        below = rows > k
        col = jnp.where(below, (low[:, k] + sign * s * x) / c, low[:, k]).at[k].set(r)
        x = jnp.where(below, c * x - s * col, x)
        return low.at[:, k].set(col), x

    return jax.lax.fori_loop(0, n, column, (factor, x))[0]


def weighted_factor(deviations: Float[Array, "s k"], wc: Float[Array, " s"], extra: Float[Array, "k j"], wc0: float):
    """Lower factor of ``Σ Wcᵢ dᵢ dᵢᵀ + extra extraᵀ`` from sigma-point deviations ``d`` [2N+1, k].

    Columns with non-negative weight enter one QR; a negative centre weight ``Wc₀`` is applied
    afterwards as a Cholesky downdate with ``√|Wc₀| d₀``.
    """
    root = jnp.sqrt(jnp.abs(wc))[:, None] * deviations
    first = 0 if wc0 >= 0 else 1
    low = qr_factor(jnp.concatenate([root[first:].T, extra], axis=1))
    return low if wc0 >= 0 else cholesky_update(low, root[0], -1.0)


class SquareRootUKF(UnscentedBase):
    """Square-root unscented Kalman filter (van der Merwe & Wan, 2001); beliefs are :class:`SqrtBelief`.

    Same sigma points, weights and options as :class:`UKF` (``alpha``, ``beta``, ``kappa``,
    ``augment_process``, ``gate``; non-additive measurement noise by augmentation), so both give
    the same estimates where the UKF is well conditioned.  The predicted factor is the QR of
    ``[√Wcᵢ (f(Xᵢ) - m⁻), chol(Q)]`` (a negative ``Wc₀`` as a downdate), the innovation factor
    likewise with ``chol(R)``, and the posterior factor is ``L⁻`` downdated by the columns of
    ``K S_y``.  The covariance is PSD by construction, which keeps the filter finite where the
    UKF's covariance loses positive definiteness (ill-conditioned problems, negative ``Wc₀``).
    ``run_filter`` reports ``covs = L Lᵀ``.
    """

    def init(self, mean: Float[Array, " n"], cov: Float[Array, "n n"]) -> SqrtBelief:
        return SqrtBelief(mean, safe_cholesky(cov))

    def predict_with_cross(self, model, belief: SqrtBelief, u, t, d=None):
        n = belief.mean.shape[0]
        fn, mean, factor = self.transition_fn(model, belief.mean, belief.chol, u, t, d)
        wm, wc, Y, pred_mean = self.propagate(fn, mean, factor, belief.chol.dtype)
        dY = Y - pred_mean
        noise = jnp.zeros((n, 0), dY.dtype) if self.augment_process else jnp.tril(model.Q_factor)
        wc0 = float(self.weights(mean.shape[0])[1][0])
        chol = weighted_factor(dY, wc, noise, wc0)
        return SqrtBelief(pred_mean, chol), self.cross_covariance(factor, Y, n)

    def update(self, model, belief: SqrtBelief, y, u, t):
        n = belief.mean.shape[0]
        y0, mask = measurement_mask(y)
        fn, mean, factor = self.observation_fn(model, belief.mean, belief.chol, u, t)
        wm, wc, Z, y_pred = self.propagate(fn, mean, factor, belief.chol.dtype)
        dZ = (Z - y_pred) * mask[None, :]
        noise = jnp.diag(1.0 - mask)
        if model.additive_measurement_noise:
            noise = jnp.concatenate([mask[:, None] * jnp.tril(model.R_factor), noise], axis=1)
        wc0 = float(self.weights(mean.shape[0])[1][0])
        chol_s = weighted_factor(dZ, wc, noise, wc0)
        innov = innovation(y0, mask, y_pred, chol_s, self.gate)
        cross = self.cross_covariance(factor, Z * mask[None, :], n)
        # K = C S⁻¹ = C S_y⁻ᵀ S_y⁻¹; U = K S_y = C S_y⁻ᵀ gives K S Kᵀ = U Uᵀ.
        U = jax.scipy.linalg.solve_triangular(chol_s, cross.T, lower=True).T
        K = jax.scipy.linalg.solve_triangular(chol_s.T, U.T, lower=False).T
        chol, _ = jax.lax.scan(lambda low, col: (cholesky_update(low, col, -1.0), None), belief.chol, U.T)
        posterior = SqrtBelief(belief.mean + K @ innov.residual, chol)
        return finish_update(belief, posterior, innov)
