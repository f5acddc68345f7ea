"""Measured cost of compiled step functions: XLA flop counts, wall time, and the fitted ``W(n) = k n³``.

Instead of assuming the estimator's constant ``k``, compile its per-step function
for a few state dimensions ``n``, read the flop count from XLA's cost analysis
of the compiled executable (``jax.jit(fn).lower(*args).compile().cost_analysis()``)
and time it.  ``k`` is the least-squares fit of ``flops(n) ≈ k n³`` in relative
error, ``min_k Σ_i (flops_i − k n_i³)² / flops_i²``, i.e.
``k = Σ (n_i³ / f_i) / Σ (n_i⁶ / f_i²)``; the achieved flop rate is the flops over
the median wall time at the largest ``n`` (where dispatch overhead matters least).

Caveat: XLA counts the flops of the HLO it compiles.  Operations lowered to
library custom calls (e.g. LAPACK's LU on CPU) are counted as zero, so for
such steps the flop count is a lower bound, while the wall time (and hence the
deadline check in :mod:`jtwin.schedule.report`) still includes them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jax
import numpy as np

StepFactory = Callable[[int], tuple[Callable, tuple]]
"""``make_step(n) -> (fn, args)``: a step function for state dimension ``n`` and example arguments to call it with."""


def xla_flops(compiled) -> float:
    """Flop count of a compiled executable (``jax.jit(fn).lower(*args).compile()``) from XLA's cost analysis."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older jax returned one dict per device program
        analysis = analysis[0]
    flops = float((analysis or {}).get("flops", 0.0))
    if not flops > 0:
        raise ValueError("fn: XLA's cost analysis reports no flops for this step (is it all library custom calls?)")
    return flops


def time_compiled(compiled, args: tuple, repeats: int = 20) -> float:
    """Median wall time [s] of ``compiled(*args)`` over ``repeats`` calls (after one warm-up), to completion."""
    if repeats < 1:
        raise ValueError(f"repeats: expected a positive integer, got {repeats}")
    jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def time_loop(compiled, args: tuple, repeats: int = 20, carry: int = 1, warmup: int = 3) -> np.ndarray:
    """Wall times [s] of ``repeats`` consecutive calls of ``compiled(*args)``, each fed the previous call's
    output ``[carry]`` as its argument ``carry``: a stateful step run as its loop runs it.

    ``warmup`` calls run first, untimed: the first executions of a compiled step that takes new
    branches (a warm-started solver, a filter leaving its prior) cost one-time setup, not loop time.
    """
    if repeats < 1:
        raise ValueError(f"repeats: expected a positive integer, got {repeats}")
    args = list(args)
    for _ in range(warmup):
        args[carry] = jax.block_until_ready(compiled(*args))[carry]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        args[carry] = jax.block_until_ready(compiled(*args))[carry]
        times.append(time.perf_counter() - start)
    return np.asarray(times)


def measure_step(fn: Callable, args: tuple, repeats: int = 20) -> tuple[float, float]:
    """``(flops, seconds)`` of one call of ``jax.jit(fn)(*args)``: XLA flop count and median wall time."""
    compiled = jax.jit(fn).lower(*args).compile()
    return xla_flops(compiled), time_compiled(compiled, args, repeats)


def fit_cubic(ns: Sequence[int], values: Sequence[float]) -> float:
    """``k`` minimising the relative squared error of ``values ≈ k n³`` (closed form, see the module docstring)."""
    n3 = np.asarray(ns, dtype=np.float64) ** 3
    v = np.asarray(values, dtype=np.float64)
    if n3.shape != v.shape or n3.size == 0 or np.any(n3 <= 0) or np.any(~(v > 0)):
        raise ValueError(f"ns, values: expected equal-length positive sequences, got {list(ns)} and {list(values)}")
    return float(np.sum(n3 / v) / np.sum(n3**2 / v**2))


@dataclass(frozen=True)
class StepCost:
    """Measured cost of a step function over state dimensions ``ns``.

    ``flops[i]``, ``seconds[i]``: XLA flop count and median wall time at
    ``ns[i]``; ``k``: fitted ``flops ≈ k n³``; ``flops_per_s``: achieved rate at
    the largest ``n``.
    """

    ns: np.ndarray
    flops: np.ndarray
    seconds: np.ndarray
    k: float
    flops_per_s: float

    def predict_flops(self, n) -> np.ndarray:
        """``k n³``."""
        return self.k * np.asarray(n, dtype=np.float64) ** 3

    def predict_seconds(self, n) -> np.ndarray:
        """``k n³ / F_achieved`` (the schedulability model's execution time)."""
        return self.predict_flops(n) / self.flops_per_s


def measure_step_cost(make_step: StepFactory, ns: Sequence[int], repeats: int = 20) -> StepCost:
    """Compile ``make_step(n)`` for each ``n`` in ``ns``, measure flops and time, and fit ``k n³``.

    ``make_step(n) -> (fn, args)``; ``fn(*args)`` is jitted as given, so pass
    every array (including model parameters) as an argument: values closed over
    are compile-time constants that XLA may fold away.
    """
    ns = sorted({int(n) for n in ns})
    if not ns or ns[0] < 1:
        raise ValueError(f"ns: expected positive state dimensions, got {ns}")
    measured = np.array([measure_step(*make_step(n), repeats=repeats) for n in ns])
    flops, seconds = measured[:, 0], measured[:, 1]
    return StepCost(
        ns=np.asarray(ns),
        flops=flops,
        seconds=seconds,
        k=fit_cubic(ns, flops),
        flops_per_s=float(flops[-1] / seconds[-1]),
    )
