"""Tolerance probability of KPI predictions with a one-sided lower confidence bound.

With errors ``e[i, k] = Ŷ[i, k] − Y[i, k]`` of KPI ``k`` over ``n_k`` logged
samples and tolerance ``τ_k``, the tolerance probability is estimated by

    p̂_k = (1/n_k) Σ_i 1{|e[i, k]| ≤ τ_k}

(NaN errors are missing samples and do not count in ``n_k``).  The number of
hits ``x_k`` is Binomial(``n_k``, ``p_k``); the one-sided lower bound ``L_k``
satisfies ``P(p_k ≥ L_k) ≥ confidence``:

* exact Clopper–Pearson: ``L = Beta⁻¹(1 − confidence; x, n − x + 1)`` (0 when ``x = 0``);
* Wilson score: ``L = (p̂ + z²/2n − z √(p̂(1−p̂)/n + z²/4n²)) / (1 + z²/n)``, ``z = Φ⁻¹(confidence)``.

Counting is JAX (jit/vmap-able); the bounds use scipy's beta and normal
quantiles on the host.  A one-sided bound at ``confidence`` equals the lower end
of the two-sided interval at level ``2·confidence − 1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int
from scipy import stats

from .._checks import as_array

METHODS = ("clopper-pearson", "wilson")


@jax.jit
def tolerance_hits(errors: Float[Array, "n k"], tol: Float[Array, " k"]) -> tuple[Int[Array, " k"], Int[Array, " k"]]:
    """``(hits, counts)`` per KPI: samples with ``|e| ≤ τ`` and finite (non-missing) samples."""
    finite = jnp.isfinite(errors)
    hits = finite & (jnp.abs(jnp.where(finite, errors, 0.0)) <= tol)
    return jnp.sum(hits, axis=0), jnp.sum(finite, axis=0)


def _check_counts(successes, n) -> tuple[np.ndarray, np.ndarray]:
    x, n = np.asarray(successes), np.asarray(n)
    if x.shape != n.shape or np.any(n < 1) or np.any(x < 0) or np.any(x > n) or np.any(x != np.round(x)):
        raise ValueError(f"successes, n: expected integer counts with 0 <= successes <= n and n >= 1, got {x} and {n}")
    return x.astype(np.float64), n.astype(np.float64)


def _check_confidence(confidence: float) -> float:
    if not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence: expected a level in (0, 1), got {confidence}")
    return float(confidence)


def clopper_pearson_lower(successes, n, confidence: float = 0.95) -> np.ndarray:
    """Exact one-sided lower confidence bound of a binomial proportion (``Beta⁻¹(1 − confidence; x, n − x + 1)``)."""
    x, n = _check_counts(successes, n)
    confidence = _check_confidence(confidence)
    with np.errstate(invalid="ignore"):
        lower = stats.beta.ppf(1.0 - confidence, x, n - x + 1.0)
    return np.where(x == 0, 0.0, lower)


def wilson_lower(successes, n, confidence: float = 0.95) -> np.ndarray:
    """One-sided Wilson score lower bound of a binomial proportion (no continuity correction)."""
    x, n = _check_counts(successes, n)
    z = stats.norm.ppf(_check_confidence(confidence))
    p = x / n
    centre = p + z**2 / (2 * n)
    spread = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return np.clip((centre - spread) / (1 + z**2 / n), 0.0, 1.0)


@dataclass(frozen=True)
class ToleranceProbability:
    """Per-KPI tolerance probability ``p_hat`` [k], its one-sided ``lower`` bound, ``hits`` and sample ``counts``."""

    p_hat: np.ndarray
    lower: np.ndarray
    hits: np.ndarray
    counts: np.ndarray
    confidence: float
    method: str


def tolerance_probability(
    errors: Float[Array, "n k"], tol: Float[Array, " k"], confidence: float = 0.95, method: str = "clopper-pearson"
) -> ToleranceProbability:
    """``p̂_k`` and its one-sided lower confidence bound for each KPI column of ``errors`` (see module docstring).

    ``errors``: ``[n, k]`` (``[n]`` is one KPI); NaN entries are missing.
    ``tol``: ``[k]`` positive tolerances (a scalar is broadcast).
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    e = jnp.asarray(errors)
    e = e[:, None] if e.ndim == 1 else e
    e = as_array("errors", e, (None, None), finite=False)
    if np.any(np.isinf(np.asarray(e))):
        raise ValueError("errors: contains inf entries; expected finite errors (NaN marks a missing sample)")
    k = e.shape[1]
    tol = as_array("tol", jnp.broadcast_to(jnp.asarray(tol, e.dtype), (k,)) if np.ndim(tol) == 0 else tol, (k,))
    if np.any(np.asarray(tol) <= 0):
        raise ValueError(f"tol: expected positive tolerances, got {np.asarray(tol)}")
    hits, counts = (np.asarray(a) for a in tolerance_hits(e, tol))
    if np.any(counts == 0):
        raise ValueError(f"errors: KPI column(s) {np.flatnonzero(counts == 0).tolist()} have no finite samples")
    bound = clopper_pearson_lower if method == "clopper-pearson" else wilson_lower
    return ToleranceProbability(
        p_hat=hits / counts,
        lower=bound(hits, counts, confidence),
        hits=hits,
        counts=counts,
        confidence=float(confidence),
        method=method,
    )
