"""Two-sample Kolmogorov–Smirnov test: statistic in JAX, p-values and critical values from scipy.

The split is deliberate:

* The **statistic** ``D = sup_x |F̂_a(x) − F̂_b(x)|`` is a pure JAX function
  (:func:`ks_statistic`), so it is ``jit``-compiled and ``vmap``-batched over
  features (:func:`ks_statistics`) and over sliding windows of a log
  (:func:`sliding_ks_statistics`), on CPU or GPU.
* The **p-value** needs the exact null distribution of ``D`` for the given
  sample sizes, which scipy implements; :func:`ks_pvalue` and
  :func:`ks_critical_value` are therefore *host* (NumPy/scipy) functions that
  take statistics already computed on the device.  They are not traceable: call
  them outside ``jit``.

Under H₀ the ECDF difference lives on the lattice ``h / lcm(n₁, n₂)``; the JAX
statistic is computed exactly in integer arithmetic on that lattice, and the host
side rounds it back to ``h``.  Distinct lattice values are evaluated once, so a
batch of thousands of statistics costs only as many scipy calls as it has
distinct values.

Agreement with ``scipy.stats.ks_2samp(a, b, method="auto")`` (two-sided): the
"auto" rule is reproduced — the exact distribution when ``max(n₁, n₂) ≤ 10000``
(falling back, like scipy, to the asymptotic one when the exact recursion
overflows), otherwise ``scipy.stats.kstwo.sf(D, round(n₁n₂/(n₁+n₂)))``.
"""

from __future__ import annotations

import math
import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float
from scipy import stats
from scipy.stats._stats_py import _attempt_exact_2kssamp  # the exact two-sample null distribution

from .._checks import as_array

# scipy.stats.ks_2samp(method="auto") uses the exact distribution up to this sample size.
SCIPY_MAX_AUTO_N = 10000


# ----------------------------------------------------------------------------- JAX statistic


def ks_statistic(a: Float[Array, " n1"], b: Float[Array, " n2"]) -> Float[Array, ""]:
    """Two-sample KS statistic ``D = max_x |F̂_a(x) − F̂_b(x)|`` (pure JAX, jit/vmap-able).

    Both samples are merged and sorted once; the running counts ``c_a, c_b`` of
    each sample give ``n₁n₂ (F̂_a − F̂_b) = c_a n₂ − c_b n₁`` in exact integer
    arithmetic.  With ties, the ECDFs are compared only after the last element of
    each group of equal values (right-continuous ECDFs, as ``searchsorted(...,
    side="right")`` in scipy).  Returns NaN when either sample holds a NaN.
    """
    n1, n2 = a.shape[0], b.shape[0]
    dtype = jnp.result_type(a, b)
    values = jnp.concatenate([a.astype(dtype), b.astype(dtype)])
    from_a = jnp.concatenate([jnp.ones(n1, dtype=int), jnp.zeros(n2, dtype=int)])
    values, from_a = jax.lax.sort((values, from_a), num_keys=1)
    count_a = jnp.cumsum(from_a)
    count_b = jnp.arange(1, n1 + n2 + 1) - count_a
    scaled_diff = jnp.abs(count_a * n2 - count_b * n1)
    end_of_ties = jnp.append(values[1:] != values[:-1], True)
    d = jnp.max(jnp.where(end_of_ties, scaled_diff, 0)).astype(dtype) / (n1 * n2)
    return jnp.where(jnp.any(jnp.isnan(values)), jnp.nan, d)


@jax.jit
def ks_statistics(x_a: Float[Array, "n1 d"], x_b: Float[Array, "n2 d"]) -> Float[Array, " d"]:
    """KS statistic of every feature (column): ``vmap`` of :func:`ks_statistic` over the last axis."""
    return jax.vmap(ks_statistic, in_axes=(1, 1))(x_a, x_b)


@partial(jax.jit, static_argnames=("window", "stride"))
def sliding_ks_statistics(
    x_ref: Float[Array, "n_ref d"], log: Float[Array, "t d"], window: int, stride: int = 1
) -> Float[Array, "w d"]:
    """KS statistics of each feature, reference vs every window ``log[s : s+window]``.

    Windows start at ``s = 0, stride, 2·stride, …`` while ``s + window ≤ t``, so
    there are ``w = (t − window) // stride + 1`` of them; the batch is a ``vmap``
    over window starts (one compiled kernel for the whole log).
    """
    starts = jnp.arange(0, log.shape[0] - window + 1, stride)
    windows = jax.vmap(lambda s: jax.lax.dynamic_slice_in_dim(log, s, window, axis=0))
    return jax.vmap(ks_statistics, in_axes=(None, 0))(x_ref, windows(starts))


# ----------------------------------------------------------------------------- host: scipy distribution


def _check_sizes(n1: int, n2: int) -> tuple[int, int]:
    n1, n2 = int(n1), int(n2)
    if n1 < 1 or n2 < 1:
        raise ValueError(f"sample sizes must be >= 1, got n1={n1}, n2={n2}")
    return n1, n2


def _lcm(n1: int, n2: int) -> int:
    return n1 // math.gcd(n1, n2) * n2


def _effective_n(n1: int, n2: int) -> float:
    return float(np.round(n1 * n2 / (n1 + n2)))


