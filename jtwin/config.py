"""TOML configs -> objects.  Every error names the offending field (``plant.params.zones`` …).

A config describes a plant and how to run it::

    [plant]
    kind = "building"            # building | cstr | inventory | lorenz96
    [plant.params]               # keyword arguments of the plant's builder (see jtwin.models.library)
    zones = 3
    [simulation]
    scenarios = 64               # independent noise / initial-state draws (vmapped)
    steps = 168                  # sample periods
    seed = 0
    x0 = [21.0, 21.0, 21.0, 20.0, 20.0, 20.0]   # optional mean initial state (default: zeros)
    x0_std = 0.5                 # std of the initial-state draw (a number or one per state)
    forecast_std = [1.0, 0.05]   # disturbance forecast error std, per channel
    dropout = 0.0                # probability a measurement entry is missing
    chunk = 0                    # samples per compiled chunk (0: all at once)
    [weather]                    # building only
    start_hour = 0               # hour of the TMY3 year at t = 0
    [disturbance]                # other plants: d(t) = mean + amplitude·sin(2π t/period) + step·1{t ≥ step_time}
    mean = [10.0]                # per disturbance channel (default zeros); also the twin's d̄
    amplitude = [3.0]
    period = 26.0                # model time units
    step = [0.0]
    step_time = 0.0
    [estimator]
    kind = "kf"                  # kf | ekf | ukf | srukf
    gate = 1e-4                  # chi-square gate level of the filter (0 = off; the twin also gates, Twin.gate)
    cov0 = 1.0                   # initial covariance: cov0 * I, or a list of per-state variances (diagonal)
    [controller]                 # required
    kind = "mpc"                 # mpc | tube | chance | polytopic | lqr (jtwin.control.kinds)
    solver = "admm"              # the MPC's QP solver: admm | ipm | fista (jtwin.qp.SOLVERS)
    horizon = 24
    setpoint = 21.0              # required: reference for the measured states (a number, or one per measured state)
    q = 1.0                      # tracking weight
    r = 0.01                     # input weight
    alpha = 0.1                  # price per unit |u| (l1)
    beta = 1.0                   # demand charge per unit of sum(u) above rho (hinge)
    rho = 15.0
    umin = 0.0                   # input box (a number, or one per input)
    umax = 10.0
    xmin = 20.0                  # soft band on the measured states (a number, or one per measured state)
    xmax = 24.0
    soft_penalty = 100.0
    x_op = [0.5, 350.0]          # nonlinear plants: the operating point the MPC is linearised at
    u_op = [300.0]               # (default: the steady state with the measured states at the setpoint)
    [sync]
    delay = 0                    # measurement delay in samples
    compensate = true            # predict the estimate forward over the delay
    [drift]                      # jtwin drift: KS tests with family-wise error control
    alpha = 0.05
    correction = "bonferroni"    # or "holm"
    min_effect = 0.0             # also require D >= min_effect to flag a shift
"""

from __future__ import annotations

import inspect
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .control.kinds import CONTROLLER_KINDS
from .learn.options import TrainOptions
from .models import library
from .qp.registry import SOLVERS, make_solver

PLANTS = {
    "building": library.building_model,
    "cstr": library.cstr_model,
    "inventory": library.inventory_model,
    "lorenz96": library.lorenz96_model,
}
# builders that forward **params to a class of physical parameters
_PARAMETER_CLASSES = {"building": library.BuildingRC, "cstr": library.CSTRDynamics}
PRECISIONS = ("float64", "float32")
ESTIMATORS = ("kf", "ekf", "ukf", "srukf")
TABLES = ("plant", "simulation", "weather", "disturbance", "controller", "estimator", "sync", "drift", "train")
VECTOR = {"vector": True}  # field metadata: a number or a list of numbers


class ConfigError(ValueError):
    """A config file is malformed or holds an invalid value; the message names the field."""


@dataclass(frozen=True)
class PlantConfig:
    kind: str
    params: dict[str, Any] = field(default_factory=dict)

    def build(self):
        """The plant's model (``jtwin.models.AbstractModel``) built from ``kind`` and ``params``."""
        try:
            return PLANTS[self.kind](**self.params)
        except (TypeError, ValueError) as exc:
            raise plant_params_error(exc, self.params) from exc


def plant_params_error(exc: Exception, params: dict) -> ConfigError:
    """A builder's ``"name: message"`` error as ``plant.params.name: message`` (``plant.params: …`` otherwise)."""
    name, _, rest = str(exc).partition(":")
    return ConfigError(f"plant.params.{name.strip()}:{rest}" if name.strip() in params else f"plant.params: {exc}")


