"""UKF: the scaled unscented Kalman filter (sigma points propagated with ``vmap``), with noise augmentation."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from jaxtyping import Array, Float

from ._linalg import (
    innovation_from_whitened,
    mask_covariance,
    measurement_mask,
    safe_cholesky,
    symmetrize,
    whitened_cross_covariance,
)
from .base import AbstractFilter, finish_update, validate_gate
from .belief import Belief
from .staging import staged

#: Centre weights below this trigger a warning: the covariance estimate may lose positive definiteness.
W0_WARNING_THRESHOLD = -1.0


def unscented_weights(n: int, alpha: float, beta: float, kappa: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Scaled-unscented-transform weights ``(Wm [2n+1], Wc [2n+1], γ)`` for dimension ``n``.

    ``λ = α² (n + κ) - n``, ``γ = √(n + λ)``; ``Wm₀ = λ/(n+λ)``, ``Wc₀ = Wm₀ + 1 - α² + β``,
    ``Wmᵢ = Wcᵢ = 1 / (2(n+λ))`` (van der Merwe's scaled sigma points, as filterpy's
    ``MerweScaledSigmaPoints``).  Warns when ``Wm₀`` is strongly negative (< -1), a setting
    (small α, e.g. filterpy's common α = 0.1 or 1e-3) under which the UKF covariance can lose
    positive definiteness; the square-root UKF or α closer to 1 avoids it.
    """
    spread = alpha**2 * (n + kappa)  # n + λ
    if not spread > 0:
        raise ValueError(f"alpha, kappa: need alpha² (n + kappa) > 0, got alpha={alpha}, kappa={kappa}, n={n}")
    lam = spread - n
    wm = np.full(2 * n + 1, 0.5 / spread)
    wc = wm.copy()
    wm[0] = lam / spread
    wc[0] = wm[0] + 1.0 - alpha**2 + beta
    if wm[0] < W0_WARNING_THRESHOLD:
        warnings.warn(
            f"UKF centre weight W0 = {wm[0]:.3g} is strongly negative (alpha={alpha}, kappa={kappa}, n={n}); "
            "the covariance may lose positive definiteness. Prefer alpha close to 1 or SquareRootUKF.",
            stacklevel=3,
        )
    return wm, wc, float(np.sqrt(spread))


def sigma_points(mean: Float[Array, " n"], factor: Float[Array, "n n"], gamma: float) -> Float[Array, "s n"]:
    """``[m, m + γ Lᵢ, m - γ Lᵢ]`` (rows; ``Lᵢ`` the columns of the square root ``L``), shape [2n+1, n]."""
    spread = gamma * factor.T
    return jnp.concatenate([mean[None], mean + spread, mean - spread])


class UnscentedBase(AbstractFilter):
    """Sigma-point configuration shared by :class:`UKF` and :class:`SquareRootUKF`."""

    alpha: float = eqx.field(static=True, default=1.0)
    beta: float = eqx.field(static=True, default=2.0)
    kappa: float = eqx.field(static=True, default=0.0)
    augment_process: bool = eqx.field(static=True, default=False)
    gate: float | None = eqx.field(static=True, default=None)

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 2.0,
        kappa: float = 0.0,
        *,
        augment_process: bool = False,
        gate: float | None = None,
    ):
        for name, value in (("alpha", alpha), ("beta", beta), ("kappa", kappa)):
            if not np.isfinite(value):
                raise ValueError(f"{name}: expected a finite number, got {value!r}")
        if not alpha > 0:
            raise ValueError(f"alpha: expected a positive spread parameter, got {alpha!r}")
        self.alpha, self.beta, self.kappa = float(alpha), float(beta), float(kappa)
        self.augment_process = bool(augment_process)
        self.gate = validate_gate(gate)

    def weights(self, n: int) -> tuple[np.ndarray, np.ndarray, float]:
        """``(Wm, Wc, γ)`` for an ``n``-dimensional (possibly augmented) state; see :func:`unscented_weights`."""
        return unscented_weights(n, self.alpha, self.beta, self.kappa)

    def propagate(self, fn: Callable, mean, factor, dtype):
        """Push the sigma points of ``N(mean, factor factorᵀ)`` through ``fn`` (vmapped, then
        :func:`~jtwin.estimation.staging.staged`, so a user function's stencils are evaluated once).

        Returns ``(Wm, Wc, Y, y_mean)``: weights, images ``Y = fn(X)`` [2N+1, ny] and their weighted mean.
        """
        wm, wc, gamma = self.weights(mean.shape[0])
        wm, wc = jnp.asarray(wm, dtype), jnp.asarray(wc, dtype)
        images = staged(jax.vmap(fn))(sigma_points(mean, factor, gamma))
        return wm, wc, images, wm @ images

    def cross_covariance(
        self, factor: Float[Array, "N N"], images: Float[Array, "s ny"], n: int
    ) -> Float[Array, "n ny"]:
        """``Σᵢ Wcᵢ (Xᵢ - m)[:n] (Yᵢ - ȳ)ᵀ`` [n, ny] for the sigma points of ``propagate``.

        The points are symmetric, ``Xᵢ - m = ±γ Fᵢ`` (``Fᵢ`` the columns of the factor) with the
        common weight ``Wc₁`` for ``i ≥ 1``, so the sum is ``γ Wc₁ F[:n] (Y₊ - Y₋)`` (``Y±`` the
        images of ``m ± γ Fᵢ``): one ``n × N × ny`` product, and ``ȳ`` cancels.
        """
        N = factor.shape[1]
        _, wc, gamma = self.weights(N)
        return (gamma * wc[1]) * (factor[:n] @ (images[1 : N + 1] - images[N + 1 :]))

    def transition_fn(self, model, belief_mean, factor, u, t, d):
        """``(fn, mean, factor)``: the function whose sigma points give the predicted belief.

        Plain: ``f(x)`` over ``N(m, P)`` (Q added afterwards).  With ``augment_process``:
        ``f(x) + w`` over the augmented ``N([m; 0], blkdiag(P, Q))``.
        """
        n = belief_mean.shape[0]
        if not self.augment_process:
            return (lambda x: model.transition(x, u, t, d)), belief_mean, factor
        mean = jnp.concatenate([belief_mean, jnp.zeros(n, belief_mean.dtype)])
        fn = lambda z: model.transition(z[:n], u, t, d) + z[n:]  # noqa: E731
        return fn, mean, jsl.block_diag(factor, jnp.tril(model.Q_factor))

    def observation_fn(self, model, belief_mean, factor, u, t):
        """``(fn, mean, factor)`` for the measurement: ``h(x)`` (R added afterwards) for additive noise,
        ``h(x) + Φ(x) v`` over ``N([m; 0], blkdiag(P, R))`` for non-additive noise (augmentation)."""
        if model.additive_measurement_noise:
            return (lambda x: model.observe(x, u, t)), belief_mean, factor
        n, nv = belief_mean.shape[0], model.R_factor.shape[0]
        mean = jnp.concatenate([belief_mean, jnp.zeros(nv, belief_mean.dtype)])
        fn = lambda z: model.observe_noisy(z[:n], u, t, z[n:])  # noqa: E731
        return fn, mean, jsl.block_diag(factor, jnp.tril(model.R_factor))


