"""Streaming drift monitor: slide a window over a log and report the first window that drifts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from jaxtyping import Array, Float

from .detect import DriftReport, _check_alpha, _paired, decide, detect, multiple_test
from .ks import ks_pvalue, sliding_ks_statistics


@dataclass(frozen=True)
class MonitorResult:
    """Per-window results of :func:`monitor` (NumPy arrays, ``w`` windows × ``k`` tests).

    ``starts[j]``: first log index of window ``j`` (it covers ``starts[j] :
    starts[j] + window``).  ``first``: index of the first window whose decision
    is not "none" (``None`` when no window drifts); ``report``: the full
    :class:`DriftReport` of that window.
    """

    window: int
    starts: np.ndarray
    statistics: np.ndarray
    pvalues: np.ndarray
    rejected: np.ndarray
    decisions: np.ndarray
    first: int | None
    report: DriftReport | None

    @property
    def first_start(self) -> int | None:
        """Log index where the first drifting window starts (``None`` if none drifts)."""
        return None if self.first is None else int(self.starts[self.first])

    def summary(self) -> str:
        """One-paragraph text summary."""
        counts = {d: int(np.sum(self.decisions == d)) for d in ("none", "retrain", "redesign")}
        head = f"{len(self.starts)} windows of {self.window} samples: " + ", ".join(f"{v} {k}" for k, v in counts.items())
        if self.first is None:
            return head + "\nno drift detected"
        return (
            f"{head}\nfirst drift in window {self.first} (log[{self.first_start}:{self.first_start + self.window}])\n"
            + self.report.table()
        )


def monitor(
    x_ref: Float[Array, "n_ref dx"],
    r_ref: Float[Array, "m_ref dr"],
    x_log: Float[Array, "t dx"],
    r_log: Float[Array, "t dr"],
    window: int,
    stride: int | None = None,
    alpha: float = 0.05,
    correction: str = "bonferroni",
    *,
    min_effect: float = 0.0,
    input_names: Sequence[str] | None = None,
    residual_names: Sequence[str] | None = None,
) -> MonitorResult:
    """Run :func:`detect` on every window ``log[s : s + window]``, ``s = 0, stride, …`` (default stride = window).

    ``x_log`` and ``r_log`` are time-aligned (same length ``t``).  All windows'
    KS statistics come from one jitted ``vmap`` over window starts
    (:func:`sliding_ks_statistics`); p-values are evaluated once per distinct
    lattice value; the family-wise correction is applied to each window
    separately.  The result names the first drifting window and carries its
    full report.
    """
    _check_alpha(alpha)
    x_ref, x_log = _paired("x_ref", x_ref, "x_log", x_log)
    r_ref, r_log = _paired("r_ref", r_ref, "r_log", r_log)
    t = x_log.shape[0]
    if r_log.shape[0] != t:
        raise ValueError(f"r_log: expected {t} rows (time-aligned with x_log), got {r_log.shape[0]}")
    window = int(window)
    stride = window if stride is None else int(stride)
    if not 2 <= window <= t:
        raise ValueError(f"window: expected an integer in [2, {t}] (the log length), got {window}")
    if stride < 1:
        raise ValueError(f"stride: expected a positive integer, got {stride}")
    stats_x = np.asarray(sliding_ks_statistics(x_ref, x_log, window, stride), dtype=np.float64)
    stats_r = np.asarray(sliding_ks_statistics(r_ref, r_log, window, stride), dtype=np.float64)
    statistics = np.concatenate([stats_x, stats_r], axis=1)
    pvalues = np.concatenate(
        [ks_pvalue(stats_x, x_ref.shape[0], window), ks_pvalue(stats_r, r_ref.shape[0], window)], axis=1
    )
    rejected, _ = multiple_test(pvalues, alpha, correction)
    rejected &= statistics >= min_effect
    is_residual = np.arange(statistics.shape[1]) >= stats_x.shape[1]
    decisions = decide(rejected, is_residual)
    starts = np.arange(0, t - window + 1, stride)
    drifting = np.flatnonzero(decisions != "none")
    first = int(drifting[0]) if drifting.size else None
    report = None
    if first is not None:
        s = int(starts[first])
        report = detect(
            x_ref, x_log[s : s + window], r_ref, r_log[s : s + window], alpha, correction,
            min_effect=min_effect, input_names=input_names, residual_names=residual_names,
        )
    return MonitorResult(window, starts, statistics, pvalues, rejected, decisions, first, report)
