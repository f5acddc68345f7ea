"""Timestamps and latency logs: strict vs loose synchronisation.

*Strict* synchronisation: the total time misalignment has a known deterministic bound,
``|ε(t)| ≤ ε̄`` for every sample (hard real time).  *Loose*: no worst-case bound holds; only
statistical statements (quantiles) or eventual consistency.

A measurement taken at plant time ``t_meas`` and received by the twin at its own clock time
``t_recv`` has misalignment ``ε = (t_recv − clock_offset) − t_meas``: transport delay plus any
residual clock error.  :func:`classify_sync` turns such a log into a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SyncReport:
    """Verdict on a latency log.

    ``kind`` is ``"strict"`` when every misalignment satisfies ``|ε| ≤ bound`` (and the log is
    in order), else ``"loose"``: a negative ``ε`` (the twin's clock ahead of the plant's, or a
    mis-estimated clock offset) is as much a misalignment as a positive one.  Quantiles and the worst case are reported either way;
    ``violations`` counts samples beyond ``bound``, ``out_of_order`` samples whose measurement
    time is not after the previous one (they would be dropped by an in-order twin).
    """

    kind: str
    bound: float
    worst: float
    p50: float
    p99: float
    violations: int
    out_of_order: int
    samples: int

    def __str__(self) -> str:
        return (
            f"{self.kind} synchronisation: worst |ε| = {self.worst:.4g} vs bound {self.bound:.4g} "
            f"({self.violations}/{self.samples} beyond, {self.out_of_order} out of order); "
            f"p50 = {self.p50:.4g}, p99 = {self.p99:.4g}"
        )


def misalignment(t_meas, t_recv, clock_offset: float = 0.0) -> np.ndarray:
    """``ε = (t_recv − clock_offset) − t_meas`` per sample (seconds or any consistent unit)."""
    t_meas, t_recv = np.asarray(t_meas, float), np.asarray(t_recv, float)
    if t_meas.shape != t_recv.shape or t_meas.ndim != 1:
        raise ValueError(f"t_recv: expected the same 1-D shape as t_meas {t_meas.shape}, got {t_recv.shape}")
    if not (np.all(np.isfinite(t_meas)) and np.all(np.isfinite(t_recv))):
        raise ValueError("t_meas/t_recv: contain NaN or inf; expected finite timestamps")
    return (t_recv - clock_offset) - t_meas


def classify_sync(t_meas, t_recv, bound: float, clock_offset: float = 0.0) -> SyncReport:
    """Classify a timestamp log as strict (all ``|ε| ≤ bound``, in order) or loose."""
    if not bound >= 0:
        raise ValueError(f"bound: expected a non-negative misalignment bound, got {bound}")
    eps = misalignment(t_meas, t_recv, clock_offset)
    if eps.size == 0:
        raise ValueError("t_meas: the log is empty")
    out_of_order = int(np.sum(np.diff(np.asarray(t_meas, float)) <= 0))
    violations = int(np.sum(np.abs(eps) > bound))
    kind = "strict" if violations == 0 and out_of_order == 0 else "loose"
    worst = float(np.max(np.abs(eps)))
    p50, p99 = (float(v) for v in np.quantile(np.abs(eps), [0.5, 0.99]))
    return SyncReport(kind, float(bound), worst, p50, p99, violations, out_of_order, int(eps.size))