@dataclass(frozen=True)
class SimulationConfig:
    scenarios: int = 16
    steps: int = 100
    seed: int = 0
    x0: tuple[float, ...] | None = None
    x0_std: float | tuple[float, ...] = field(default=0.0, metadata=VECTOR)  # a number or one per state
    forecast_std: tuple[float, ...] | None = None  # std of the disturbance forecast error, per channel
    dropout: float = 0.0  # probability that a measurement entry is missing
    chunk: int = 0  # samples per compiled chunk (0 = all at once)


@dataclass(frozen=True)
class WeatherConfig:
    start_hour: int = 0


@dataclass(frozen=True)
class DisturbanceConfig:
    """The true disturbance of a plant other than the building, per channel:
    ``d(t) = mean + amplitude·sin(2π t / period) + step·1{t ≥ step_time}`` (lists of one value per
    channel; None = zeros).  ``mean`` is also the disturbance a nonlinear twin is linearised at."""

    mean: tuple[float, ...] | None = None
    amplitude: tuple[float, ...] | None = None
    period: float = 1.0
    step: tuple[float, ...] | None = None
    step_time: float = 0.0


@dataclass(frozen=True)
class ControllerConfig:
    """``mpc``: the twin's LinearMPC tracking ``setpoint`` on the measured states (weight ``q``, input weight ``r``),
    energy price ``alpha``, demand charge ``beta`` above ``rho`` (on the sum of inputs), band
    ``[xmin, xmax]`` on the measured states as soft constraints (penalty ``soft_penalty``).
    ``setpoint``, ``xmin``, ``xmax``: a number or one per measured state; ``umin``, ``umax``: a
    number or one per input.  Nonlinear plants: the MPC is linearised at ``(x_op, u_op)`` (both or
    neither; default the steady state with the measured states at the setpoint).  ``precision``:
    ``"float32"`` runs the MPC's QP in single precision (about twice the batched throughput; needs
    ``eps`` >= 1e-4) while the model and the estimator stay in float64.  ``solver``: the MPC's QP
    solver (``"admm"``, ``"ipm"``, ``"fista"``: :data:`jtwin.qp.SOLVERS`) with tolerance ``eps`` and
    ``max_iter``; ``adaptive_rho_rule``, ``adaptive_rho_tolerance``: ADMM's step-size adaptation
    (:class:`jtwin.qp.ADMM`; empty / 0: the solver's default)."""

    kind: str = "mpc"
    setpoint: float | tuple[float, ...] | None = field(default=None, metadata=VECTOR)  # required
    umin: float | tuple[float, ...] = field(default=float("-inf"), metadata=VECTOR)
    umax: float | tuple[float, ...] = field(default=float("inf"), metadata=VECTOR)
    horizon: int = 24
    q: float = 1.0
    r: float = 0.01
    alpha: float = 0.0
    beta: float = 0.0
    rho: float = 0.0
    xmin: float | tuple[float, ...] = field(default=float("-inf"), metadata=VECTOR)
    xmax: float | tuple[float, ...] = field(default=float("inf"), metadata=VECTOR)
    soft_penalty: float = 100.0
    max_iter: int = 4000
    eps: float = 1e-4
    x_op: tuple[float, ...] | None = None
    u_op: tuple[float, ...] | None = None
    precision: str = "float64"  # the MPC's QP in "float64" or "float32" (model and estimator stay float64)
    solver: str = "admm"  # the MPC's QP solver: "admm" | "ipm" | "fista" (jtwin.qp.SOLVERS)
    adaptive_rho_rule: str = ""  # ADMM only: "osqp" or "residual" ("": the solver's default, "osqp")
    adaptive_rho_tolerance: float = 0.0  # ADMM only (0: the solver's default, 5)

    def qp_solver(self):
        """The MPC's QP solver object (:func:`jtwin.qp.make_solver`) with this table's options."""
        return make_solver(
            self.solver, eps_abs=self.eps, eps_rel=self.eps, max_iter=self.max_iter,
            adaptive_rho_rule=self.adaptive_rho_rule or None, adaptive_rho_tolerance=self.adaptive_rho_tolerance or None,
        )  # fmt: skip


@dataclass(frozen=True)
class EstimatorConfig:
    kind: str = "kf"
    gate: float = 1e-4  # χ² gate significance level of the filter; 0 = none (the twin gates on its own: Twin.gate)
    cov0: float | tuple[float, ...] = field(default=1.0, metadata=VECTOR)  # cov0 · I, or per-state variances (diagonal)


