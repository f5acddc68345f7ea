"""Epistemic (parameter) uncertainty: confidence sets ``Θ_δ`` from data, and their vertices.

For a linear-in-parameters model ``y_k = φ_kᵀθ + v_k``, ``v_k ~ N(0, σ²)`` i.i.d.,
least squares gives ``θ̂ = (ΦᵀΦ)⁻¹Φᵀy`` with ``θ̂ − θ ~ N(0, σ²(ΦᵀΦ)⁻¹)``, so

    Θ_δ = {θ : (θ − θ̂)ᵀ ΦᵀΦ (θ − θ̂) ≤ σ²·χ²_p(1 − δ)}          (σ known)
    Θ_δ = {θ : (θ − θ̂)ᵀ ΦᵀΦ (θ − θ̂) ≤ s²·p·F_{p,T−p}(1 − δ)}    (σ estimated by s²)

contains the true θ with probability ``1 − δ`` (exact under the Gaussian
model).  Its volume shrinks like ``T^{-p/2}`` as logs grow.  A robust controller
needs finitely many models: the vertices of the bounding box
``θ̂_i ± √(shape_ii)`` (exact projection of the ellipsoid on each axis) or
samples of the ellipsoid (scenario approach).
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
from scipy import stats


@dataclasses.dataclass(frozen=True, eq=False)
class ConfidenceEllipsoid:
    """``Θ = {θ : (θ − center)ᵀ shape⁻¹ (θ − center) ≤ 1}`` (``center`` [p], ``shape`` [p, p] ≻ 0)."""

    center: np.ndarray
    shape: np.ndarray

    def box(self) -> tuple[np.ndarray, np.ndarray]:
        """Smallest enclosing box ``center ± √diag(shape)`` (lower, upper)."""
        half = np.sqrt(np.diag(self.shape))
        return self.center - half, self.center + half

    def contains(self, theta) -> np.ndarray:
        """Membership of points ``theta`` [..., p]."""
        d = np.asarray(theta, dtype=float) - self.center
        return np.einsum("...i,ij,...j->...", d, np.linalg.inv(self.shape), d) <= 1.0 + 1e-12

    def samples(self, rng: np.random.Generator, k: int, boundary: bool = False) -> np.ndarray:
        """``k`` points [k, p] uniform in the ellipsoid (or on its boundary when ``boundary``)."""
        p = self.center.size
        g = rng.standard_normal((k, p))
        g /= np.linalg.norm(g, axis=1, keepdims=True)
        radius = np.ones((k, 1)) if boundary else rng.random((k, 1)) ** (1.0 / p)
        return self.center + (radius * g) @ np.linalg.cholesky(self.shape).T


def box_vertices(lo, hi) -> np.ndarray:
    """The ``2^p`` vertices [2^p, p] of the box ``[lo, hi]``."""
    lo, hi = np.atleast_1d(np.asarray(lo, float)), np.atleast_1d(np.asarray(hi, float))
    if lo.shape != hi.shape or lo.ndim != 1 or np.any(lo > hi):
        raise ValueError(f"lo, hi: expected two vectors of one shape with lo <= hi, got {lo.shape}, {hi.shape}")
    return np.array([np.where(bits, hi, lo) for bits in itertools.product([False, True], repeat=lo.size)])


def least_squares_confidence(regressors, targets, delta: float = 0.05, noise_std: float | None = None) -> ConfidenceEllipsoid:
    """Confidence ellipsoid ``Θ_δ`` (module docstring) from regressors [T, p] and targets [T].

    ``noise_std``: the known noise standard deviation σ; ``None`` estimates it
    from the residuals (needs ``T > p``) and uses the F quantile.
    """
    X = np.asarray(regressors, dtype=float)
    y = np.asarray(targets, dtype=float)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"regressors, targets: expected shapes (T, p) and (T,), got {X.shape} and {y.shape}")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
        raise ValueError("regressors, targets: contain NaN or inf entries")
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta: expected a level in (0, 1), got {delta}")
    T, p = X.shape
    gram = X.T @ X
    if np.linalg.matrix_rank(gram) < p:
        raise ValueError("regressors: rank deficient; the data do not identify all parameters")
    theta = np.linalg.solve(gram, X.T @ y)
    if noise_std is None:
        if T <= p:
            raise ValueError(f"targets: need more samples than parameters (T={T}, p={p}) to estimate the noise")
        s2 = float(np.sum((y - X @ theta) ** 2) / (T - p))
        radius2 = s2 * p * stats.f.ppf(1.0 - delta, p, T - p)
    else:
        if not noise_std > 0:
            raise ValueError(f"noise_std: expected a positive number, got {noise_std}")
        radius2 = noise_std**2 * stats.chi2.ppf(1.0 - delta, p)
    return ConfidenceEllipsoid(theta, radius2 * np.linalg.inv(gram))
