"""``jtwin run``: a twin (KF/EKF/UKF + MPC) in closed loop with the configured plant, over a batch of scenarios.

Scenarios differ in their initial state, noise, disturbance-forecast errors and sensor
dropouts; all run in one jitted, vmapped rollout (sharded over devices when there are
several) and the KPIs are summarised across scenarios (mean, p50, p95, CVaR).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from . import estimation
from .config import Config, ConfigError, load_config
from .kpi import format_summary, scenario_kpis, summarize
from .models import AbstractModel, LinearModel
from .models.library import load_tmy3_greensboro
from .simulate import make_scenarios, simulate
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


def build_twin(cfg: Config, model: AbstractModel) -> Twin:
    """The twin of ``[estimator]``, ``[controller]`` (MPC) and ``[sync]`` on ``model``.

    The MPC tracks ``setpoint`` on the measured states (rows of H that pick one state) with
    the band ``[xmin, xmax]`` on them as soft constraints, and charges ``alpha`` per unit of
    ``|u|`` and ``beta`` per unit of ``Σu`` above ``rho``.
    """
    c = cfg.controller
    if not isinstance(model, LinearModel):
        raise ConfigError(
            f"controller.kind: the MPC twin needs a linear plant model; plant.kind = {cfg.plant.kind!r} is nonlinear"
        )
    measured = np.asarray(jnp.any(model.H != 0, axis=0))
    Q = np.diag(np.where(measured, c.q, 0.0))
    xref = np.where(measured, c.setpoint, 0.0)
    xmin = np.where(measured, c.xmin, -np.inf)
    xmax = np.where(measured, c.xmax, np.inf)
    soft = c.soft_penalty if np.isfinite(xmin).any() or np.isfinite(xmax).any() else None
    return Twin.from_linear_model(
        model,
        build_estimator(cfg),
        c.horizon,
        delay=cfg.sync.delay,
        compensate=cfg.sync.compensate,
        Q=Q,
        R=c.r * np.eye(model.input_dim),
        xref=xref,
        umin=c.umin,
        umax=c.umax,
        xmin=xmin,
        xmax=xmax,
        soft_penalty=soft,
        alpha=c.alpha,
        beta=c.beta,
        rho=c.rho,
        eps_abs=c.eps,
        eps_rel=c.eps,
        max_iter=c.max_iter,
    )


def run_config(path: str, scenarios: int | None = None, steps: int | None = None, params: str | None = None) -> str:
    """Run the config at ``path`` and return a printable KPI summary.

    ``params``: a ``params.eqx`` written by ``jtwin train``; the plant (and the twin's model) then
    use the fitted parameters.
    """
    cfg = load_config(path)
    sim = cfg.simulation
    scenarios = sim.scenarios if scenarios is None else scenarios
    steps = sim.steps if steps is None else steps
    if scenarios < 1 or steps < 1:
        raise ConfigError(f"--scenarios/--steps: expected positive integers, got {scenarios}, {steps}")
    if params is None:
        model = cfg.plant.build()
    else:
        from .learn.train import load_fitted

        model = load_fitted(cfg, params)
    n = model.state_dim
    x0 = np.zeros(n) if sim.x0 is None else np.asarray(sim.x0)
    if x0.shape != (n,):
        raise ConfigError(f"simulation.x0: expected {n} values (the {cfg.plant.kind} state), got {x0.shape[0]}")
    twin = build_twin(cfg, model)
    total = steps + twin.horizon
    if cfg.plant.kind == "building":
        ds = load_tmy3_greensboro().disturbances(cfg.weather.start_hour, total, model.dt)
    else:
        ds = np.zeros((total, model.disturbance_dim))
    forecast_std = np.zeros(model.disturbance_dim) if sim.forecast_std is None else np.asarray(sim.forecast_std)
    if forecast_std.shape != (model.disturbance_dim,):
        raise ConfigError(
            f"simulation.forecast_std: expected {model.disturbance_dim} values (one per disturbance), got {forecast_std.size}"
        )
    batch = make_scenarios(
        jax.random.PRNGKey(sim.seed),
        scenarios,
        jnp.asarray(x0),
        jnp.asarray(ds),
        model.input_dim,
        x0_std=sim.x0_std,
        forecast_std=forecast_std,
        dropout=sim.dropout,
    )
    start = time.perf_counter()
    rollout = simulate(model, twin, batch, steps, cfg.estimator.cov0 * np.eye(n), chunk=sim.chunk or None)
    jax.block_until_ready(rollout.x)
    elapsed = time.perf_counter() - start
    if not np.all(np.isfinite(np.asarray(rollout.x))):
        raise FloatingPointError("simulation produced non-finite states; check the config's parameters and dt")
    header = (
        f"jtwin run {cfg.source}: plant={cfg.plant.kind} (n={n}, m={model.input_dim}), twin = "
        f"{cfg.estimator.kind.upper()} + MPC(horizon {twin.horizon}), delay={cfg.sync.delay}"
        f"{' compensated' if cfg.sync.compensate and cfg.sync.delay else ''}\n"
        f"{scenarios} scenarios x {steps} steps of dt={model.dt:g}: {elapsed:.2f} s incl. compilation "
        f"({scenarios * steps / elapsed:,.0f} scenario-steps/s)"
    )
    return header + "\n" + format_summary(summarize(scenario_kpis(rollout, twin.controller, model.dt)))