@dataclass(frozen=True)
class SyncConfig:
    delay: int = 0  # measurement transport delay, in samples
    compensate: bool = True  # predict the estimate forward to the actuation time


@dataclass(frozen=True)
class DriftConfig:
    alpha: float = 0.05
    correction: str = "bonferroni"
    min_effect: float = 0.0


@dataclass(frozen=True)
class Config:
    plant: PlantConfig
    simulation: SimulationConfig
    weather: WeatherConfig
    controller: ControllerConfig
    disturbance: DisturbanceConfig = DisturbanceConfig()
    estimator: EstimatorConfig = EstimatorConfig()
    sync: SyncConfig = SyncConfig()
    drift: DriftConfig = DriftConfig()
    train: TrainOptions = TrainOptions()
    source: str = "<string>"


def _table(data: dict, key: str, path: str, required: bool = False) -> dict:
    if key not in data:
        if required:
            raise ConfigError(f"{path}{key}: missing required table [{path}{key}]")
        return {}
    value = data[key]
    if not isinstance(value, dict):
        raise ConfigError(f"{path}{key}: expected a table, got {type(value).__name__}")
    return value


def _numbers(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)


def _coerce(path: str, value, default, vector: bool = False):
    """Check ``value`` against the type of the field's ``default`` (or a list of numbers for a ``vector``
    field); return it converted."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if vector and _numbers(value) and value:
        return tuple(float(v) for v in value)
    if vector and number:
        return float(value)
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = number and isinstance(value, int)
    elif isinstance(default, float):
        ok, value = number, float(value) if number else value
    elif isinstance(default, str):
        ok = isinstance(value, str)
    else:  # a vector (default None)
        ok = _numbers(value)
        value = tuple(float(v) for v in value) if ok else value
    if not ok:
        expected = "a list of numbers" if default is None else type(default).__name__
        expected = "a number or a non-empty list of numbers" if vector else expected
        raise ConfigError(f"{path}: expected {expected}, got {value!r}")
    return value


def _fields(cls, table: dict, path: str):
    """Build dataclass ``cls`` from ``table``, checking names and types; errors name ``path.field``."""
    known = cls.__dataclass_fields__
    for key in table:
        if key not in known:
            raise ConfigError(f"{path}.{key}: unknown field; expected one of {sorted(known)}")
    vector = {k: known[k].metadata.get("vector", False) for k in table}
    return cls(**{k: _coerce(f"{path}.{k}", v, known[k].default, vector[k]) for k, v in table.items()})


def parse_config(data: dict, source: str = "<string>") -> Config:
    """Validate a parsed TOML document and return a :class:`Config`."""
    plant = _table(data, "plant", "", required=True)
    unknown = set(data) - set(TABLES)
    if unknown:
        raise ConfigError(f"{sorted(unknown)[0]}: unknown table; expected one of {', '.join(TABLES)}")
    kind = plant.get("kind")
    if kind not in PLANTS:
        raise ConfigError(f"plant.kind: expected one of {sorted(PLANTS)}, got {kind!r}")
    extra = set(plant) - {"kind", "params"}
    if extra:
        raise ConfigError(f"plant.{sorted(extra)[0]}: unknown field; expected kind, params")
    params = _table(plant, "params", "plant.")
    accepted = {
        name: p.default
        for fn in (PLANTS[kind], _PARAMETER_CLASSES.get(kind, PLANTS[kind]))
        for name, p in inspect.signature(fn).parameters.items()
        if p.kind is not inspect.Parameter.VAR_KEYWORD
    }
    for name, value in params.items():
        if name not in accepted:
            raise ConfigError(f"plant.params.{name}: not a parameter of the {kind} plant; expected one of {sorted(accepted)}")
        default = accepted[name]
        if isinstance(default, (bool, int, float, str, tuple)):  # typed by its default (a float/tuple: number or list)
            _coerce(f"plant.params.{name}", value, default, vector=isinstance(default, (float, tuple)))
    sim = _fields(SimulationConfig, _table(data, "simulation", ""), "simulation")
    for name in ("scenarios", "steps"):
        if getattr(sim, name) < 1:
            raise ConfigError(f"simulation.{name}: expected a positive integer, got {getattr(sim, name)}")
    if np.any(np.asarray(sim.x0_std) < 0):
        raise ConfigError(f"simulation.x0_std: expected a non-negative number, got {sim.x0_std}")
    weather = _fields(WeatherConfig, _table(data, "weather", ""), "weather")
    ctrl = _fields(ControllerConfig, _table(data, "controller", "", required=True), "controller")
    if ctrl.setpoint is None:
        raise ConfigError(
            "controller.setpoint: missing required field: the reference of the measured states "
            "(a number, or one per measured state, e.g. setpoint = 21.0)"
        )
    if ctrl.kind not in CONTROLLER_KINDS:
        raise ConfigError(f"controller.kind: expected one of {list(CONTROLLER_KINDS)}, got {ctrl.kind!r}")
    for lo, hi in (("umin", "umax"), ("xmin", "xmax")):
        low, high = np.atleast_1d(getattr(ctrl, lo)), np.atleast_1d(getattr(ctrl, hi))
        if low.size != high.size and 1 not in (low.size, high.size):
            raise ConfigError(f"controller.{lo}: {low.size} values but controller.{hi} has {high.size}")
        if not np.all(low <= high):
            raise ConfigError(f"controller.{lo}: must be <= controller.{hi}, got {getattr(ctrl, lo)} > {getattr(ctrl, hi)}")
    if (ctrl.x_op is None) != (ctrl.u_op is None):
        given, missing = ("x_op", "u_op") if ctrl.u_op is None else ("u_op", "x_op")
        raise ConfigError(f"controller.{missing}: needed with controller.{given} (give both or neither)")
    if ctrl.solver not in SOLVERS:
        raise ConfigError(f"controller.solver: expected one of {list(SOLVERS)}, got {ctrl.solver!r}")
    try:  # the solver checks its own options (one place for them)
        ctrl.qp_solver()
    except ValueError as exc:
        raise ConfigError(f"controller.{exc}") from exc
    if ctrl.precision not in PRECISIONS:
        raise ConfigError(f"controller.precision: expected one of {list(PRECISIONS)}, got {ctrl.precision!r}")
    if ctrl.precision == "float32" and ctrl.eps < 1e-4:
        raise ConfigError(f"controller.eps: float32 solves resolve tolerances down to 1e-4, got {ctrl.eps}")
    for name in ("horizon", "max_iter"):
        if getattr(ctrl, name) < 1:
            raise ConfigError(f"controller.{name}: expected a positive integer, got {getattr(ctrl, name)}")
    for name in ("q", "r", "alpha", "beta", "soft_penalty", "eps"):
        if not getattr(ctrl, name) >= 0:
            raise ConfigError(f"controller.{name}: expected a non-negative number, got {getattr(ctrl, name)}")
    est = _fields(EstimatorConfig, _table(data, "estimator", ""), "estimator")
    if est.kind not in ESTIMATORS:
        raise ConfigError(f"estimator.kind: expected one of {list(ESTIMATORS)}, got {est.kind!r}")
    if not 0.0 <= est.gate < 1.0:
        raise ConfigError(f"estimator.gate: expected 0 (off) or a significance level in (0, 1), got {est.gate}")
    if not np.all(np.asarray(est.cov0) > 0):
        raise ConfigError(f"estimator.cov0: expected positive variances (a number or one per state), got {est.cov0}")
    sync = _fields(SyncConfig, _table(data, "sync", ""), "sync")
    if sync.delay < 0:
        raise ConfigError(f"sync.delay: expected a non-negative number of samples, got {sync.delay}")
    if not 0.0 <= sim.dropout < 1.0:
        raise ConfigError(f"simulation.dropout: expected a probability in [0, 1), got {sim.dropout}")
    if sim.chunk < 0:
        raise ConfigError(f"simulation.chunk: expected a non-negative integer, got {sim.chunk}")
    if sim.forecast_std is not None and min(sim.forecast_std, default=0.0) < 0:
        raise ConfigError(f"simulation.forecast_std: expected non-negative values, got {list(sim.forecast_std)}")
    dist = _fields(DisturbanceConfig, _table(data, "disturbance", ""), "disturbance")
    if "disturbance" in data and kind == "building":
        raise ConfigError("disturbance: the building's disturbances are its weather; configure [weather] instead")
    if not dist.period > 0:
        raise ConfigError(f"disturbance.period: expected a positive period, got {dist.period}")
    drift = _fields(DriftConfig, _table(data, "drift", ""), "drift")
    if not 0.0 < drift.alpha < 1.0:
        raise ConfigError(f"drift.alpha: expected a level in (0, 1), got {drift.alpha}")
    if drift.correction not in ("bonferroni", "holm"):
        raise ConfigError(f"drift.correction: expected 'bonferroni' or 'holm', got {drift.correction!r}")
    try:
        train = _fields(TrainOptions, _table(data, "train", ""), "train")
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    return Config(PlantConfig(kind, dict(params)), sim, weather, ctrl, dist, est, sync, drift, train, source)


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: malformed TOML: {exc}") from exc
    return parse_config(data, str(path))
