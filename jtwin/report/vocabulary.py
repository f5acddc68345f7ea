"""What a run's numbers mean for each plant: state, input and time units and the KPIs' names.

:func:`jtwin.kpi.scenario_kpis` computes the same generic KPIs for every plant (``energy`` is
``Σ‖u‖₁·dt`` whatever ``u`` is); a reader needs them in the plant's words and units: a
building's heating energy in kWh, a reactor's coolant moves in K·min, a supply chain's orders
in items.  :func:`vocabulary` gives those labels for a configured plant, with one-line
explanations that quote the config's own numbers (setpoint, band, threshold).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class KPIDescription:
    """How a generic KPI (``key`` of :func:`jtwin.kpi.scenario_kpis`) reads for one plant."""

    key: str
    name: str  # the plant's word for it (building: ``energy``; inventory: ``items_ordered``)
    unit: str
    explanation: str


@dataclass(frozen=True)
class PlantVocabulary:
    """Labels of a plant's signals: ``states[i]``/``inputs[j]``/``disturbances[l]`` are ``(label, unit)``;
    ``time_unit`` the unit of ``dt``; ``demand`` the label of ``cᵀu`` (the quantity the demand charge
    prices); ``kpis`` in display order."""

    time_unit: str
    states: tuple[tuple[str, str], ...]
    inputs: tuple[tuple[str, str], ...]
    disturbances: tuple[tuple[str, str], ...]
    demand: tuple[str, str]
    kpis: tuple[KPIDescription, ...]


def _band(lo, hi, unit: str) -> str:
    """``"20–24 degC"`` for the finite part of a band (``"≤ 365 K"`` when only the top is finite)."""
    lo, hi = np.unique(np.atleast_1d(lo)), np.unique(np.atleast_1d(hi))
    fmt = lambda v: "/".join(f"{x:g}" for x in v)
    if np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)):
        return f"{fmt(lo)}–{fmt(hi)} {unit}"
    if np.all(np.isfinite(hi)):
        return f"≤ {fmt(hi)} {unit}"
    if np.all(np.isfinite(lo)):
        return f"≥ {fmt(lo)} {unit}"
    return "no band"


def _kpis(words: dict, unit_x: str, unit_u: str, t: str, controller, demand_unit: str) -> tuple[KPIDescription, ...]:
    """The generic KPIs in a plant's words: ``words`` maps a KPI key to ``(name, unit, explanation)`` overrides."""
    band = _band(controller.xmin, controller.xmax, unit_x)
    setpoint = "/".join(f"{v:g}" for v in np.unique(np.atleast_1d(controller.setpoint)))
    generic = {
        "tracking_rmse": ("tracking_rmse", unit_x, f"RMS deviation of the tracked states from the setpoint {setpoint} {unit_x}"),
        "final_error": ("final_error", unit_x, "RMS deviation from the setpoint at the last sample"),
        "energy": ("input_effort", f"{unit_u}·{t}", "Σ |u| · dt: the input use the MPC's ℓ1 price charges"),
        "peak_demand": ("peak_demand", demand_unit, "largest total input Σu over the run"),
        "demand_excess": (
            "demand_excess",
            f"{demand_unit}·{t}",
            f"Σ max(0, Σu − {controller.rho:g}) · dt: use above the demand threshold",
        ),
        "violations": ("violations", "samples", f"(state, sample) pairs outside the band {band}"),
        "violation_magnitude": ("violation_size", f"{unit_x}·sample", f"summed distance outside the band {band}"),
        "solver_failures": ("solver_failures", "solves", "MPC solves that did not converge to tolerance"),
        "nis": ("nis", "–", "normalised innovation squared per reading; ≈ 1 when the filter is consistent"),
    }
    demand = controller.beta > 0
    out = []
    for key, (name, unit, text) in generic.items():
        if key in ("peak_demand", "demand_excess") and not demand:
            continue  # no demand charge configured: Σu has no threshold to report against
        name, unit, text = words.get(key, (name, unit, text))
        out.append(KPIDescription(key, name, unit, text))
    return tuple(out)


