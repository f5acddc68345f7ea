"""Validation report of a twin against logged KPI data: tolerance table, regret bound, error plot."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._checks import as_array
from .regret import Cost, cost_gap, kpi_box, lipschitz_constant, regret_bound
from .tolerance import ToleranceProbability, tolerance_probability


@dataclass(frozen=True)
class ValidationReport:
    """KPI validation results (NumPy).  ``errors`` [n, k] = predictions − observations (NaN = missing).

    With a cost: ``lipschitz`` (``L_J`` estimate), ``regret_bound``
    (``L_J · max_k ‖e_k‖∞``) and ``max_cost_gap`` (``max_i |J(Ŷ_i) − J(Y_i)|``, the
    empirical counterpart the bound covers); otherwise ``None``.
    """

    names: tuple[str, ...]
    tolerances: np.ndarray
    errors: np.ndarray
    tolerance: ToleranceProbability
    lipschitz: float | None = None
    regret_bound: float | None = None
    max_cost_gap: float | None = None

    @property
    def max_abs_error(self) -> np.ndarray:
        """``‖e_k‖∞`` per KPI."""
        return np.nanmax(np.abs(self.errors), axis=0)

    def table(self) -> str:
        """Plain-text table: one row per KPI, then the regret bound."""
        t = self.tolerance
        label = f"{t.method} lower {t.confidence:.0%}"
        lines = [f"{'KPI':<16} {'tol':>9} {'n':>6} {'p_hat':>7} {label:>26} {'max|e|':>10}"]
        for i, name in enumerate(self.names):
            lines.append(
                f"{name[:16]:<16} {self.tolerances[i]:9.4g} {int(t.counts[i]):6d} {t.p_hat[i]:7.4f} "
                f"{t.lower[i]:26.4f} {self.max_abs_error[i]:10.4g}"
            )
        if self.lipschitz is not None:
            lines.append(
                f"regret bound: L_J = {self.lipschitz:.4g} x max_k ||e_k||_inf = {np.max(self.max_abs_error):.4g} "
                f"-> {self.regret_bound:.4g} (observed max |J(Y_hat) - J(Y)| = {self.max_cost_gap:.4g})"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def plot(self, path: str | Path, bins: int = 40) -> Path:
        """Histogram of each KPI's errors with its tolerance band ``±τ_k``, saved as a PNG (Agg backend)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        k = len(self.names)
        fig, axes = plt.subplots(1, k, figsize=(3.6 * k, 3.0), squeeze=False)
        for i, ax in enumerate(axes[0]):
            e = self.errors[:, i]
            ax.hist(e[np.isfinite(e)], bins=bins, color="tab:blue", alpha=0.8)
            for sign in (-1, 1):
                ax.axvline(sign * self.tolerances[i], color="tab:red", linestyle="--")
            ax.set_title(f"{self.names[i]}: p = {self.tolerance.p_hat[i]:.3f} (>= {self.tolerance.lower[i]:.3f})", fontsize=9)
            ax.set_xlabel("prediction error")
        axes[0, 0].set_ylabel("count")
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path


def validate(
    y_pred: Float[Array, "n k"],
    y_true: Float[Array, "n k"],
    tol: Float[Array, " k"],
    *,
    names: Sequence[str] | None = None,
    confidence: float = 0.95,
    method: str = "clopper-pearson",
    cost: Cost | None = None,
    lipschitz: float | None = None,
) -> ValidationReport:
    """Validate KPI predictions ``y_pred`` against observations ``y_true`` (both ``[n, k]``; NaN = missing).

    Computes per-KPI tolerance probabilities with their lower confidence bounds
    and, when a ``cost`` ``J(y)`` of the KPI vector is given, ``L_J`` over the box
    spanned by the data (or the ``lipschitz`` constant you pass), the bound
    ``L_J · max_k ‖e_k‖∞`` and the observed cost gap.
    """
    y_pred = as_array("y_pred", jnp.atleast_2d(jnp.asarray(y_pred).T).T, (None, None), finite=False)
    y_true = as_array("y_true", jnp.atleast_2d(jnp.asarray(y_true).T).T, y_pred.shape, finite=False)
    errors = np.asarray(y_pred - y_true)
    k = errors.shape[1]
    tp = tolerance_probability(errors, tol, confidence, method)
    names = tuple(f"kpi{i}" for i in range(k)) if names is None else tuple(names)
    if len(names) != k:
        raise ValueError(f"names: expected {k} KPI names, got {len(names)}")
    tolerances = np.broadcast_to(np.asarray(tol, dtype=np.float64), (k,)).copy()
    if cost is None:
        return ValidationReport(names, tolerances, errors, tp)
    rows = np.all(np.isfinite(errors), axis=1)
    if lipschitz is None:
        lower, upper = kpi_box(np.asarray(y_pred)[rows], np.asarray(y_true)[rows])
        lipschitz = float(lipschitz_constant(cost, lower, upper).value)
    gap = np.asarray(cost_gap(cost, y_pred[rows], y_true[rows]))
    return ValidationReport(
        names,
        tolerances,
        errors,
        tp,
        lipschitz=float(lipschitz),
        regret_bound=float(regret_bound(lipschitz, errors[rows])),
        max_cost_gap=float(np.max(np.abs(gap))),
    )
