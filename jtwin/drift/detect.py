"""Concept-drift decision: KS tests on inputs and residuals, family-wise error control, retrain vs redesign.

Covariate shift (``P(x)`` changes, ``P(y | x)`` does not) calls for **retraining**
the twin's model; real concept drift (``P(y | x)`` changes, visible in the model
residuals ``r = y − f(x)``) calls for **redesign**.  With ``d_x`` input features
and ``d_r`` residual channels there are ``k = d_x + d_r`` KS tests; the
family-wise error rate is held at ``alpha`` by Bonferroni (every test at
``alpha / k``) or Holm's step-down procedure (uniformly more powerful, same
guarantee).  The decision is

* ``"redesign"`` if any residual test rejects,
* ``"retrain"`` if some input test rejects and no residual test does,
* ``"none"`` otherwise.

On large samples the KS test flags even negligible shifts, so each test also
reports effect sizes — the statistic ``D`` itself (a distribution-level effect
size in [0, 1]) and the standardised mean difference — and ``min_effect`` can
require ``D ≥ min_effect`` before a rejection counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .ks import as_columns, ks_critical_value, ks_pvalue, ks_statistics

CORRECTIONS = ("bonferroni", "holm")
DECISIONS = ("none", "retrain", "redesign")


def multiple_test(pvalues, alpha: float = 0.05, correction: str = "bonferroni") -> tuple[np.ndarray, np.ndarray]:
    """Family-wise error control over the last axis of ``pvalues`` (host function, batched over leading axes).

    Returns ``(rejected, levels)``, both shaped like ``pvalues`` ``[..., k]``:
    ``levels`` is the per-test significance level after correction and
    ``rejected`` the tests that reject H₀.

    * ``"bonferroni"``: every level is ``alpha / k``; reject where ``p ≤ alpha / k``.
    * ``"holm"``: sort ``p₍₁₎ ≤ … ≤ p₍ₖ₎``; the ``i``-th smallest gets level
      ``alpha / (k − i + 1)``; reject ``p₍₁₎ … p₍ⱼ₎`` for the longest prefix in which
      every ``p₍ᵢ₎`` is within its level (step-down).
    """
    _check_alpha(alpha)
    if correction not in CORRECTIONS:
        raise ValueError(f"correction: expected one of {CORRECTIONS}, got {correction!r}")
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim == 0 or p.shape[-1] == 0 or np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError(f"pvalues: expected finite values in [0, 1] with shape (..., k), k >= 1; got shape {p.shape}")
    k = p.shape[-1]
    if correction == "bonferroni":
        levels = np.full_like(p, alpha / k)
        return p <= levels, levels
    order = np.argsort(p, axis=-1, kind="stable")
    ranks = np.argsort(order, axis=-1, kind="stable")  # rank of each test among the sorted p-values
    levels = alpha / (k - ranks)
    p_sorted = np.take_along_axis(p, order, axis=-1)
    levels_sorted = np.take_along_axis(levels, order, axis=-1)
    rejected_sorted = np.logical_and.accumulate(p_sorted <= levels_sorted, axis=-1)
    return np.take_along_axis(rejected_sorted, ranks, axis=-1), levels


def decide(rejected, is_residual) -> np.ndarray:
    """Decision per row of ``rejected`` ``[..., k]``: ``"redesign"`` if a residual test rejects, else
    ``"retrain"`` if an input test rejects, else ``"none"`` (``is_residual``: ``[k]`` booleans)."""
    rejected = np.asarray(rejected, dtype=bool)
    is_residual = np.asarray(is_residual, dtype=bool)
    residual = np.any(rejected & is_residual, axis=-1)
    inputs = np.any(rejected & ~is_residual, axis=-1)
    return np.where(residual, "redesign", np.where(inputs, "retrain", "none"))


@jax.jit
def standardized_mean_difference(x_ref: Float[Array, "n1 d"], x_new: Float[Array, "n2 d"]) -> Float[Array, " d"]:
    """Cohen's ``d = (mean(x_new) − mean(x_ref)) / s_pooled`` per column.

    ``s_pooled² = ((n₁−1)s₁² + (n₂−1)s₂²) / (n₁+n₂−2)``.  A non-zero mean shift
    with zero pooled spread gives ``±inf``; no shift gives 0.
    """
    n1, n2 = x_ref.shape[0], x_new.shape[0]
    diff = jnp.mean(x_new, axis=0) - jnp.mean(x_ref, axis=0)
    ss = jnp.sum((x_ref - jnp.mean(x_ref, axis=0)) ** 2, axis=0) + jnp.sum((x_new - jnp.mean(x_new, axis=0)) ** 2, axis=0)
    pooled = jnp.sqrt(ss / max(n1 + n2 - 2, 1))
    safe = jnp.where(pooled > 0, pooled, 1.0)
    return jnp.where(pooled > 0, diff / safe, jnp.where(diff == 0, 0.0, jnp.sign(diff) * jnp.inf))


@dataclass(frozen=True)
class DriftReport:
    """Result of :func:`detect`.  Arrays are NumPy, one entry per test ``[k]`` (inputs first, then residuals).

    ``levels``: the corrected per-test significance level (``alpha / k`` for
    Bonferroni; Holm's step-down levels otherwise).  ``critical_values``: the KS
    statistic at which each test's p-value reaches its level (``D ≥ c`` ⇔
    ``p ≤ level``; with Holm a test also needs every smaller p-value to reject,
    see ``rejected``).  ``effect_sizes``: standardised mean differences (the
    statistics are the distribution-level effect sizes).
    """

    names: tuple[str, ...]
    is_residual: np.ndarray
    statistics: np.ndarray
    pvalues: np.ndarray
    levels: np.ndarray
    critical_values: np.ndarray
    effect_sizes: np.ndarray
    rejected: np.ndarray
    alpha: float
    correction: str
    min_effect: float
    sample_sizes: tuple[tuple[int, int], tuple[int, int]]  # ((n_ref, n_new) of inputs, of residuals)
    decision: str

    @property
    def input_drift(self) -> bool:
        """Some input feature's distribution shifted (covariate shift)."""
        return bool(np.any(self.rejected & ~self.is_residual))

    @property
    def residual_drift(self) -> bool:
        """Some residual distribution shifted (real concept drift)."""
        return bool(np.any(self.rejected & self.is_residual))

    def table(self) -> str:
        """Plain-text table of the tests and the decision."""
        (nxr, nxn), (nrr, nrn) = self.sample_sizes
        lines = [
            f"KS drift tests: alpha={self.alpha:g} ({self.correction}, k={len(self.names)} tests), "
            f"inputs n_ref={nxr} n_new={nxn}, residuals n_ref={nrr} n_new={nrn}"
            + (f", min_effect={self.min_effect:g}" if self.min_effect > 0 else ""),
            f"{'test':<16} {'kind':<8} {'D':>8} {'critical':>9} {'p-value':>10} {'level':>9} {'effect':>8}  drift",
        ]
        for i, name in enumerate(self.names):
            lines.append(
                f"{name[:16]:<16} {'residual' if self.is_residual[i] else 'input':<8} {self.statistics[i]:8.4f} "
                f"{self.critical_values[i]:9.4f} {self.pvalues[i]:10.3g} {self.levels[i]:9.3g} "
                f"{self.effect_sizes[i]:8.3f}  {'YES' if self.rejected[i] else 'no'}"
            )
        lines.append(f"decision: {self.decision}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _check_alpha(alpha: float) -> None:
    if not (0.0 < float(alpha) < 1.0):
        raise ValueError(f"alpha: expected a level in (0, 1), got {alpha}")


def _names(name: str, given: Sequence[str] | None, prefix: str, d: int) -> tuple[str, ...]:
    if given is None:
        return tuple(f"{prefix}{i}" for i in range(d))
    if len(given) != d:
        raise ValueError(f"{name}: expected {d} names, got {len(given)}")
    return tuple(str(g) for g in given)


def _paired(name_ref: str, ref, name_new: str, new) -> tuple[jax.Array, jax.Array]:
    ref, new = as_columns(name_ref, ref), as_columns(name_new, new)
    if new.shape[1] != ref.shape[1]:
        raise ValueError(f"{name_new}: expected shape (n, {ref.shape[1]}) to match {name_ref}, got {tuple(new.shape)}")
    return ref, new


def detect(
    x_ref: Float[Array, "n_ref dx"],
    x_new: Float[Array, "n_new dx"],
    r_ref: Float[Array, "m_ref dr"],
    r_new: Float[Array, "m_new dr"],
    alpha: float = 0.05,
    correction: str = "bonferroni",
    *,
    min_effect: float = 0.0,
    input_names: Sequence[str] | None = None,
    residual_names: Sequence[str] | None = None,
) -> DriftReport:
    """Test a reference window against a new window for covariate shift and concept drift.

    ``x_*``: model inputs (one column per feature; a 1-D array is one feature);
    ``r_*``: model residuals ``y − f(x)`` (one column per output channel).  Each
    column gets a two-sample KS test (statistics in JAX, p-values from scipy's
    exact distribution); the family of ``k = dx + dr`` tests is corrected with
    ``correction`` at family-wise level ``alpha``.  A test counts as drift when
    it rejects and its statistic is at least ``min_effect``.  The decision
    follows the module docstring (residual drift → "redesign"; input drift only
    → "retrain"; else "none").
    """
    _check_alpha(alpha)
    if not (0.0 <= float(min_effect) <= 1.0):
        raise ValueError(f"min_effect: expected a KS statistic in [0, 1], got {min_effect}")
    x_ref, x_new = _paired("x_ref", x_ref, "x_new", x_new)
    r_ref, r_new = _paired("r_ref", r_ref, "r_new", r_new)
    names = _names("input_names", input_names, "x", x_ref.shape[1]) + _names(
        "residual_names", residual_names, "r", r_ref.shape[1]
    )
    sizes = ((x_ref.shape[0], x_new.shape[0]), (r_ref.shape[0], r_new.shape[0]))
    dx = x_ref.shape[1]
    stats_x = np.asarray(ks_statistics(x_ref, x_new), dtype=np.float64)
    stats_r = np.asarray(ks_statistics(r_ref, r_new), dtype=np.float64)
    pvalues = np.concatenate([ks_pvalue(stats_x, *sizes[0]), ks_pvalue(stats_r, *sizes[1])])
    rejected, levels = multiple_test(pvalues, alpha, correction)
    statistics = np.concatenate([stats_x, stats_r])
    rejected = rejected & (statistics >= min_effect)
    critical = np.concatenate([ks_critical_value(levels[:dx], *sizes[0]), ks_critical_value(levels[dx:], *sizes[1])])
    effects = np.concatenate(
        [np.asarray(standardized_mean_difference(x_ref, x_new)), np.asarray(standardized_mean_difference(r_ref, r_new))]
    )
    is_residual = np.arange(len(names)) >= dx
    return DriftReport(
        names=names,
        is_residual=is_residual,
        statistics=statistics,
        pvalues=pvalues,
        levels=levels,
        critical_values=critical,
        effect_sizes=effects.astype(np.float64),
        rejected=rejected,
        alpha=float(alpha),
        correction=correction,
        min_effect=float(min_effect),
        sample_sizes=sizes,
        decision=str(decide(rejected, is_residual)),
    )
