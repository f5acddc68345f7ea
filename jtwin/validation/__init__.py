"""jtwin.validation — verification and validation of the twin's model M.

Validation ("built the right model"): per-KPI tolerance probability with a
one-sided lower confidence bound (exact Clopper–Pearson or Wilson), the
decision-regret bound ``L_J · max_k ‖e_k‖∞`` with ``L_J`` from autodiff, and a
report (table + PNG).  Verification ("built the model right"): measured
convergence order of an integrator and a jit/vmap/grad consistency check.
"""

from .regret import (
    LipschitzEstimate,
    cost_gap,
    decision_regret,
    gradient_dual_norm,
    kpi_box,
    lipschitz_constant,
    regret_bound,
)
from .report import ValidationReport, validate
from .tolerance import (
    METHODS,
    ToleranceProbability,
    clopper_pearson_lower,
    tolerance_hits,
    tolerance_probability,
    wilson_lower,
)
from .verification import ConvergenceOrder, TransformationCheck, check_transformations, convergence_order

__all__ = [
    "METHODS",
    "ConvergenceOrder",
    "LipschitzEstimate",
    "ToleranceProbability",
    "TransformationCheck",
    "ValidationReport",
    "check_transformations",
    "clopper_pearson_lower",
    "convergence_order",
    "cost_gap",
    "decision_regret",
    "gradient_dual_norm",
    "kpi_box",
    "lipschitz_constant",
    "regret_bound",
    "tolerance_hits",
    "tolerance_probability",
    "validate",
    "wilson_lower",
]
