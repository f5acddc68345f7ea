"""The model interface M shared by every plant model and used by estimators and controllers.

A model is a discrete-time stochastic system over one sample period ``dt``::

    x[k+1] = f(x[k], u[k], t[k], d[k]) + w[k],      w ~ N(0, Q)
    y[k]   = h(x[k], u[k], t[k]) + Φ(x[k], u[k], t[k]) v[k],   v ~ N(0, R)

with Φ = I (additive measurement noise) unless the model has a ``noise_gain``.
Shapes: ``x`` [n], ``u`` [m], ``d`` [p], ``y`` [ny], ``v`` [nv] (nv = ny when additive).

Covariances are stored as lower-triangular factors ``L`` with ``Q = tril(L) tril(L)ᵀ``,
so any gradient step on the factor keeps Q PSD; ``model.Q`` / ``model.R`` give the matrices.
"""

from __future__ import annotations

import abc
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import covariance_from_factor


class Trajectory(NamedTuple):
    """A sampled trajectory: ``xs`` [T, n] states, ``ys`` [T, ny] measurements of those states, ``ts`` [T]."""

    xs: Float[Array, "T n"]
    ys: Float[Array, "T ny"]
    ts: Float[Array, " T"]


class AbstractModel(eqx.Module):
    """Base class of all models: a transition ``f``, a measurement ``h`` and Gaussian noise (Q, R)."""

    Q_factor: eqx.AbstractVar[Float[Array, "n n"]]
    R_factor: eqx.AbstractVar[Float[Array, "nv nv"]]
    dt: eqx.AbstractVar[float]

    @property
    def Q(self) -> Float[Array, "n n"]:
        """Process-noise covariance ``Q`` (PSD by construction)."""
        return covariance_from_factor(self.Q_factor)

    @property
    def R(self) -> Float[Array, "nv nv"]:
        """Measurement-noise covariance ``R`` (PSD by construction)."""
        return covariance_from_factor(self.R_factor)

    @property
    @abc.abstractmethod
    def state_dim(self) -> int: ...

    @property
    @abc.abstractmethod
    def input_dim(self) -> int: ...

    @property
    @abc.abstractmethod
    def output_dim(self) -> int: ...

    @property
    @abc.abstractmethod
    def disturbance_dim(self) -> int: ...

    @abc.abstractmethod
    def transition(
        self, x: Float[Array, " n"], u: Float[Array, " m"], t, d: Float[Array, " p"] | None = None
    ) -> Float[Array, " n"]:
        """Noise-free transition ``f(x, u, t, d)`` over one sample period."""

    @abc.abstractmethod
    def observe(self, x: Float[Array, " n"], u: Float[Array, " m"], t) -> Float[Array, " ny"]:
        """Noise-free measurement ``h(x, u, t)``."""

    @property
    def additive_measurement_noise(self) -> bool:
        """True when ``y = h(x) + v``; False when a state-dependent gain Φ(x) multiplies v."""
        return True

    def noise_gain(self, x: Float[Array, " n"], u: Float[Array, " m"], t) -> Float[Array, "ny nv"]:
        """Φ(x, u, t) in ``y = h(x) + Φ(x) v``; the identity for additive noise."""
        return jnp.eye(self.output_dim, dtype=jnp.result_type(x))

    def observe_noisy(
        self, x: Float[Array, " n"], u: Float[Array, " m"], t, v: Float[Array, " nv"]
    ) -> Float[Array, " ny"]:
        """``h(x, u, t) + Φ(x, u, t) v``."""
        if self.additive_measurement_noise:
            return self.observe(x, u, t) + v
        return self.observe(x, u, t) + self.noise_gain(x, u, t) @ v

    def simulate(
        self,
        key: PRNGKeyArray,
        x0: Float[Array, " n"],
        steps: int,
        us: Float[Array, "T m"] | None = None,
        ds: Float[Array, "T p"] | None = None,
        t0: float = 0.0,
        noise: bool = True,
    ) -> Trajectory:
        """Sample ``steps`` steps of the stochastic system from ``x0`` (``lax.scan``; jit/vmap-able).

        Returns states ``x[0..T-1]`` and the measurements ``y[k]`` taken of ``x[k]``.
        ``noise=False`` gives the deterministic trajectory (w = v = 0).
        """
        x0 = jnp.asarray(x0)
        dtype = jnp.result_type(x0, float)
        us = jnp.zeros((steps, self.input_dim), dtype) if us is None else jnp.asarray(us, dtype)
        ds = jnp.zeros((steps, self.disturbance_dim), dtype) if ds is None else jnp.asarray(ds, dtype)
        ts = t0 + self.dt * jnp.arange(steps, dtype=dtype)
        kw, kv = jax.random.split(key)
        scale = 1.0 if noise else 0.0
        ws = scale * jax.random.normal(kw, (steps, self.state_dim), dtype) @ jnp.tril(self.Q_factor).T
        vs = scale * jax.random.normal(kv, (steps, self.R_factor.shape[0]), dtype) @ jnp.tril(self.R_factor).T

        def step(x, inp):
            u, d, t, w, v = inp
            y = self.observe_noisy(x, u, t, v)
            return self.transition(x, u, t, d if self.disturbance_dim else None) + w, (x, y)

        _, (xs, ys) = jax.lax.scan(step, x0.astype(dtype), (us, ds, ts, ws, vs))
        return Trajectory(xs, ys, ts)


class ModelWrapper(AbstractModel):
    """A model built around another one (``self.model``): dimensions, measurement and noise gain are
    delegated to it; subclasses override what they change (e.g. an augmented state, an extra input)."""

    model: eqx.AbstractVar[AbstractModel]

    @property
    def state_dim(self) -> int:
        return self.model.state_dim

    @property
    def input_dim(self) -> int:
        return self.model.input_dim

    @property
    def output_dim(self) -> int:
        return self.model.output_dim

    @property
    def disturbance_dim(self) -> int:
        return self.model.disturbance_dim

    @property
    def additive_measurement_noise(self) -> bool:
        return self.model.additive_measurement_noise

    def noise_gain(self, x, u, t):
        return self.model.noise_gain(x, u, t)

    def observe(self, x, u, t=0.0):
        return self.model.observe(x, u, t)
