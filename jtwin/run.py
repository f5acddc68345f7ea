"""``jtwin run``: a twin (KF/EKF/UKF + MPC) in closed loop with the configured plant, over a batch of scenarios.

Scenarios differ in their initial state, noise, disturbance-forecast errors and sensor
dropouts; all run in one jitted, vmapped rollout (sharded over devices when there are
several) and the KPIs are summarised across scenarios (mean, p50, p95, CVaR).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import estimation
from ._checks import covariance_from_factor
from .config import Config, ConfigError, load_config
from .control import LinearMPC
from .control.kinds import CONTROLLER_NAMES, controller_like
from .kpi import format_summary, scenario_kpis, summarize
from .models import AbstractModel, LinearModel, jacobian_transform, steady_state
from .models.library import load_tmy3_greensboro
from .report.timing import CompileTimer
from .report.vocabulary import PlantVocabulary, vocabulary
from .simulate import Rollout, make_scenarios, simulate
from .qp import is_successful, status_name
from .twin import Twin


def build_estimator(cfg: Config):
    """The estimator named by ``[estimator]``."""
    gate = cfg.estimator.gate or None
    kinds = {
        "kf": lambda: estimation.KF(gate=gate),
        "ekf": lambda: estimation.EKF(gate=gate),
        "ukf": lambda: estimation.UKF(gate=gate),
        "srukf": lambda: estimation.SquareRootUKF(gate=gate),
    }
    return kinds[cfg.estimator.kind]()


def _per(path: str, value, size: int, what: str) -> np.ndarray:
    """A config number broadcast to ``size`` entries, or a list that must have exactly ``size``."""
    arr = np.atleast_1d(np.asarray(value, float))
    if arr.size not in (1, size):
        raise ConfigError(f"{path}: expected a number or {size} values (one per {what}), got {arr.size}")
    return np.broadcast_to(arr, (size,)).copy()


def _vector(path: str, value, size: int, what: str) -> np.ndarray | None:
    """An optional config list that must have exactly ``size`` entries."""
    if value is None:
        return None
    arr = np.asarray(value, float)
    if arr.shape != (size,):
        raise ConfigError(f"{path}: expected {size} values (one per {what}), got {arr.size}")
    return arr


def prior_covariance(cfg: Config, n: int) -> np.ndarray:
    """The twin's initial covariance [n, n] from ``[estimator] cov0``: ``cov0 · I`` for a number,
    ``diag(cov0)`` for one variance per state."""
    return np.diag(_per("estimator.cov0", cfg.estimator.cov0, n, "state"))


def disturbance_series(cfg: Config, model: AbstractModel, steps: int) -> np.ndarray:
    """The true disturbances ``d[0..steps−1]`` [steps, p]: the building's weather, else ``[disturbance]``."""
    if cfg.plant.kind == "building":
        return np.asarray(load_tmy3_greensboro().disturbances(cfg.weather.start_hour, steps, model.dt))
    dist, p = cfg.disturbance, model.disturbance_dim
    t = model.dt * np.arange(steps)[:, None]
    zero = np.zeros(p)
    mean, amplitude, step = (
        zero if v is None else _vector(f"disturbance.{name}", v, p, "disturbance")
        for name, v in (("mean", dist.mean), ("amplitude", dist.amplitude), ("step", dist.step))
    )
    return mean + amplitude * np.sin(2 * np.pi * t / dist.period) + step * (t >= dist.step_time)


def _input_guess(umin: np.ndarray, umax: np.ndarray) -> np.ndarray:
    """The middle of the input box where both ends are finite, else its finite end, else 0."""
    lo = np.where(np.isfinite(umin), umin, np.where(np.isfinite(umax), umax, 0.0))
    hi = np.where(np.isfinite(umax), umax, lo)
    return (lo + hi) / 2


