"""Export a :class:`jtwin.Twin`'s step for serving: ``(state, y, t[, d]) -> (u, state)``.

The exported function is ``Twin.step`` with the twin's state (:class:`jtwin.TwinState`: belief,
delay buffers, last MPC plan, NIS, counters) as explicit arrays, so the serving side keeps no
Python objects.  When the model has disturbances (``p > 0``) the disturbance forecast
``d̂[k..k+N−1]`` [N, p] (``N`` = MPC horizon) is a fourth argument ``d``: the server then
requires it in every step request.  Without disturbances the step takes ``(state, y, t)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp

from ..twin import Twin, TwinState
from .export import adopt_weak_dtypes, export_step, leaf_paths

TWIN_EVENTS = ("rejected", "reset", "fallback")  # TwinState's per-step flags, reported with every served step


def twin_step(twin: Twin) -> tuple[Callable, tuple[str, ...]]:
    """The twin's step as a function of arrays and its argument names.

    ``step(state, y, t, d) -> (u, state)`` with ``d`` [N, p] when the model has
    disturbances, else ``step(state, y, t) -> (u, state)``.
    """
    if twin.model.disturbance_dim:
        return (lambda state, y, t, d: twin.step(state, y, t, d)), ("state", "y", "t", "d")
    return (lambda state, y, t: twin.step(state, y, t)), ("state", "y", "t")


def twin_example_args(twin: Twin, state0: TwinState) -> tuple:
    """Example arguments of :func:`twin_step`: ``state0``, the measurement ``y`` [ny] predicted from its
    mean, ``t = 0`` and (with disturbances) a zero forecast ``d`` [N, p]; dtypes follow ``state0``."""
    mean = state0.belief.mean
    y = twin.model.observe(mean, state0.applied, jnp.zeros((), mean.dtype))
    args = (state0, y, jnp.zeros((), mean.dtype))
    if twin.model.disturbance_dim:
        args += (jnp.zeros((twin.horizon, twin.model.disturbance_dim), mean.dtype),)
    return args


def export_twin(
    twin: Twin,
    state0: TwinState,
    *,
    platforms: Sequence[str] = ("cpu",),
    config: bytes | str | Mapping | None = None,
) -> bytes:
    """Artifact of ``twin.step`` (see :func:`twin_step`); ``state0`` is the served twins' initial state.

    ``config`` (the TOML the twin was built from) is hashed into the header.  The header also tells
    the server the state's covariances (``belief.cov`` unless the belief is a square root,
    ``prior.cov``), the safety flags :data:`TWIN_EVENTS` and the model's period ``dt``.
    """
    fn, names = twin_step(twin)
    covariances = [p for p in leaf_paths(state0) if p in ("belief.cov", "prior.cov")]
    return export_step(
        fn, *twin_example_args(twin, state0), arg_names=names, platforms=platforms, config=config,
        covariances=covariances, events=TWIN_EVENTS, period=twin.model.dt,
    )  # fmt: skip


def twin_from_config(path: str) -> tuple[Twin, TwinState]:
    """The twin of a TOML config (``jtwin.run.build_twin``: estimator + MPC on the plant's model) and its
    initial state ``N(simulation.x0, P0)`` (``P0`` from ``estimator.cov0``: :func:`jtwin.run.prior_covariance`) (``x0`` zero when not given), with the
    dtypes the step returns (so ``state0`` and every later state share one jit compilation)."""
    from ..config import load_config
    from ..run import build_twin, prior_covariance

    cfg = load_config(path)
    model = cfg.plant.build()
    twin = build_twin(cfg, model)
    n = model.state_dim
    x0 = jnp.zeros(n) if cfg.simulation.x0 is None else jnp.asarray(cfg.simulation.x0, float)
    state0 = twin.init(x0, jnp.asarray(prior_covariance(cfg, n), x0.dtype))
    fn, _ = twin_step(twin)
    _, returned = jax.eval_shape(fn, *twin_example_args(twin, state0))
    return twin, adopt_weak_dtypes(state0, returned)
