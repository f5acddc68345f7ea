"""Closed-loop KPIs per scenario and their aggregation across scenarios (mean, quantiles, CVaR).

Per scenario, from a :class:`~jtwin.simulate.Rollout` and the controller's cost data (in the
controller's coordinates: ``x − x̄``, ``u − ū`` for a twin with an operating point, see
:meth:`jtwin.twin.Twin.from_model`):

* ``tracking_rmse``: RMS of ``x − x_ref`` over the states with a tracking weight (Q_ii > 0);
* ``final_error``: RMS of ``x − x_ref`` over those states at the last sample;
* ``energy``: ``Σ_k ‖u_k‖₁ · dt`` (the input effort the MPC's ℓ1 term prices);
* ``peak_demand``: ``max_k cᵀu_k``;  ``demand_excess``: ``Σ_k max{0, cᵀu_k − ρ} · dt``;
* ``violations`` / ``violation_magnitude``: count and sum of state-box exceedances;
* ``solver_failures``: MPC solves that failed (:func:`failed_solves`);
* ``nis``: mean normalised innovation squared per measured entry (≈ 1 for a consistent filter).

Aggregates: mean, p50, p95 and ``CVaR_q`` (Rockafellar–Uryasev: the mean of the worst
``1 − q`` fraction of scenarios, with the fractional atom at the VaR weighted exactly).
"""

from __future__ import annotations

import numpy as np

from .control import LinearMPC
from .qp import is_successful, status_name
from .simulate import Rollout
from .twin import OperatingPoint
from .uncertainty.risk import cvar


def scenario_kpis(
    rollout: Rollout, mpc: LinearMPC, dt: float, operating_point: OperatingPoint | None = None
) -> dict[str, np.ndarray]:
    """Per-scenario KPIs (module docstring) as numpy arrays of shape [S]; ``operating_point``: the twin's
    (``twin.operating_point``), whose ``x̄, ū`` are subtracted to reach ``mpc``'s coordinates."""
    x, u = np.asarray(rollout.x), np.asarray(rollout.u)
    if operating_point is not None:
        x, u = x - np.asarray(operating_point.x), u - np.asarray(operating_point.u)
    tracked = np.diag(np.asarray(mpc.Q)) > 0
    ref = np.asarray(mpc.xref)[0]
    err = (x - ref)[..., tracked]
    load = u @ np.asarray(mpc.c)
    lo, hi = np.asarray(mpc.xmin), np.asarray(mpc.xmax)
    excess = np.maximum(0.0, np.maximum(x - hi, lo - x))
    excess = np.where(np.isfinite(excess), excess, 0.0)
    measured = np.asarray(rollout.measured)
    nis = np.where(measured > 0, np.asarray(rollout.nis) / np.maximum(measured, 1), np.nan)
    return {
        "tracking_rmse": np.sqrt(np.mean(err**2, axis=(1, 2))) if tracked.any() else np.zeros(x.shape[0]),
        "final_error": np.sqrt(np.mean(err[:, -1] ** 2, axis=1)) if tracked.any() else np.zeros(x.shape[0]),
        "energy": np.sum(np.abs(u), axis=(1, 2)) * dt,
        "peak_demand": load.max(axis=1),
        "demand_excess": np.sum(np.maximum(0.0, load - float(mpc.rho)), axis=1) * dt,
        "violations": np.sum(excess > 1e-6, axis=(1, 2)).astype(float),
        "violation_magnitude": excess.sum(axis=(1, 2)),
        "solver_failures": np.sum(failed_solves(rollout.status), axis=1).astype(float),
        "nis": np.nanmean(nis, axis=1),
    }


def failed_solves(status) -> np.ndarray:
    """Boolean array, True where an MPC solve's ``status`` is a failure (not :func:`jtwin.qp.is_successful`;
    the one rule for ``solver_failures``)."""
    return ~np.asarray(is_successful(status))


def solve_outcomes(status) -> dict[str, int]:
    """How many MPC solves ended in each status: ``{status name: count}`` over all scenarios and steps."""
    names, counts = np.unique(np.asarray(status_name(status)), return_counts=True)
    return {str(name): int(count) for name, count in zip(names, counts)}


def summarize(kpis: dict[str, np.ndarray], q: float = 0.95) -> dict[str, dict[str, float]]:
    """Aggregate per-scenario KPIs: ``{name: {mean, p50, p95, cvar}}`` (CVaR at level ``q``)."""
    out = {}
    for name, values in kpis.items():
        v = np.asarray(values, float)
        v = v[np.isfinite(v)]
        if v.size == 0:
            out[name] = dict(mean=np.nan, p50=np.nan, p95=np.nan, cvar=np.nan)
            continue
        out[name] = dict(
            mean=float(v.mean()), p50=float(np.percentile(v, 50)), p95=float(np.percentile(v, 95)), cvar=float(cvar(v, q))
        )
    return out


def format_summary(summary: dict[str, dict[str, float]], q: float = 0.95, descriptions=None) -> str:
    """A fixed-width table of :func:`summarize`'s output.

    ``descriptions``: :class:`jtwin.report.KPIDescription` rows (a plant's names, units and
    one-line explanations, :func:`jtwin.report.vocabulary`); the table then shows those KPIs, in
    that order, under the plant's names with a unit and a meaning column, and a legend of the statistics.
    """
    if descriptions is None:
        lines = [f"{'KPI':<20}{'mean':>12}{'p50':>12}{'p95':>12}{f'CVaR{q:g}':>12}"]
        for name, s in summary.items():
            lines.append(f"{name:<20}{s['mean']:>12.4g}{s['p50']:>12.4g}{s['p95']:>12.4g}{s['cvar']:>12.4g}")
        return "\n".join(lines)
    width = max(len(d.name) for d in descriptions) + 2
    units = max(len(d.unit) for d in descriptions) + 2
    lines = [f"{'KPI':<{width}}{'unit':<{units}}{'mean':>10}{'p50':>10}{'p95':>10}{f'CVaR{q:g}':>10}   meaning"]
    for d in descriptions:
        s = summary[d.key]
        stats = "".join(f"{s[k]:>10.4g}" for k in ("mean", "p50", "p95", "cvar"))
        lines.append(f"{d.name:<{width}}{d.unit:<{units}}{stats}   {d.explanation}")
    lines.append(
        f"across scenarios: p50/p95 = median/95th percentile, CVaR{q:g} = mean of the worst {100 * (1 - q):.3g}% of scenarios"
    )
    return "\n".join(lines)
