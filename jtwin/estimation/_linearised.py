"""Filters that linearise the model at the estimate (KF exactly, EKF by autodiff) and update in Joseph form."""

from __future__ import annotations

import abc

import jax.numpy as jnp
from jaxtyping import Array, Float

from ..models.base import AbstractModel
from ._linalg import gain, innovation, mask_covariance, measurement_mask, safe_cholesky, symmetrize
from .base import AbstractFilter, finish_update
from .belief import Belief, UpdateInfo


class LinearisedFilter(AbstractFilter):
    """Kalman recursions on a local linear model ``x⁺ ≈ f(m) + F (x - m)``, ``y ≈ h(m) + H (x - m)``.

    Predict: ``m⁻ = f(m)``, ``P⁻ = F P Fᵀ + Q``.  Update (Joseph form, PSD for any gain):
    ``S = H P Hᵀ + R``, ``K = P Hᵀ S⁻¹``, ``m⁺ = m + K (y - h(m))``,
    ``P⁺ = (I - K H) P (I - K H)ᵀ + K R Kᵀ`` (symmetrised).  With non-additive noise
    ``h + Φ v`` the measurement noise is ``R = Φ(m) R_v Φ(m)ᵀ``.
    """

    @abc.abstractmethod
    def linearise_transition(
        self, model: AbstractModel, mean, u, t, d
    ) -> tuple[Float[Array, " n"], Float[Array, "n n"]]:
        """``(f(m), F)``."""

    @abc.abstractmethod
    def linearise_observation(
        self, model: AbstractModel, mean, u, t
    ) -> tuple[Float[Array, " ny"], Float[Array, "ny n"]]:
        """``(h(m), H)``."""

    def predict_with_cross(self, model, belief, u, t, d=None):
        f_mean, F = self.linearise_transition(model, belief.mean, u, t, d)
        cross = belief.cov @ F.T
        return Belief(f_mean, symmetrize(F @ cross + model.Q)), cross

    def update(self, model, belief, y, u, t) -> tuple[Belief, UpdateInfo]:
        y0, mask = measurement_mask(y)
        y_pred, H = self.linearise_observation(model, belief.mean, u, t)
        if model.additive_measurement_noise:
            R = model.R
        else:
            phi = model.noise_gain(belief.mean, u, t)
            R = phi @ model.R @ phi.T
        PHt = belief.cov @ H.T
        chol = safe_cholesky(mask_covariance(H @ PHt + R, mask))
        innov = innovation(y0, mask, y_pred, chol, self.gate)
        K = gain(PHt, mask, chol)
        I_KH = jnp.eye(belief.mean.shape[0], dtype=belief.cov.dtype) - K @ H
        cov = symmetrize(I_KH @ belief.cov @ I_KH.T + K @ R @ K.T)
        return finish_update(belief, Belief(belief.mean + K @ innov.residual, cov), innov)