def _sf_lattice(h: int, n1: int, n2: int) -> float:
    """``P(D ≥ h / lcm)`` under H₀, following scipy's method="auto" two-sided rule."""
    lcm = _lcm(n1, n2)
    if h <= 0:
        return 1.0
    d = h / lcm
    if max(n1, n2) <= SCIPY_MAX_AUTO_N:
        success, _, prob = _attempt_exact_2kssamp(n1, n2, math.gcd(n1, n2), d, "two-sided")
        if success:
            return float(np.clip(prob, 0.0, 1.0))
        warnings.warn(
            f"ks_pvalue: exact distribution failed for n1={n1}, n2={n2}; using the asymptotic one (as scipy does)",
            RuntimeWarning,
            stacklevel=3,
        )
    return float(np.clip(stats.kstwo.sf(d, _effective_n(n1, n2)), 0.0, 1.0))


def ks_pvalue(statistic, n1: int, n2: int) -> np.ndarray:
    """Two-sided p-value ``P(D ≥ statistic)`` for samples of sizes ``n1, n2`` (host function).

    ``statistic``: any shape (e.g. the ``[d]`` or ``[w, d]`` output of the JAX
    functions above).  Returns a float64 NumPy array of the same shape, equal to
    ``scipy.stats.ks_2samp(..., method="auto").pvalue``.  Raises ``ValueError``
    for NaN or out-of-range statistics.
    """
    n1, n2 = _check_sizes(n1, n2)
    d = np.asarray(statistic, dtype=np.float64)
    if not np.all(np.isfinite(d)) or np.any((d < 0) | (d > 1 + 1e-12)):
        raise ValueError("statistic: expected values in [0, 1] (NaN means a sample contained NaN)")
    lattice = np.rint(d * _lcm(n1, n2)).astype(np.int64)
    unique, inverse = np.unique(lattice, return_inverse=True)
    pvalues = np.array([_sf_lattice(int(h), n1, n2) for h in unique], dtype=np.float64)
    return pvalues[inverse].reshape(d.shape)


def ks_critical_value(level, n1: int, n2: int) -> np.ndarray:
    """Smallest statistic ``c`` with ``ks_pvalue(c, n1, n2) ≤ level`` (host function).

    Rejecting H₀ when ``D ≥ c`` is then exactly the test "p ≤ level".  In the
    exact regime ``c`` is found by bisection on the lattice ``h / lcm(n₁, n₂)``
    (the exact survival function is non-increasing in ``h``); in the asymptotic
    regime it is ``scipy.stats.kstwo.isf(level, round(n₁n₂/(n₁+n₂)))``.  Returns
    ``inf`` where even ``D = 1`` is not significant at ``level`` (too few samples).
    ``level``: scalar or array in (0, 1).
    """
    n1, n2 = _check_sizes(n1, n2)
    levels = np.asarray(level, dtype=np.float64)
    if np.any(~np.isfinite(levels)) or np.any((levels <= 0) | (levels >= 1)):
        raise ValueError(f"level: expected values in (0, 1), got {level}")
    unique, inverse = np.unique(levels, return_inverse=True)
    crit = np.array([_critical_scalar(float(lv), n1, n2) for lv in unique], dtype=np.float64)
    return crit[inverse].reshape(levels.shape)


def _critical_scalar(level: float, n1: int, n2: int) -> float:
    if max(n1, n2) > SCIPY_MAX_AUTO_N:
        return float(stats.kstwo.isf(level, _effective_n(n1, n2)))
    lcm = _lcm(n1, n2)
    if _sf_lattice(lcm, n1, n2) > level:
        return math.inf
    lo, hi = 0, lcm  # invariant: sf(lo) > level >= sf(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _sf_lattice(mid, n1, n2) <= level:
            hi = mid
        else:
            lo = mid
    return hi / lcm


# ----------------------------------------------------------------------------- convenience


def as_samples(name: str, value) -> jax.Array:
    """Validate a sample array at the edge: non-empty, finite, shape ``(n,)`` or ``(n, d)``."""
    arr = jnp.asarray(value)
    if arr.ndim not in (1, 2) or arr.shape[0] == 0 or arr.size == 0:
        raise ValueError(f"{name}: expected a non-empty array of shape (n,) or (n, d), got {tuple(arr.shape)}")
    return as_array(name, arr, (None,) * arr.ndim)


def as_columns(name: str, value) -> jax.Array:
    """:func:`as_samples`, with a 1-D sample turned into a single column ``(n, 1)``."""
    arr = as_samples(name, value)
    return arr[:, None] if arr.ndim == 1 else arr


def ks_2samp(a: Float[Array, "n1 *d"], b: Float[Array, "n2 *d"]) -> tuple[Float[Array, " *d"], np.ndarray]:
    """Two-sided two-sample KS test, ``(statistic, pvalue)``, of each column.

    ``a``: ``[n1]`` or ``[n1, d]``; ``b``: ``[n2]`` or ``[n2, d]`` (same ``d``).
    The statistic is a JAX array computed by the jitted :func:`ks_statistics`;
    the p-value is a NumPy array from :func:`ks_pvalue` (scipy's distribution).
    Equals ``scipy.stats.ks_2samp(a, b)`` column by column.
    """
    a, b = as_samples("a", a), as_samples("b", b)
    if a.ndim != b.ndim or a.shape[1:] != b.shape[1:]:
        raise ValueError(f"b: expected shape (n2,) + {tuple(a.shape[1:])} to match a, got {tuple(b.shape)}")
    stat = ks_statistics(a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)).reshape(a.shape[1:])
    return stat, ks_pvalue(stat, a.shape[0], b.shape[0])
