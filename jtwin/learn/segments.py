"""A plant log cut into equal-length segments (for mini-batches via ``vmap``), and irregular sampling.

The log's samples ``0..T-1`` are split in time: the first ``(1 − validation)`` part trains,
the rest validates (a time-ordered hold-out, as is usual for dynamic data).  Each part is cut
into segments of ``length`` samples (default: the whole part); the last segment of a part is
padded with *missing* measurements, which contribute nothing to any loss.

Irregular sampling: a model whose ``transition`` takes a ``dt`` keyword (``ODEModel``) is
wrapped in :class:`VariableStep`, which reads each step's interval from an extra last
disturbance channel, so filters integrate exactly over ``t[k] → t[k+1]``.
"""

from __future__ import annotations

import inspect
import math

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from ..logs import PlantLog
from ..models.base import AbstractModel, ModelWrapper


class Segments(eqx.Module):
    """``S`` log segments of ``L`` samples: ``ys`` [S, L, ny] (NaN = missing), ``us`` [S, L, m],
    ``ds`` [S, L, p], ``ts`` [S, L] and ``start`` [S], each segment's first sample in the log."""

    ys: Float[Array, "S L ny"]
    us: Float[Array, "S L m"]
    ds: Float[Array, "S L p"]
    ts: Float[Array, "S L"]
    start: Int[Array, " S"]

    @property
    def count(self) -> int:
        return self.ys.shape[0]

    @property
    def observed(self) -> int:
        """Number of measured (non-NaN) entries."""
        return int(jnp.sum(~jnp.isnan(self.ys)))


class VariableStep(ModelWrapper):
    """``model`` with a per-step sample interval: the last disturbance entry is ``dt`` of the step.

    ``transition(x, u, t, d) = model.transition(x, u, t, d[:-1], dt=d[-1])``; everything else
    is delegated (``Q_factor``/``R_factor`` are the wrapped model's, so gradients reach them).
    Used for logs that :func:`needs_variable_step`.
    """

    model: AbstractModel
    Q_factor: Float[Array, "n n"]
    R_factor: Float[Array, "nv nv"]
    dt: float = eqx.field(static=True)

    def __init__(self, model: AbstractModel):
        self.model = model
        self.Q_factor, self.R_factor, self.dt = model.Q_factor, model.R_factor, model.dt

    @property
    def disturbance_dim(self) -> int:
        return self.model.disturbance_dim + 1

    def transition(self, x, u, t, d=None):
        inner = d[:-1] if self.model.disturbance_dim else None
        return self.model.transition(x, u, t, inner, dt=d[-1])


def accepts_dt(model: AbstractModel) -> bool:
    """True when ``model.transition`` takes a ``dt`` keyword (variable sample interval)."""
    return "dt" in inspect.signature(model.transition).parameters


def needs_variable_step(log: PlantLog, model: AbstractModel, rtol: float = 1e-6) -> bool:
    """Whether ``log`` must be filtered with :class:`VariableStep` (its sampling is not ``model.dt``).

    Raises ``ValueError`` when it must but the model has a fixed sample period.
    """
    if log.is_regular(model.dt, rtol):
        return False
    if not accepts_dt(model):
        k = int(np.argmax(np.abs(log.dt - model.dt) > rtol * model.dt))
        raise ValueError(
            f"{log.source}: sample interval t[{k + 1}] - t[{k}] = {log.dt[k]:g} differs from the model's dt = {model.dt:g}, "
            f"and {type(model).__name__} has a fixed sample period; resample the log or use an ODEModel"
        )
    return True


def log_arrays(log: PlantLog, variable_step: bool, dtype) -> tuple[Array, Array, Array, Array]:
    """``(ys, us, ds, ts)`` of the whole log; with ``variable_step`` the intervals are appended to ``ds``
    (the last sample reuses the previous interval; it only propagates past the log's end)."""
    ds = log.d
    if variable_step:
        dts = np.append(log.dt, log.dt[-1])
        ds = np.hstack([ds, dts[:, None]])
    return tuple(jnp.asarray(a, dtype) for a in (log.y, log.u, ds, log.t))


def _cut(arrays, lo: int, hi: int, length: int) -> Segments:
    ys, us, ds, ts = (a[lo:hi] for a in arrays)
    n = hi - lo
    count = math.ceil(n / length)
    pad = count * length - n
    if pad:
        step = ts[-1] - ts[-2]
        ys = jnp.concatenate([ys, jnp.full((pad, ys.shape[1]), jnp.nan, ys.dtype)])
        us = jnp.concatenate([us, jnp.repeat(us[-1:], pad, axis=0)])
        ds = jnp.concatenate([ds, jnp.repeat(ds[-1:], pad, axis=0)])
        ts = jnp.concatenate([ts, ts[-1] + step * jnp.arange(1, pad + 1, dtype=ts.dtype)])
    shape = lambda a: a.reshape((count, length) + a.shape[1:])  # noqa: E731
    return Segments(shape(ys), shape(us), shape(ds), shape(ts), lo + length * jnp.arange(count))


def split_segments(arrays, length: int | None, validation: float) -> tuple[Segments, Segments | None]:
    """Train and validation :class:`Segments` of the log ``arrays = (ys, us, ds, ts)``.

    ``validation`` in [0, 1): fraction of samples (the last ones) held out; ``length``: samples
    per segment (``None``: each part is one segment).
    """
    T = arrays[0].shape[0]
    if not 0.0 <= validation < 1.0:
        raise ValueError(f"validation: expected a fraction in [0, 1), got {validation}")
    cut = T - int(round(validation * T))
    if cut < 2 or (validation > 0 and T - cut < 2):
        raise ValueError(f"validation: {validation} leaves {cut} training and {T - cut} validation samples of {T}; need >= 2 each")
    if length is not None and (int(length) != length or length < 2):
        raise ValueError(f"segment_length: expected None or an integer >= 2, got {length}")
    train = _cut(arrays, 0, cut, cut if length is None else min(int(length), cut))
    val = None if cut == T else _cut(arrays, cut, T, T - cut if length is None else min(int(length), T - cut))
    return train, val
