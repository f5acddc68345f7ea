"""Wall time of a JAX computation split into compilation and execution.

JAX reports each trace, lowering and XLA compile as a time span through
``jax.monitoring``; :class:`CompileTimer` collects the spans recorded while it is active
and measures their union (nested traces overlap), so ``run_s = wall_s − compile_s`` is the
time spent running compiled code and in Python around it — what a second, cached call costs.
"""

from __future__ import annotations

import time

import jax

_COMPILE_EVENTS = "/jax/core/compile/"  # jaxpr trace, MLIR lowering, backend compile


class CompileTimer:
    """``with CompileTimer() as t: ...`` then ``t.wall_s``, ``t.compile_s``, ``t.run_s`` (seconds)."""

    def __init__(self):
        self._spans: list[tuple[float, float]] = []
        self.wall_s = self.compile_s = self.run_s = 0.0

    def _record(self, event: str, start: float, end: float, **_) -> None:
        if event.startswith(_COMPILE_EVENTS):
            self._spans.append((start, end))

    def __enter__(self) -> CompileTimer:
        jax.monitoring.register_event_time_span_listener(self._record)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.wall_s = time.perf_counter() - self._start
        jax.monitoring.unregister_event_time_span_listener(self._record)
        self.compile_s = min(_union_length(self._spans), self.wall_s)
        self.run_s = self.wall_s - self.compile_s


def _union_length(spans: list[tuple[float, float]]) -> float:
    """Total length covered by the intervals ``spans``."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(spans):
        if b > end:
            total += b - max(a, end)
            end = b
    return total
