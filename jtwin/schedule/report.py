"""Deadline check of a twin's compiled step on this machine (behind ``jtwin schedule``).

The whole twin step (estimator + MPC) is compiled and timed over consecutive steps, and the
estimator step alone at its own state dimension ``n``;
``W(n) = k n³`` is fitted from XLA flop counts of the same estimator on
synthetic linear models of several sizes, and the achieved flop rate ``F`` from
their timing; :func:`~jtwin.schedule.edf.max_state_dim` then gives the largest
``n`` the period affords.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .edf import max_state_dim, twin_utilisation, utilisation
from .measure import StepFactory, measure_step, measure_step_cost, time_loop

WARMUP = 3  # untimed twin steps before the timed ones (first executions of new branches cost setup)
_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9, "min": 60.0, "h": 3600.0}


def parse_duration(text: str | float) -> float:
    """Seconds from ``"20ms"``, ``"0.5 ms"``, ``"250us"``, ``"1s"``, ``"5min"``, ``"1h"``; a Python number is seconds.

    A string needs its unit: ``"20"`` is refused rather than read as 20 s.
    """
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        units = "|".join(sorted(_UNITS, key=len, reverse=True))
        match = re.fullmatch(rf"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*({units})?\s*", str(text))
        if match is None:
            raise ValueError(f"duration: expected a number with a unit ({', '.join(_UNITS)}), got {text!r}")
        if match.group(2) is None:
            raise ValueError(f"duration: {text!r} has no unit; write e.g. {text.strip()}ms, {text.strip()}s or {text.strip()}h")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not seconds > 0:
        raise ValueError(f"duration: expected a positive time, got {text!r}")
    return seconds


def filter_step(estimator, model) -> tuple:
    """``(fn, args)`` for one assimilation step of ``estimator`` on ``model`` (one measurement, via ``run_filter``).

    The model's arrays, mean, covariance and measurement are arguments of ``fn`` (not
    constants), so XLA compiles the step exactly as a serving loop runs it; the model's
    non-array parts (user functions of FunctionModel/ODEModel) are closed over.
    """
    from ..estimation import run_filter

    arrays, static = eqx.partition(model, eqx.is_array)

    n, ny, m = model.state_dim, model.output_dim, model.input_dim
    dtype = jnp.result_type(float)
    mean, cov, ys = jnp.zeros(n, dtype), jnp.eye(n, dtype=dtype), jnp.zeros((1, ny), dtype)
    us = jnp.zeros((1, m), dtype) if m else None

    def step(arrays, mean, cov, ys, us):
        result = run_filter(estimator, eqx.combine(arrays, static), mean, cov, ys, us)
        return result.means[-1], result.covs[-1], result.log_likelihood

    return step, (arrays, mean, cov, ys, us)


def estimator_step_factory(estimator, seed: int = 0) -> StepFactory:
    """``make_step(n)`` for :func:`measure_step_cost`: ``estimator`` on a random stable, fully
    measured ``n``-state linear model (``A`` with spectral radius 0.9, ``H = I``, ``Q = 0.01 I``, ``R = 0.1 I``)."""
    from ..models import LinearModel

    def make_step(n: int):
        rng = np.random.default_rng(seed + n)
        a = rng.normal(size=(n, n))
        a *= 0.9 / max(np.max(np.abs(np.linalg.eigvals(a))), 1e-12)
        model = LinearModel(a, None, np.eye(n), 0.01 * np.eye(n), 0.1 * np.eye(n))
        return filter_step(estimator, model)

    return make_step


def twin_step(twin, mean0, cov0, y, d=None) -> tuple:
    """``(fn, args)`` for one whole step of ``twin`` (assimilate ``y``, solve the MPC, propagate):
    ``fn(arrays, state, y, t, d) -> (u, state)`` from the state ``twin.init(mean0, cov0)``.

    The twin's arrays are arguments (not constants folded by XLA); the state is argument 1 and
    output 1, so :func:`~jtwin.schedule.measure.time_loop` runs it as the serving loop does.
    """
    arrays, static = eqx.partition(twin, eqx.is_array)

    def step(arrays, state, y, t, d):
        return eqx.combine(arrays, static).step(state, y, t, d)

    state = twin.init(jnp.asarray(mean0), jnp.asarray(cov0))
    return step, (arrays, state, jnp.asarray(y), jnp.asarray(0.0), None if d is None else jnp.asarray(d))


def schedule_report(
    make_step: StepFactory,
    n: int,
    period: float | str,
    *,
    u_other: float = 0.0,
    comm_time: float | str = 0.0,
    ns: Sequence[int] | None = None,
    configured_step: tuple | None = None,
    loop_step: tuple | None = None,
    repeats: int = 20,
) -> str:
    """Text report: does the loop meet ``period`` under EDF, and the largest affordable estimator ``n``.

    ``make_step(n) -> (fn, args)`` builds the estimator step at any ``n`` (for the ``k n³`` fit
    over ``ns``, default ``{n/2, n, 2n}``); ``configured_step`` ``(fn, args)`` is the twin's own
    estimator step at ``n`` when it differs from ``make_step(n)``.  ``loop_step`` ``(fn, args)``:
    the whole twin step (estimator + MPC, :func:`twin_step`), timed over ``repeats`` consecutive
    steps.  The deadline check uses the measured execution time ``C`` — the worst whole step, or
    the estimator's median without ``loop_step`` — in ``U_other + τ/T + C/T ≤ 1``; ``n_max`` uses
    the fitted ``k`` and the achieved flop rate in the spec's formula, with the rest of the
    whole step (the MPC) reserved like communication time.
    """
    period, comm_time = parse_duration(period), (parse_duration(comm_time) if comm_time else 0.0)
    u_other = float(utilisation("u_other", u_other))
    n = int(n)
    if n < 1:
        raise ValueError(f"n: expected a positive state dimension, got {n}")
    cost = measure_step_cost(make_step, ns if ns is not None else (max(1, n // 2), n, 2 * n), repeats=repeats)
    flops_n, seconds_n = measure_step(*(configured_step or make_step(n)), repeats=repeats)
    rows = "\n".join(
        f"  n={int(m):5d}  flops={f:12.4g}  time={s * 1e3:9.4f} ms  flops/n^3={f / m**3:8.3f}"
        for m, f, s in zip(cost.ns, cost.flops, cost.seconds)
    )
    lines = [
        f"period T = {period * 1e3:g} ms, U_other = {u_other:g}, comm time = {comm_time * 1e3:g} ms",
        "estimator cost (XLA cost analysis, median wall time):",
        rows,
        f"fit: W(n) = k n^3 with k = {cost.k:.4g}; achieved {cost.flops_per_s / 1e9:.3g} GFLOP/s at n = {cost.ns[-1]}",
        f"estimator step (n = {n}): {flops_n:.4g} flops, {seconds_n * 1e3:.4f} ms "
        f"(model: utilisation {twin_utilisation(n, cost.k, cost.flops_per_s, period, u_other, comm_time):.4f})",
    ]
    execution, reserved = seconds_n, 0.0
    if loop_step is not None:
        fn, args = loop_step
        times = time_loop(jax.jit(fn).lower(*args).compile(), args, repeats, warmup=WARMUP)
        execution = float(times.max())
        reserved = max(execution - seconds_n, 0.0)
        lines.append(
            f"twin step (estimator + MPC, {repeats} consecutive steps after {WARMUP} untimed): median {np.median(times) * 1e3:.4f} ms, "
            f"worst {execution * 1e3:.4f} ms; the estimator is {100 * seconds_n / execution:.3g}% of the worst step"
        )
    load = u_other + comm_time / period + execution / period
    meets = load <= 1.0
    what = "worst twin step" if loop_step is not None else "estimator step"
    n_max = max_state_dim(cost.k, cost.flops_per_s, period, u_other, comm_time + reserved)
    lines += [
        f"utilisation U_other + tau/T + C/T = {load:.4f} with C = {execution * 1e3:.4f} ms ({what})",
        f"deadline {'MET' if meets else 'MISSED'} under EDF (utilisation {'<=' if meets else '>'} 1)",
        f"largest affordable estimator state dimension n_max = {n_max}"
        + (f" (with the rest of the twin step, {reserved * 1e3:.4g} ms, reserved)" if loop_step is not None else ""),
    ]
    return "\n".join(lines)


def cli_report(
    model,
    estimator,
    period: float | str,
    *,
    twin=None,
    mean0=None,
    disturbances=None,
    u_other: float = 0.0,
    comm_time: float | str = 0.0,
    ns: Sequence[int] | None = None,
    repeats: int = 20,
) -> str:
    """Report for ``jtwin schedule CONFIG --period 20ms``: the configured ``model`` + ``estimator`` step and,
    with ``twin``, the whole twin step from the belief ``N(mean0, I)`` fed the expected measurement of ``mean0``
    and the forecast ``disturbances`` [horizon, p]."""
    loop = None
    if twin is not None:
        mean0 = jnp.zeros(model.state_dim) if mean0 is None else jnp.asarray(mean0, float)
        u0 = jnp.zeros(model.input_dim)
        y = model.observe(mean0, u0, 0.0)
        loop = twin_step(twin, mean0, jnp.eye(model.state_dim), y, disturbances)
    return schedule_report(
        estimator_step_factory(estimator),
        model.state_dim,
        period,
        u_other=u_other,
        comm_time=comm_time,
        ns=ns,
        configured_step=filter_step(estimator, model),
        loop_step=loop,
        repeats=repeats,
    )
