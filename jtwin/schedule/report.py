"""Deadline check of a twin's compiled estimator step on this machine (behind ``jtwin schedule``).

The configured step is compiled and timed at its own state dimension ``n``;
``W(n) = k n³`` is fitted from XLA flop counts of the same estimator on
synthetic linear models of several sizes, and the achieved flop rate ``F`` from
their timing; :func:`~jtwin.schedule.edf.max_state_dim` then gives the largest
``n`` the period affords.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .edf import max_state_dim, twin_utilisation
from .measure import StepFactory, measure_step, measure_step_cost

_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(text: str | float) -> float:
    """Seconds from ``"20ms"``, ``"0.5 ms"``, ``"250us"``, ``"1s"`` or a bare number of seconds."""
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(s|ms|us|µs|ns)?\s*", str(text))
        if match is None:
            raise ValueError(f"duration: expected a number with an optional unit (s, ms, us, ns), got {text!r}")
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
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


def schedule_report(
    make_step: StepFactory,
    n: int,
    period: float | str,
    *,
    u_other: float = 0.0,
    comm_time: float | str = 0.0,
    ns: Sequence[int] | None = None,
    configured_step: tuple | None = None,
    repeats: int = 20,
) -> str:
    """Text report: does the step at state dimension ``n`` meet ``period`` under EDF, and the largest affordable ``n``.

    ``make_step(n) -> (fn, args)`` builds the step at any ``n`` (for the
    ``k n³`` fit over ``ns``, default ``{n/2, n, 2n}``); ``configured_step``
    ``(fn, args)`` is the twin's own step at ``n`` when it differs from
    ``make_step(n)``.  The deadline check uses the step's *measured* median time
    ``t``: ``U_other + τ/T + t/T ≤ 1``; ``n_max`` uses the fitted ``k`` and the
    achieved flop rate in the spec's formula.
    """
    period, comm_time = parse_duration(period), (parse_duration(comm_time) if comm_time else 0.0)
    n = int(n)
    if n < 1:
        raise ValueError(f"n: expected a positive state dimension, got {n}")
    cost = measure_step_cost(make_step, ns if ns is not None else (max(1, n // 2), n, 2 * n), repeats=repeats)
    flops_n, seconds_n = measure_step(*(configured_step or make_step(n)), repeats=repeats)
    utilisation = float(u_other) + comm_time / period + seconds_n / period
    meets = utilisation <= 1.0
    n_max = max_state_dim(cost.k, cost.flops_per_s, period, u_other, comm_time)
    rows = "\n".join(
        f"  n={int(m):5d}  flops={f:12.4g}  time={s * 1e3:9.4f} ms  flops/n^3={f / m**3:8.3f}"
        for m, f, s in zip(cost.ns, cost.flops, cost.seconds)
    )
    return "\n".join(
        [
            f"period T = {period * 1e3:g} ms, U_other = {float(u_other):g}, comm time = {comm_time * 1e3:g} ms",
            "measured (XLA cost analysis, median wall time):",
            rows,
            f"fit: W(n) = k n^3 with k = {cost.k:.4g}; achieved {cost.flops_per_s / 1e9:.3g} GFLOP/s at n = {cost.ns[-1]}",
            f"configured step (n = {n}): {flops_n:.4g} flops, {seconds_n * 1e3:.4f} ms -> utilisation {utilisation:.4f} "
            f"(model: {twin_utilisation(n, cost.k, cost.flops_per_s, period, u_other, comm_time):.4f})",
            f"deadline {'MET' if meets else 'MISSED'} under EDF (utilisation {'<=' if meets else '>'} 1)",
            f"largest affordable state dimension n_max = {n_max}",
        ]
    )


def cli_report(
    model,
    estimator,
    period: float | str,
    *,
    u_other: float = 0.0,
    comm_time: float | str = 0.0,
    ns: Sequence[int] | None = None,
    repeats: int = 20,
) -> str:
    """Report for ``jtwin schedule CONFIG --period 20ms``: the configured ``model`` + ``estimator`` step."""
    return schedule_report(
        estimator_step_factory(estimator),
        model.state_dim,
        period,
        u_other=u_other,
        comm_time=comm_time,
        ns=ns,
        configured_step=filter_step(estimator, model),
        repeats=repeats,
    )