class UKF(UnscentedBase):
    """Unscented Kalman filter with scaled sigma points (``alpha``, ``beta``, ``kappa``).

    Predict: sigma points ``X`` of ``N(m, P)`` through ``f``: ``m⁻ = Σ Wmᵢ f(Xᵢ)``,
    ``P⁻ = Σ Wcᵢ (f(Xᵢ) - m⁻)(·)ᵀ + Q``.  Update: sigma points are *redrawn* from ``N(m⁻, P⁻)``
    (so the UKF equals the KF on linear models), ``ŷ = Σ Wmᵢ h(Xᵢ)``, ``S = Σ Wcᵢ (h(Xᵢ)-ŷ)(·)ᵀ + R``,
    ``C = Σ Wcᵢ (Xᵢ-m⁻)(h(Xᵢ)-ŷ)ᵀ``, ``K = C S⁻¹``, ``m⁺ = m⁻ + K e``, ``P⁺ = P⁻ - K S Kᵀ``.
    With ``S = L Lᵀ``, ``KL = C L⁻ᵀ`` and ``w = L⁻¹ e``: ``K e = KL w``, ``K S Kᵀ = KL KLᵀ``,
    ``NIS = wᵀ w``; ``L`` and ``KL`` come from one Cholesky factorisation of the joint covariance
    of ``(y, x)`` (:func:`~jtwin.estimation._linalg.whitened_cross_covariance`).
    Non-additive measurement noise ``h(x) + Φ(x) v`` is handled by augmenting the state with
    ``v``; ``augment_process=True`` likewise treats the process noise as an augmented state.
    Defaults ``alpha=1, beta=2, kappa=0`` keep the centre weight non-negative.
    """

    def predict_with_cross(self, model, belief, u, t, d=None):
        n = belief.mean.shape[0]
        fn, mean, factor = self.transition_fn(model, belief.mean, safe_cholesky(belief.cov), u, t, d)
        wm, wc, Y, pred_mean = self.propagate(fn, mean, factor, belief.cov.dtype)
        dY = Y - pred_mean
        cov = dY.T @ (wc[:, None] * dY)
        if not self.augment_process:
            cov = cov + model.Q
        return Belief(pred_mean, symmetrize(cov)), self.cross_covariance(factor, Y, n)

    def update(self, model, belief, y, u, t):
        n = belief.mean.shape[0]
        y0, mask = measurement_mask(y)
        fn, mean, factor = self.observation_fn(model, belief.mean, safe_cholesky(belief.cov), u, t)
        wm, wc, Z, y_pred = self.propagate(fn, mean, factor, belief.cov.dtype)
        dZ = Z - y_pred
        S = dZ.T @ (wc[:, None] * dZ)
        if model.additive_measurement_noise:
            S = S + model.R
        cross = self.cross_covariance(factor, Z, n) * mask[None, :]
        chol, KL = whitened_cross_covariance(mask_covariance(S, mask), cross, belief.cov)
        residual = mask * (y0 - y_pred)
        w = jsl.solve_triangular(chol, residual, lower=True)
        innov = innovation_from_whitened(residual, w, mask, chol, self.gate)
        posterior = Belief(belief.mean + KL @ w, symmetrize(belief.cov - KL @ KL.T))
        return finish_update(belief, posterior, innov)
