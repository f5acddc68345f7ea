"""``jtwin run``: simulate a configured plant over a batch of scenarios and summarise KPIs.

Until the twin (estimator + MPC) is wired in, the loop is closed by the config's simple
controller (``proportional`` on the measurements, or ``none``).  Scenarios differ in their
initial-state draw and in process/measurement noise; all run in one jitted ``vmap``.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from .config import Config, ConfigError, ControllerConfig, load_config
from .models import AbstractModel
from .models.library import load_tmy3_greensboro


def proportional_rollout(
    model: AbstractModel, ctrl: ControllerConfig, key, x0, ds, steps: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One closed-loop scenario: ``u = clip(gain (setpoint − y), umin, umax)`` (or 0 for ``none``).

    Returns states [T, n], measurements [T, ny], inputs [T, m].
    """
    kw, kv = jax.random.split(key)
    ws = jax.random.normal(kw, (steps, model.state_dim)) @ jnp.tril(model.Q_factor).T
    vs = jax.random.normal(kv, (steps, model.R_factor.shape[0])) @ jnp.tril(model.R_factor).T
    ts = model.dt * jnp.arange(steps)

    def step(x, inp):
        d, w, v, t = inp
        y = model.observe_noisy(x, jnp.zeros(model.input_dim), t, v)
        if ctrl.kind == "proportional":
            u = jnp.clip(ctrl.gain * (ctrl.setpoint - y[: model.input_dim]), ctrl.umin, ctrl.umax)
        else:
            u = jnp.zeros(model.input_dim)
        x_next = model.transition(x, u, t, d if model.disturbance_dim else None) + w
        return x_next, (x, y, u)

    _, (xs, ys, us) = jax.lax.scan(step, x0, (ds, ws, vs, ts))
    return xs, ys, us


def kpis(cfg: Config, model: AbstractModel, ys, us) -> dict[str, np.ndarray]:
    """Per-scenario KPIs: tracking RMSE of the measurements to the setpoint, energy Σ|u|·dt, peak Σu."""
    dt = model.dt
    return {
        "tracking_rmse": np.sqrt(np.mean((np.asarray(ys) - cfg.controller.setpoint) ** 2, axis=(1, 2))),
        "energy": np.sum(np.abs(np.asarray(us)), axis=(1, 2)) * dt,
        "peak_power": np.max(np.sum(np.asarray(us), axis=2), axis=1),
    }


def run_config(path: str, scenarios: int | None = None, steps: int | None = None) -> str:
    """Run the config at ``path`` and return a printable KPI summary."""
    cfg = load_config(path)
    sim = cfg.simulation
    scenarios = sim.scenarios if scenarios is None else scenarios
    steps = sim.steps if steps is None else steps
    if scenarios < 1 or steps < 1:
        raise ConfigError(f"--scenarios/--steps: expected positive integers, got {scenarios}, {steps}")
    model = cfg.plant.build()
    n = model.state_dim
    x0 = np.zeros(n) if sim.x0 is None else np.asarray(sim.x0)
    if x0.shape != (n,):
        raise ConfigError(f"simulation.x0: expected {n} values (the {cfg.plant.kind} state), got {x0.shape[0]}")
    if cfg.plant.kind == "building":
        ds = load_tmy3_greensboro().disturbances(cfg.weather.start_hour, steps, model.dt)
    else:
        ds = np.zeros((steps, model.disturbance_dim))
    key_x0, key_noise = jax.random.split(jax.random.PRNGKey(sim.seed))
    x0s = x0 + sim.x0_std * jax.random.normal(key_x0, (scenarios, n))
    keys = jax.random.split(key_noise, scenarios)
    rollout = jax.jit(jax.vmap(lambda k, x: proportional_rollout(model, cfg.controller, k, x, ds, steps)))
    start = time.perf_counter()
    xs, ys, us = jax.block_until_ready(rollout(keys, x0s))
    elapsed = time.perf_counter() - start
    if not np.all(np.isfinite(np.asarray(xs))):
        raise FloatingPointError("simulation produced non-finite states; check the config's parameters and dt")
    table = kpis(cfg, model, ys, us)
    lines = [
        f"jtwin run {cfg.source}: plant={cfg.plant.kind} (n={n}, m={model.input_dim}), "
        f"controller={cfg.controller.kind}, {scenarios} scenarios x {steps} steps of dt={model.dt:g}",
        f"compiled+ran in {elapsed:.2f} s ({scenarios * steps / elapsed:,.0f} scenario-steps/s incl. compile)",
        f"{'KPI':<16}{'mean':>12}{'p5':>12}{'p95':>12}",
    ]
    for name, values in table.items():
        lines.append(f"{name:<16}{values.mean():>12.3f}{np.percentile(values, 5):>12.3f}{np.percentile(values, 95):>12.3f}")
    return "\n".join(lines)
