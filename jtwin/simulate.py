"""Closed-loop rollouts of plant + twin over batches of scenarios (``lax.scan`` in time, ``vmap`` over scenarios).

The simulated plant may differ from the twin's model: other parameters (a plant per
scenario), actuator faults (a gain per input), sensor dropouts (each measurement entry
missing with a probability), disturbances the twin only knows through a forecast.  Each
step::

    y[k] = h_plant(x[k]) + v[k]          (entries dropped to NaN with probability `dropout`)
    u[k] = twin.step(state, y[k − D], t[k − D], d̂[k..k+N−1])     (D = twin.delay)
    x[k+1] = f_plant(x[k], gain ⊙ u[k], t[k], d[k]) + w[k]

Long runs execute in chunks of time steps (one compiled chunk reused) with a progress
bar, and the scenario axis can be sharded over all devices (``jax.sharding.Mesh`` with a
``scenarios`` axis); results do not depend on the number of devices.  :func:`rollout` is the
same loop as one pure, differentiable function (time chunks under ``jax.checkpoint``), used
to tune the twin through the closed loop (:func:`jtwin.learn.tune`).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .models import AbstractModel
from .qp import RESULTS
from .twin import Twin, TwinState


class Scenario(eqx.Module):
    """One closed-loop scenario (batched: every field gets a leading scenario axis).

    ``x0`` [n]: true initial plant state; ``mean0`` [n]: the twin's initial estimate;
    ``d`` [T + N, p]: true disturbances; at sample k the twin knows ``d[k]`` and gets the forecast
    ``d[k+i] + forecast_error[k+i]`` for ``i = 1..N−1``; ``forecast_error`` [T + N, p]; ``key``: noise seed; ``dropout``: probability that a
    measurement entry is missing; ``actuator_gain`` [m]: actuator fault (1 = healthy).
    """

    x0: Float[Array, " n"]
    mean0: Float[Array, " n"]
    d: Float[Array, "T p"]
    forecast_error: Float[Array, "T p"]
    key: PRNGKeyArray
    dropout: Float[Array, ""]
    actuator_gain: Float[Array, " m"]


def make_scenarios(
    key: PRNGKeyArray,
    count: int,
    x0: Float[Array, " n"],
    d: Float[Array, "T p"],
    m: int,
    *,
    x0_std: float = 0.0,
    mean0: Float[Array, " n"] | None = None,
    forecast_std: float | Float[Array, " p"] = 0.0,
    dropout: float = 0.0,
    actuator_gain: Float[Array, " m"] | None = None,
) -> Scenario:
    """``count`` scenarios: initial states ``x0 + x0_std·N(0, I)``, shared true disturbances ``d``,
    forecast errors ``forecast_std·N(0, I)`` (``forecast_std`` scalar or [p]), independent noise
    keys (batched :class:`Scenario`)."""
    x0 = jnp.asarray(x0)
    d = jnp.asarray(d, x0.dtype)
    k_x, k_f, k_noise = jax.random.split(key, 3)
    x0s = x0 + x0_std * jax.random.normal(k_x, (count,) + x0.shape, x0.dtype)
    return Scenario(
        x0=x0s,
        mean0=jnp.broadcast_to(x0 if mean0 is None else jnp.asarray(mean0, x0.dtype), x0s.shape),
        d=jnp.broadcast_to(d, (count,) + d.shape),
        forecast_error=forecast_std * jax.random.normal(k_f, (count,) + d.shape, x0.dtype),
        key=jax.random.split(k_noise, count),
        dropout=jnp.full((count,), dropout, x0.dtype),
        actuator_gain=jnp.ones((count, m), x0.dtype) if actuator_gain is None else jnp.broadcast_to(actuator_gain, (count, m)),
    )


class Rollout(eqx.Module):
    """Closed-loop trajectories, each with a leading scenario axis: ``x`` [S, T, n] plant states,
    ``y`` [S, T, ny] measurements (NaN = missing), ``u`` [S, T, m] inputs, ``xhat`` [S, T, n]
    the twin's prior estimates of the measured states, ``status`` [S, T] MPC statuses, ``nis``
    [S, T] normalised innovation squared of each update and ``measured`` [S, T] the number of
    measurement entries it used."""

    x: Float[Array, "S T n"]
    y: Float[Array, "S T ny"]
    u: Float[Array, "S T m"]
    xhat: Float[Array, "S T n"]
    status: RESULTS  # [S, T]
    nis: Float[Array, "S T"]
    measured: Int[Array, "S T"]


class _Carry(eqx.Module):
    x: Array
    twin: TwinState
    ybuf: Array  # measurements not yet delivered, oldest first [D, ny]


def _init_carry(plant: AbstractModel, twin: Twin, s: Scenario, cov0) -> _Carry:
    ny = plant.output_dim
    return _Carry(
        x=s.x0,
        twin=twin.init(s.mean0, cov0),
        ybuf=jnp.full((twin.delay, ny), jnp.nan, s.x0.dtype),
    )


def scenario_noise(plant: AbstractModel, s: Scenario, k) -> tuple[Array, Array, Array]:
    """The noise of scenario ``s`` at sample ``k``: process noise ``w`` [n] ~ N(0, Q), measurement
    noise ``v`` [nv] ~ N(0, R) and the dropout mask [ny] (True = entry missing).

    Drawn from ``fold_in(s.key, k)``, so a sample's noise does not depend on chunking or sharding.
    """
    kw, kv, kdrop = jax.random.split(jax.random.fold_in(s.key, k), 3)
    dtype = s.x0.dtype
    w = jnp.tril(plant.Q_factor) @ jax.random.normal(kw, (plant.state_dim,), dtype)
    v = jnp.tril(plant.R_factor) @ jax.random.normal(kv, (plant.R_factor.shape[0],), dtype)
    return w, v, jax.random.uniform(kdrop, (plant.output_dim,)) < s.dropout


def _chunk(plant: AbstractModel, twin: Twin, s: Scenario, carry: _Carry, k0, steps: int):
    """Advance one scenario ``steps`` samples from sample ``k0``."""
    m, p = plant.input_dim, plant.disturbance_dim
    N, D, dt = twin.horizon, twin.delay, plant.dt

    def body(c: _Carry, k):
        t = k * dt
        w, v, dropped = scenario_noise(plant, s, k)
        y_now = jnp.where(dropped, jnp.nan, plant.observe_noisy(c.x, jnp.zeros(m, c.x.dtype), t, v))
        if D:
            y_in = c.ybuf[0]
            ybuf = jnp.concatenate([c.ybuf[1:], y_now[None]])
        else:
            y_in, ybuf = y_now, c.ybuf
        if p:  # d[k] is known (measured) now; later samples are forecasts
            forecast = jax.lax.dynamic_slice_in_dim(s.d + s.forecast_error, k, N).at[0].set(s.d[k])
        else:
            forecast = None
        xhat = c.twin.belief.mean
        u, tstate = twin.step(c.twin, y_in, t - D * dt, forecast)
        d_k = s.d[k] if p else None
        x_next = plant.transition(c.x, s.actuator_gain * u, t, d_k) + w
        return _Carry(x_next, tstate, ybuf), (c.x, y_now, u, xhat, tstate.status, tstate.nis, tstate.measured)

    carry, out = jax.lax.scan(body, carry, k0 + jnp.arange(steps))
    return carry, out


@eqx.filter_jit
def _init_batch(plant: AbstractModel, twin: Twin, scenarios: Scenario, cov0) -> _Carry:
    return eqx.filter_vmap(lambda s: _init_carry(plant, twin, s, cov0))(scenarios)


@eqx.filter_jit
def _run_batch(plant: AbstractModel, twin: Twin, scenarios: Scenario, carry: _Carry, k0, length: int):
    """One compiled chunk of :func:`simulate` for all scenarios (module level, so it is compiled
    once per plant/twin structure and chunk length and reused by every later call)."""
    return eqx.filter_vmap(lambda s, c: _chunk(plant, twin, s, c, k0, length))(scenarios, carry)


def _check_run(plant: AbstractModel, twin: Twin, scenarios: Scenario, steps: int, chunk: int | None) -> int:
    """Validate ``steps``, ``chunk`` and the disturbance length; return the chunk length."""
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps: expected a positive integer, got {steps}")
    need = steps + twin.horizon
    if plant.disturbance_dim and scenarios.d.shape[1] < need:
        raise ValueError(f"scenarios.d: expected at least steps + horizon = {need} samples, got {scenarios.d.shape[1]}")
    chunk = steps if chunk is None else int(chunk)
    if chunk < 1:
        raise ValueError(f"chunk: expected a positive integer, got {chunk}")
    return chunk


def rollout(
    plant: AbstractModel,
    twin: Twin,
    scenarios: Scenario,
    steps: int,
    cov0: Float[Array, "n n"],
    *,
    chunk: int | None = None,
) -> Rollout:
    """The closed loop of :func:`simulate` as one pure function of ``(plant, twin, scenarios)``:
    ``jit``-, ``vmap``- and ``grad``-able (e.g. ``jax.grad`` of a KPI w.r.t. the twin's arrays).

    Same per-step body and results as :func:`simulate` (no progress bar, no sharding).  With
    ``chunk`` < ``steps`` the time axis is a ``lax.scan`` over ``⌈steps / chunk⌉`` chunks of
    ``chunk`` samples, each under ``jax.checkpoint``: reverse mode then stores only the carry at
    chunk boundaries and recomputes one chunk at a time, so the memory of a gradient grows as
    ``O(steps / chunk + chunk)`` step residuals instead of ``O(steps)`` (at the price of one
    extra forward pass); ``chunk=None`` scans all steps at once without checkpointing.
    """
    chunk = min(_check_run(plant, twin, scenarios, steps, chunk), steps)
    count, rest = divmod(steps, chunk)

    def one(s: Scenario):
        carry = _init_carry(plant, twin, s, cov0)
        if count == 1 and not rest:
            return _chunk(plant, twin, s, carry, 0, steps)[1]
        body = jax.checkpoint(lambda c, k0: _chunk(plant, twin, s, c, k0, chunk))
        carry, out = jax.lax.scan(body, carry, chunk * jnp.arange(count))
        out = jax.tree.map(lambda a: a.reshape((count * chunk,) + a.shape[2:]), out)
        if rest:
            tail = jax.checkpoint(lambda c: _chunk(plant, twin, s, c, count * chunk, rest)[1])(carry)
            out = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), out, tail)
        return out

    return Rollout(*eqx.filter_vmap(one)(scenarios))


def simulate(
    plant: AbstractModel,
    twin: Twin,
    scenarios: Scenario,
    steps: int,
    cov0: Float[Array, "n n"],
    *,
    chunk: int | None = None,
    progress: bool = False,
    shard: bool = True,
) -> Rollout:
    """Run ``scenarios`` (a batched :class:`Scenario`) for ``steps`` samples in closed loop.

    ``cov0``: the twin's initial covariance.  ``chunk``: samples per compiled chunk (default:
    all at once); with ``progress`` a tqdm bar advances per chunk.  With ``shard`` and more
    than one device, the scenario axis is split over a 1-D mesh of all devices (padded to a
    multiple of the device count).  Deterministic: the same scenarios give the same result
    on any number of devices when their count is a multiple of it; padding adds problems to the
    batched MPC solves, whose ADMM shares one step size ρ across the batch, so padded runs agree
    to the solver's tolerance.
    """
    count = scenarios.x0.shape[0]
    chunk = _check_run(plant, twin, scenarios, steps, chunk)
    devices = jax.devices()
    padded = count
    if shard and len(devices) > 1:
        padded = math.ceil(count / len(devices)) * len(devices)
        pad = lambda a: jnp.concatenate([a, jnp.repeat(a[-1:], padded - count, axis=0)]) if padded > count else a
        scenarios = jax.tree_util.tree_map(pad, scenarios)
        mesh = Mesh(np.array(devices), ("scenarios",))
        sharding = NamedSharding(mesh, PartitionSpec("scenarios"))
        scenarios = jax.device_put(scenarios, sharding)
    carry = _init_batch(plant, twin, scenarios, cov0)
    outputs = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, unit="step", desc=f"simulate {count} scenarios")
    k = 0
    while k < steps:
        length = min(chunk, steps - k)
        carry, out = _run_batch(plant, twin, scenarios, carry, jnp.asarray(k), length)
        outputs.append(out)
        k += length
        if bar is not None:
            bar.update(length)
    if bar is not None:
        bar.close()
    fields = jax.tree.map(lambda *parts: jnp.concatenate(parts, axis=1)[:count], *outputs)  # statuses are RESULTS pytrees
    return Rollout(*fields)


def noise_closed_loops(
    twin: Twin, A, B, x0: Float[Array, " n"], cov0: Float[Array, "n n"], w: Float[Array, "S T n"], v: Float[Array, "S T ny"], H=None
) -> tuple[Float[Array, "S T+1 n"], Float[Array, "S T m"]]:
    """Closed loops of ``twin`` on the linear plant ``x⁺ = Ax + Bu + w_k``, ``y_k = Hx_k + v_k`` (``H = I``
    by default) for given noise sequences ``w`` [S, T, n], ``v`` [S, T, ny] (e.g. bounded noise, where
    :func:`simulate`'s Gaussian scenarios do not fit): ``(x [S, T+1, n], u [S, T, m])``, vmapped scans from
    ``x0`` with the twin started at ``N(x0, cov0)``; sample ``k`` is at time ``k`` (no disturbances)."""
    A, B = jnp.asarray(A), jnp.asarray(B)
    H = jnp.eye(A.shape[0], dtype=A.dtype) if H is None else jnp.asarray(H)
    x0 = jnp.asarray(x0)

    def one(ws, vs):
        def body(carry, wv):
            x, state, k = carry
            u, state = twin.step(state, H @ x + wv[1], k)
            return (A @ x + B @ u + wv[0], state, k + 1.0), (x, u)

        (xT, _, _), (xs, us) = jax.lax.scan(body, (x0, twin.init(x0, cov0), jnp.asarray(0.0, x0.dtype)), (ws, vs))
        return jnp.concatenate([xs, xT[None]]), us

    return eqx.filter_jit(jax.vmap(one))(jnp.asarray(w), jnp.asarray(v))