def _measured_states(model: AbstractModel, x: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Mask [n] of the states the measurement depends on (nonzero columns of ``∂h/∂x`` at ``(x, u)``)."""
    H = jacobian_transform(model)(lambda x_: model.observe(x_, jnp.asarray(u), 0.0))(jnp.asarray(x))
    return np.asarray(jnp.any(H != 0, axis=0))


def operating_point(
    cfg: Config, model: AbstractModel, measured: np.ndarray, setpoint: np.ndarray, x_guess, u_guess, d_op
) -> tuple[np.ndarray, np.ndarray]:
    """``(x_op, u_op)``: ``controller.x_op/u_op`` if given, else the steady state of ``model`` (at ``d_op``)
    with the measured states at ``setpoint`` (:func:`jtwin.models.steady_state` from the guesses)."""
    c = cfg.controller
    if c.x_op is not None:
        return (
            _vector("controller.x_op", c.x_op, model.state_dim, "state"),
            _vector("controller.u_op", c.u_op, model.input_dim, "input"),
        )
    select = np.eye(model.state_dim)[measured]
    ss = steady_state(model, x_guess, u_guess, select, setpoint, d=d_op)
    if not bool(is_successful(ss.status)):
        raise ConfigError(
            f"controller.setpoint: no steady state of the {cfg.plant.kind} plant found with the measured states at "
            f"{list(setpoint)} (Newton from simulation.x0: {status_name(ss.status)}, "
            f"residual {float(ss.residual):.3g}); "
            "give controller.x_op and controller.u_op"
        )
    return np.asarray(ss.x), np.asarray(ss.u)


def build_twin(cfg: Config, model: AbstractModel) -> Twin:
    """The twin of ``[estimator]``, ``[controller]`` and ``[sync]`` on ``model``: the MPC problem of
    :func:`build_mpc_twin`, solved by the controller ``kind`` (:mod:`jtwin.control.kinds`) in the
    configured precision."""
    return _with_controller_kind(cfg, model, build_mpc_twin(cfg, model))


def build_mpc_twin(cfg: Config, model: AbstractModel) -> Twin:
    """The twin of ``[estimator]``, ``[controller]`` (as a :class:`~jtwin.control.LinearMPC`, in float64)
    and ``[sync]`` on ``model``.

    The MPC tracks ``setpoint`` on the measured states (those ``h`` depends on) with the band
    ``[xmin, xmax]`` on them as soft constraints, and charges ``alpha`` per unit of ``|u|`` and
    ``beta`` per unit of ``Σu`` above ``rho``.  A linear plant is controlled with its own
    matrices; a nonlinear one (estimated by the EKF/UKF on the nonlinear model) with its
    linearisation at the operating point (:func:`operating_point`; :meth:`Twin.from_model`),
    the MPC's input costs then acting on ``u − u_op``.
    """
    c = cfg.controller
    n, m = model.state_dim, model.input_dim
    linear = isinstance(model, LinearModel)
    if not linear and cfg.estimator.kind == "kf":
        raise ConfigError(
            f"estimator.kind: 'kf' needs a linear plant model; plant.kind = {cfg.plant.kind!r} is nonlinear "
            "(use 'ekf', 'ukf' or 'srukf')"
        )
    umin = _per("controller.umin", c.umin, m, "input")
    umax = _per("controller.umax", c.umax, m, "input")
    x_guess = np.zeros(n) if cfg.simulation.x0 is None else _vector("simulation.x0", cfg.simulation.x0, n, "state")
    p = model.disturbance_dim
    mean = cfg.disturbance.mean
    d_op = np.zeros(p) if mean is None else _vector("disturbance.mean", mean, p, "disturbance")
    u_guess = _input_guess(umin, umax) if c.u_op is None else _vector("controller.u_op", c.u_op, m, "input")
    measured = _measured_states(model, x_guess, u_guess)
    k = int(measured.sum())
    setpoint = _per("controller.setpoint", c.setpoint, k, "measured state")
    xref = np.zeros(n)
    xref[measured] = setpoint
    xmin, xmax = np.full(n, -np.inf), np.full(n, np.inf)
    xmin[measured] = _per("controller.xmin", c.xmin, k, "measured state")
    xmax[measured] = _per("controller.xmax", c.xmax, k, "measured state")
    soft = c.soft_penalty if np.isfinite(xmin).any() or np.isfinite(xmax).any() else None
    mpc = dict(
        Q=np.diag(np.where(measured, c.q, 0.0)),
        R=c.r * np.eye(m),
        umin=umin,
        umax=umax,
        xmin=xmin,
        xmax=xmax,
        soft_penalty=soft,
        alpha=c.alpha,
        beta=c.beta,
        rho=c.rho,
        solver=c.qp_solver(),
    )
    options = dict(delay=cfg.sync.delay, compensate=cfg.sync.compensate, gate=cfg.estimator.gate or None)  # gate 0: off
    if linear:
        twin = Twin.from_linear_model(model, build_estimator(cfg), c.horizon, xref=xref, **options, **mpc)
    else:
        x_op, u_op = operating_point(cfg, model, measured, setpoint, x_guess, u_guess, d_op)
        xref[~measured] = x_op[~measured]  # the unmeasured states' reference: their value at the operating point
        twin = Twin.from_model(model, build_estimator(cfg), c.horizon, x_op, u_op, d_op=d_op, xref=xref, **options, **mpc)
    return twin


def _with_controller_kind(cfg: Config, model: AbstractModel, twin: Twin) -> Twin:
    """``twin`` with its MPC replaced by the same problem for ``controller.kind``, in ``controller.precision``."""
    c = cfg.controller
    if c.kind != "mpc":  # the same problem for another controller kind (jtwin.control.kinds)
        noise = covariance_from_factor(model.Q_factor)
        try:
            ctrl = controller_like(c.kind, twin.controller, noise)
        except ValueError as exc:
            raise ConfigError(f"controller.{exc}") from exc
        twin = replace(twin, controller=ctrl)
    return twin if c.precision == "float64" else twin.with_controller_dtype(jnp.dtype(c.precision))


@dataclass(frozen=True)
class RunResult:
    """What ``jtwin run`` computed: the closed-loop ``rollout`` of ``scenarios`` × ``steps`` of the configured
    twin, its per-scenario ``kpis`` (:func:`jtwin.kpi.scenario_kpis`), the plant's ``words`` (units and KPI
    names), the true ``disturbances`` [steps + horizon, p], and the ``timing`` split into compilation and run.
    ``problem``: the configured MPC problem (costs, bounds, reference) that the KPIs and plots score,
    whichever controller ``kind`` ran it.

    ``params``: the ``params.eqx`` the plant's parameters came from (None: the config's ``[plant.params]``)
    and ``fitted`` the parameter pytree loaded from it.
    """

    cfg: Config
    model: AbstractModel
    twin: Twin
    problem: LinearMPC
    rollout: Rollout
    disturbances: np.ndarray
    kpis: dict[str, np.ndarray]
    words: PlantVocabulary
    timing: CompileTimer
    scenarios: int
    steps: int
    params: str | None = None
    fitted: Any = None

    @property
    def summary(self) -> dict[str, dict[str, float]]:
        """The KPIs aggregated across scenarios (:func:`jtwin.kpi.summarize`)."""
        return summarize(self.kpis)

    @property
    def precision(self) -> dict[str, str]:
        """The dtypes in use: the plant model and estimator's, and the MPC's QP's."""
        return {"model_and_estimator": str(jnp.result_type(float)), "mpc": self.cfg.controller.precision}

    def header(self) -> str:
        """What ran, with which parameters and precision, and how fast (compilation reported apart)."""
        cfg, n, m = self.cfg, self.model.state_dim, self.model.input_dim
        dt, unit = float(self.model.dt), self.words.time_unit
        delay = (
            f"measurement delay {cfg.sync.delay} samples{' (compensated)' if cfg.sync.compensate else ''}"
            if cfg.sync.delay
            else "no measurement delay"
        )
        params = (
            f"fitted, from {self.params}"
            if self.params
            else "configured [plant.params] " + (", ".join(f"{k}={v}" for k, v in cfg.plant.params.items()) or "(defaults)")
        )
        t = self.timing
        rate = self.scenarios * self.steps / max(t.run_s, 1e-9)
        lines = [
            f"jtwin run {cfg.source}: {cfg.plant.kind} plant ({n} states, {m} inputs), twin = "
            f"{cfg.estimator.kind.upper()} + {CONTROLLER_NAMES[cfg.controller.kind]} "
            f"(horizon {self.twin.horizon} steps = {self.twin.horizon * dt:g} {unit}), {delay}",
            f"parameters: {params}",
            f"precision: model and estimator {self.precision['model_and_estimator']}, controller {self.precision['mpc']}"
            + (  # the QP's settings, for the kinds that solve one (all but the LQR)
                f" (QP solver {cfg.controller.solver}, eps {cfg.controller.eps:g}, max_iter {cfg.controller.max_iter})"
                if cfg.controller.kind != "lqr"
                else ""
            ),
            f"{self.scenarios} scenarios x {self.steps} steps of {dt:g} {unit} ({self.steps * dt:g} {unit}): "
            f"run {t.run_s:.2f} s = {rate:,.0f} scenario-steps/s, plus {t.compile_s:.2f} s compilation",
        ]
        op = self.twin.operating_point
        if op is not None:
            lines.append(
                f"MPC linearised at the operating point x_op = {np.round(np.asarray(op.x), 4).tolist()}, "
                f"u_op = {np.round(np.asarray(op.u), 4).tolist()}"
            )
        return "\n".join(lines)

    def table(self) -> str:
        """The header and the KPI table in the plant's names and units."""
        return self.header() + "\n" + format_summary(self.summary, descriptions=self.words.kpis)


