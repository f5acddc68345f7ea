"""Models defined by user functions: ``FunctionModel`` (discrete time) and the shared machinery of ``ODEModel``."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._checks import covariance_factor
from .base import AbstractModel


class UserFunctionModel(AbstractModel):
    """Common part of models built from user callables: ``h``, an optional noise gain Φ and the dimensions.

    User callables may be plain functions or ``equinox.Module`` instances; the array
    leaves of a Module (physical parameters) are then learnable parameters of the model.
    """

    h: Callable
    noise_gain_fn: Callable | None
    Q_factor: Float[Array, "n n"]
    R_factor: Float[Array, "nv nv"]
    dims: tuple[int, int, int, int] = eqx.field(static=True)  # (n, m, ny, p)

    def _init_common(self, h, Q, R, input_dim, disturbance_dim, noise_gain, name_f, f_probe):
        self.h = h
        self.noise_gain_fn = noise_gain
        q = jnp.asarray(Q)
        if q.ndim != 2 or q.shape[0] != q.shape[1]:
            raise ValueError(f"Q: expected a square covariance (n, n), got shape {tuple(q.shape)}")
        n = q.shape[0]
        self.Q_factor = covariance_factor("Q", Q, n)
        if input_dim < 0 or disturbance_dim < 0:
            raise ValueError("input_dim and disturbance_dim must be non-negative integers")
        x = jax.ShapeDtypeStruct((n,), self.Q_factor.dtype)
        u = jax.ShapeDtypeStruct((input_dim,), self.Q_factor.dtype)
        d = jax.ShapeDtypeStruct((disturbance_dim,), self.Q_factor.dtype)
        out = _probe(name_f, f_probe, x, u, d if disturbance_dim else None, input_dim)
        if out.shape != (n,):
            raise ValueError(f"{name_f}: returned shape {out.shape}, expected (n,) = ({n},) matching Q")
        y = _probe("h(x, u, t)", lambda x, u, d: h(x, u, 0.0), x, u, None, input_dim)
        if y.ndim != 1:
            raise ValueError(f"h(x, u, t): expected a vector (ny,), got shape {y.shape}")
        ny = y.shape[0]
        r = jnp.asarray(R)
        if noise_gain is None:
            self.R_factor = covariance_factor("R", R, ny)
        else:
            if r.ndim != 2 or r.shape[0] != r.shape[1]:
                raise ValueError(f"R: expected a square covariance (nv, nv), got shape {tuple(r.shape)}")
            self.R_factor = covariance_factor("R", R, r.shape[0])
            g = _probe("noise_gain(x, u, t)", lambda x, u, d: noise_gain(x, u, 0.0), x, u, None, input_dim)
            if g.shape != (ny, r.shape[0]):
                raise ValueError(f"noise_gain(x, u, t): returned shape {g.shape}, expected (ny, nv) = {(ny, r.shape[0])}")
        self.dims = (n, input_dim, ny, disturbance_dim)

    @property
    def state_dim(self) -> int:
        return self.dims[0]

    @property
    def input_dim(self) -> int:
        return self.dims[1]

    @property
    def output_dim(self) -> int:
        return self.dims[2]

    @property
    def disturbance_dim(self) -> int:
        return self.dims[3]

    @property
    def additive_measurement_noise(self) -> bool:
        return self.noise_gain_fn is None

    def noise_gain(self, x, u, t):
        if self.noise_gain_fn is None:
            return super().noise_gain(x, u, t)
        return self.noise_gain_fn(x, u, t)

    def observe(self, x, u, t=0.0):
        return self.h(x, u, t)


def _probe(name, fn, x, u, d, input_dim):
    """Evaluate ``fn`` abstractly (``jax.eval_shape``) and turn a failure into an error naming ``name``."""
    try:
        return jax.eval_shape(fn, x, u, d)
    except Exception as exc:  # the user's function could not run on arrays of these shapes
        raise ValueError(
            f"{name}: failed on x of shape {x.shape} and u of shape ({input_dim},) "
            f"(set input_dim/disturbance_dim to match your function): {type(exc).__name__}: {exc}"
        ) from exc


class FunctionModel(UserFunctionModel):
    """Discrete-time model from user functions, additive Gaussian noise.

    ``x[k+1] = f(x, u, t) + w`` (or ``f(x, u, t, d) + w`` when ``disturbance_dim > 0``),
    ``y = h(x, u, t) + v`` (or ``h(x, u, t) + Φ(x, u, t) v`` with ``noise_gain=Φ``).
    ``Q`` [n, n] fixes n; ``R`` [ny, ny] (or [nv, nv] with a noise gain returning [ny, nv]).
    """

    f: Callable
    dt: float = eqx.field(static=True)

    def __init__(self, f, h, Q, R, *, input_dim: int = 0, disturbance_dim: int = 0, noise_gain=None, dt: float = 1.0):
        self.f = f
        if not dt > 0:
            raise ValueError(f"dt: expected a positive sample period, got {dt}")
        self.dt = float(dt)
        probe = (lambda x, u, d: f(x, u, 0.0, d)) if disturbance_dim else (lambda x, u, d: f(x, u, 0.0))
        self._init_common(h, Q, R, input_dim, disturbance_dim, noise_gain, "f(x, u, t)", probe)

    def transition(self, x, u, t=0.0, d=None):
        return self.f(x, u, t) if self.disturbance_dim == 0 else self.f(x, u, t, d)
