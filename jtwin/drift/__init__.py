"""jtwin.drift — concept-drift detection for the twin's lifecycle.

Two-sample Kolmogorov–Smirnov tests of a reference window against a new window,
on every input feature (covariate shift → retrain) and on the model residuals
(real concept drift → redesign), with family-wise error control (Bonferroni or
Holm).  KS statistics are pure JAX (jit, vmap over features and sliding
windows); p-values and critical values are host functions on scipy's exact
distribution (see :mod:`jtwin.drift.ks`).
"""

from .detect import CORRECTIONS, DECISIONS, DriftReport, decide, detect, multiple_test, standardized_mean_difference
from .ks import ks_2samp, ks_critical_value, ks_pvalue, ks_statistic, ks_statistics, sliding_ks_statistics
from .logs import DriftLog, cli_report, load_log
from .monitor import MonitorResult, monitor

__all__ = [
    "CORRECTIONS",
    "DECISIONS",
    "DriftLog",
    "DriftReport",
    "MonitorResult",
    "cli_report",
    "decide",
    "detect",
    "ks_2samp",
    "ks_critical_value",
    "ks_pvalue",
    "ks_statistic",
    "ks_statistics",
    "load_log",
    "monitor",
    "multiple_test",
    "sliding_ks_statistics",
    "standardized_mean_difference",
]
