"""EDF schedulability of the twin's loop and the largest affordable state dimension.

A periodic task set with implicit deadlines (deadline = period) is schedulable
under earliest-deadline-first on one processor iff its utilisation is at most
one, ``Σ_i C_i / T_i ≤ 1`` (Liu & Layland).  For the twin's estimator with work
``W(n) = k n³`` flops on a processor of ``F`` flop/s, period ``T``, the other
tasks' utilisation ``U_other`` and communication time ``τ`` per loop, this reads

    U_other + τ/T + k n³ / (F T) ≤ 1,
    n_max = ⌊ ((1 − U_other − τ/T) F T / k)^{1/3} ⌋.

These are scalar decisions at integer boundaries, so they are evaluated in exact
rational arithmetic on the decimal values the user wrote (``0.02`` is 1/50, not
its binary neighbour), not in floating point: ``n³ k ≤ budget`` is decided
exactly, and the cube root only seeds an integer search.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction


def _exact(name: str, value, *, positive: bool = False) -> Fraction:
    """``value`` as the exact rational of its shortest decimal representation; validated."""
    try:
        x = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: expected a number, got {value!r}") from exc
    if x != x or x in (float("inf"), float("-inf")):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    if x < 0 or (positive and x == 0):
        raise ValueError(f"{name}: expected a {'positive' if positive else 'non-negative'} number, got {value!r}")
    return Fraction(repr(x))


def edf_utilisation(wcets: Sequence[float], periods: Sequence[float]) -> float:
    """Total utilisation ``Σ_i C_i / T_i`` of a periodic task set (worst-case execution times ``C``, periods ``T``)."""
    return float(_utilisation(wcets, periods))


def _utilisation(wcets: Sequence[float], periods: Sequence[float]) -> Fraction:
    wcets, periods = list(wcets), list(periods)
    if len(wcets) != len(periods) or not wcets:
        raise ValueError(
            f"wcets, periods: expected two non-empty sequences of equal length, got {len(wcets)} and {len(periods)}"
        )
    terms = (_exact(f"wcets[{i}]", c) / _exact(f"periods[{i}]", t, positive=True) for i, (c, t) in enumerate(zip(wcets, periods)))
    return sum(terms, Fraction(0))


def edf_schedulable(wcets: Sequence[float], periods: Sequence[float]) -> bool:
    """EDF test for implicit-deadline periodic tasks on one processor: ``Σ C_i / T_i ≤ 1`` (exact)."""
    return _utilisation(wcets, periods) <= 1


def twin_utilisation(n: int, k: float, flops_per_s: float, period: float, u_other: float, comm_time: float) -> float:
    """Utilisation of the processor with the twin's estimator at state dimension ``n``:
    ``U_other + τ/T + k n³ / (F T)``; the loop meets its deadlines under EDF iff this is ≤ 1."""
    return float(_twin_utilisation(n, k, flops_per_s, period, u_other, comm_time))


def _twin_utilisation(n, k, flops_per_s, period, u_other, comm_time) -> Fraction:
    if int(n) != n or n < 0:
        raise ValueError(f"n: expected a non-negative integer state dimension, got {n!r}")
    k, f, t, u, tau = _loop_parameters(k, flops_per_s, period, u_other, comm_time)
    return u + tau / t + k * int(n) ** 3 / (f * t)


def _loop_parameters(k, flops_per_s, period, u_other, comm_time) -> tuple[Fraction, ...]:
    """Validated exact ``(k, F, T, U_other, τ)``."""
    return (
        _exact("k", k, positive=True),
        _exact("flops_per_s", flops_per_s, positive=True),
        _exact("period", period, positive=True),
        utilisation("u_other", u_other),
        _exact("comm_time", comm_time),
    )


def utilisation(name: str, value) -> Fraction:
    """``value`` as an exact utilisation, which must lie in ``[0, 1]`` (the share of the processor other tasks use)."""
    u = _exact(name, value)
    if u > 1:
        raise ValueError(f"{name}: expected a utilisation in [0, 1] (a share of the processor), got {value!r}")
    return u


def twin_schedulable(n: int, k: float, flops_per_s: float, period: float, u_other: float, comm_time: float) -> bool:
    """EDF schedulability of the twin's loop at state dimension ``n`` (exact; see the module docstring)."""
    return _twin_utilisation(n, k, flops_per_s, period, u_other, comm_time) <= 1


def max_state_dim(k: float, flops_per_s: float, period: float, u_other: float, comm_time: float) -> int:
    """Largest state dimension ``n`` with ``U_other + τ/T + k n³/(F T) ≤ 1``; 0 when no ``n ≥ 1`` fits.

    ``k``: flops per step divided by ``n³``; ``flops_per_s``: ``F``; ``period``:
    ``T`` [s]; ``u_other``: utilisation of the other tasks; ``comm_time``: ``τ``
    [s] per loop.  Spec example: ``max_state_dim(200, 1e9, 0.02, 0.5, 0.0005) == 36``.
    """
    k, f, t, u, tau = _loop_parameters(k, flops_per_s, period, u_other, comm_time)
    budget = (1 - u - tau / t) * f * t / k  # n³ must not exceed this
    if budget < 1:
        return 0
    n = int(float(budget) ** (1.0 / 3.0))
    while (n + 1) ** 3 <= budget:
        n += 1
    while n**3 > budget:
        n -= 1
    return n