def run_twin(path: str, scenarios: int | None = None, steps: int | None = None, params: str | None = None) -> RunResult:
    """Run the config at ``path``: its twin in closed loop with its plant over a batch of scenarios.

    ``scenarios``, ``steps`` override ``[simulation]``; ``params``: a ``params.eqx`` written by
    ``jtwin train``, whose fitted parameters the plant (and the twin's model) then use.
    """
    cfg = load_config(path)
    sim = cfg.simulation
    scenarios = sim.scenarios if scenarios is None else scenarios
    steps = sim.steps if steps is None else steps
    if scenarios < 1 or steps < 1:
        raise ConfigError(f"--scenarios/--steps: expected positive integers, got {scenarios}, {steps}")
    fitted = None
    if params is None:
        model = cfg.plant.build()
    else:
        from .learn.train import load_fitted, load_fitted_parameters

        fitted, model = load_fitted_parameters(cfg, params), load_fitted(cfg, params)
    n = model.state_dim
    x0 = np.zeros(n) if sim.x0 is None else np.asarray(sim.x0)
    if x0.shape != (n,):
        raise ConfigError(f"simulation.x0: expected {n} values (the {cfg.plant.kind} state), got {x0.shape[0]}")
    ds = disturbance_series(cfg, model, steps + cfg.controller.horizon)
    x0_std = _per("simulation.x0_std", sim.x0_std, n, "state")
    forecast_std = np.zeros(model.disturbance_dim) if sim.forecast_std is None else np.asarray(sim.forecast_std)
    if forecast_std.shape != (model.disturbance_dim,):
        raise ConfigError(
            f"simulation.forecast_std: expected {model.disturbance_dim} values (one per disturbance), got {forecast_std.size}"
        )
    mpc_twin = build_mpc_twin(cfg, model)
    twin = _with_controller_kind(cfg, model, mpc_twin)
    batch = make_scenarios(
        jax.random.PRNGKey(sim.seed),
        scenarios,
        jnp.asarray(x0),
        jnp.asarray(ds),
        model.input_dim,
        x0_std=x0_std,
        forecast_std=forecast_std,
        dropout=sim.dropout,
    )
    with CompileTimer() as timing:
        rollout = simulate(model, twin, batch, steps, prior_covariance(cfg, n), chunk=sim.chunk or None)
        jax.block_until_ready(rollout.x)
    if not np.all(np.isfinite(np.asarray(rollout.x))):
        raise FloatingPointError("simulation produced non-finite states; check the config's parameters and dt")
    problem = mpc_twin.controller  # what the KPIs and plots score, whichever controller kind ran it
    kpis = scenario_kpis(rollout, problem, model.dt, operating_point=twin.operating_point)
    words = vocabulary(cfg.plant.kind, model, cfg.controller)
    return RunResult(cfg, model, twin, problem, rollout, ds, kpis, words, timing, scenarios, steps, params, fitted)


def run_config(path: str, scenarios: int | None = None, steps: int | None = None, params: str | None = None) -> str:
    """Run the config at ``path`` (:func:`run_twin`) and return the printable header and KPI table."""
    return run_twin(path, scenarios, steps, params).table()
