"""Gaussian chance constraints: covariance propagation and back-offs (pure JAX).

For ``x ~ N(x̄, Σ)`` a linear constraint ``aᵀx ≤ b`` holds with probability
``≥ 1 − ε`` iff ``aᵀx̄ + Φ⁻¹(1 − ε)·√(aᵀΣa) ≤ b`` (``ε ≤ ½``).  The back-off
``Φ⁻¹(1 − ε)·√(aᵀΣa)`` is computed from the estimator's covariance propagated
over the horizon by the error dynamics ``e⁺ = Φe + w``, ``w ~ N(0, W)``:
``Σ_{t+1} = ΦΣ_tΦᵀ + W``.  A joint constraint (all ``r`` rows together with
probability ``≥ 1 − ε``) follows from Boole's inequality with ``ε/r`` per row
(Bonferroni).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float


def _level(eps) -> float:
    eps = float(eps)
    if not 0.0 < eps <= 0.5:
        raise ValueError(f"eps: expected a violation probability in (0, 0.5], got {eps}")
    return eps


def bonferroni(eps: float, k: int) -> float:
    """Per-constraint level ``ε/k`` so that ``k`` constraints hold jointly with probability ``≥ 1 − ε``."""
    if not (isinstance(k, int) and k >= 1):
        raise ValueError(f"k: expected a positive int, got {k!r}")
    return _level(eps) / k


def propagate_covariance(
    Phi: Float[Array, "n n"], cov0: Float[Array, "n n"], noise_cov: Float[Array, "n n"], steps: int
) -> Float[Array, "steps+1 n n"]:
    """``Σ_0 = cov0``, ``Σ_{t+1} = ΦΣ_tΦᵀ + noise_cov`` for ``t < steps``; returns ``Σ_0..Σ_steps``."""

    def step(S, _):
        S = Phi @ S @ Phi.T + noise_cov
        S = 0.5 * (S + S.T)
        return S, S

    _, rest = jax.lax.scan(step, cov0, None, length=steps)
    return jnp.concatenate([cov0[None], rest])


def gaussian_backoff(
    H: Float[Array, "r n"], covs: Float[Array, "T n n"], eps: float
) -> Float[Array, "T r"]:
    """Back-offs ``Φ⁻¹(1 − ε)·√(H_j Σ_t H_jᵀ)`` [T, r] for each row ``H_j`` and covariance ``Σ_t``."""
    z = jax.scipy.special.ndtri(jnp.asarray(1.0 - _level(eps), covs.dtype))
    var = jnp.einsum("rn,tnk,rk->tr", H, covs, H)
    return z * jnp.sqrt(jnp.maximum(var, 0.0))
