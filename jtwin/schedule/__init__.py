"""jtwin.schedule — can the twin's loop keep its period on this machine?

EDF schedulability (``Σ C_i/T_i ≤ 1``; for the estimator ``U_other + τ/T +
k n³/(F T) ≤ 1``), the largest affordable state dimension ``n_max``, the
*measured* ``k`` and flop rate of compiled step functions (XLA cost analysis +
wall time), and the measured time of the whole twin step (estimator + MPC).  The schedulability arithmetic is exact (rational) because its
answers are integers decided at boundaries; measurements are host-side timing
of jitted functions.
"""

from .edf import edf_schedulable, edf_utilisation, max_state_dim, twin_schedulable, twin_utilisation, utilisation
from .measure import StepCost, fit_cubic, measure_step, measure_step_cost, time_compiled, time_loop, xla_flops
from .report import cli_report, estimator_step_factory, filter_step, parse_duration, schedule_report, twin_step

__all__ = [
    "StepCost",
    "cli_report",
    "edf_schedulable",
    "edf_utilisation",
    "estimator_step_factory",
    "filter_step",
    "fit_cubic",
    "max_state_dim",
    "measure_step",
    "measure_step_cost",
    "parse_duration",
    "schedule_report",
    "time_compiled",
    "time_loop",
    "twin_schedulable",
    "twin_step",
    "twin_utilisation",
    "utilisation",
    "xla_flops",
]