def vocabulary(kind: str, model, controller) -> PlantVocabulary:
    """Labels for plant ``kind`` (``building``, ``cstr``, ``inventory``; others get generic ones) built as
    ``model``; ``controller``: the config's ``[controller]`` table (setpoint, band, threshold quoted)."""
    n, m = model.state_dim, model.input_dim
    if kind == "building":
        zones = m
        states = tuple((f"zone {i + 1} air temperature", "degC") for i in range(zones)) + tuple(
            (f"zone {i + 1} wall temperature", "degC") for i in range(zones)
        )
        inputs = tuple((f"zone {i + 1} heating power", "kW") for i in range(zones))
        band = _band(controller.xmin, controller.xmax, "degC")
        words = {
            "tracking_rmse": ("comfort_rmse", "degC", "RMS of zone air temperature − setpoint, all zones and hours"),
            "final_error": ("final_error", "degC", "RMS of zone air temperature − setpoint at the last hour"),
            "energy": ("heat_energy", "kWh", "heat delivered by all heaters"),
            "peak_demand": ("peak_demand", "kW", "largest total heating power in any hour"),
            "demand_excess": (
                "demand_excess",
                "kWh",
                f"heat drawn above the demand threshold {controller.rho:g} kW (what the demand charge prices)",
            ),
            "violations": ("comfort_violations", "zone-hours", f"zone-hours outside the comfort band {band}"),
            "violation_magnitude": ("comfort_deficit", "degC·h", f"summed degrees outside the comfort band {band}"),
        }
        weather = (("outdoor temperature", "degC"), ("solar irradiance", "kW/m2"))
        return PlantVocabulary("h", states, inputs, weather, ("total heating power", "kW"),
                               _kpis(words, "degC", "kW", "h", controller, "kW"))
    if kind == "cstr":
        states = (("concentration Ca", "mol/L"), ("reactor temperature T", "K"))[:n]
        words = {
            "tracking_rmse": ("temperature_rmse", "K", "RMS of reactor temperature − setpoint"),
            "final_error": ("final_error", "K", "reactor temperature − setpoint at the last sample"),
            "energy": ("coolant_moves", "K·min", "Σ |Tc − Tc_op| · dt: coolant temperature moved from the operating point"),
            "violations": ("limit_violations", "samples", "samples outside the temperature limit "
                           + _band(controller.xmin, controller.xmax, "K")),
            "violation_magnitude": ("limit_excess", "K·sample", "summed kelvins beyond the temperature limit"),
        }
        feed = (("feed concentration deviation", "mol/L"), ("feed temperature deviation", "K"))
        return PlantVocabulary("min", states, (("coolant temperature Tc", "K"),), feed, ("coolant temperature", "K"),
                               _kpis(words, "K", "K", "min", controller, "K"))
    if kind == "inventory":
        measured = np.flatnonzero(np.any(np.asarray(model.H) != 0, axis=0))
        labels = []
        for i in range(n):
            echelon = int(np.searchsorted(measured, i, side="right")) - 1
            slot = i - measured[echelon]
            labels.append((f"echelon {echelon + 1} on hand" if slot == 0 else f"echelon {echelon + 1} pipeline {slot}", "items"))
        inputs = tuple((f"echelon {i + 1} orders", "items/week") for i in range(m))
        band = _band(controller.xmin, controller.xmax, "items")
        words = {
            "tracking_rmse": ("stock_rmse", "items", "RMS of on-hand stock − safety stock, all echelons and weeks"),
            "final_error": ("final_error", "items", "RMS of on-hand stock − safety stock in the last week"),
            "energy": ("items_ordered", "items", "all orders placed (the per-item order cost's base)"),
            "peak_demand": ("peak_weekly_orders", "items/week", "largest total weekly order"),
            "demand_excess": (
                "orders_above_capacity",
                "items",
                f"items ordered above the shipping capacity {controller.rho:g} items/week",
            ),
            "violations": ("stock_violations", "echelon-weeks", f"echelon-weeks with stock outside {band} (backlog/overflow)"),
            "violation_magnitude": ("stock_excess", "items·week", f"summed items outside {band}"),
        }
        demand = (("customer demand", "items/week"),)
        return PlantVocabulary("week", tuple(labels), inputs, demand, ("total weekly orders", "items/week"),
                               _kpis(words, "items", "items/week", "week", controller, "items/week"))
    states = tuple((f"x{i + 1}", "–") for i in range(n))
    inputs = tuple((f"u{j + 1}", "–") for j in range(m))
    disturbances = tuple((f"d{j + 1}", "–") for j in range(model.disturbance_dim))
    return PlantVocabulary("time unit", states, inputs, disturbances, ("Σu", "–"), _kpis({}, "–", "–", "t", controller, "–"))
