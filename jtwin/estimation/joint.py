"""Joint state–parameter estimation: augment the state with random-walk parameters θ.

``z = [x; θ]``, ``x[k+1] = f_θ(x[k], u, t, d) + w``, ``θ[k+1] = θ[k] + w_θ`` with
``w_θ ~ N(0, diag(param_std²))``; the measurement is ``h_θ(x)``.  Any filter (EKF, UKF, ...)
run on the augmented model then tracks slowly time-varying parameters together with the state.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float

from .. import _checks
from ..models.base import AbstractModel, ModelWrapper


class ParameterAugmentedModel(ModelWrapper):
    """A model over ``z = [x; θ]`` whose parameters θ (the leaves picked by ``where``) follow a random walk.

    Build it with :func:`augment_parameters`.  ``split(z)`` returns ``(x, θ)`` with θ in the
    structure ``where(model)`` has; :meth:`with_parameters` puts an estimate back into the model.
    """

    model: AbstractModel
    where: Callable = eqx.field(static=True)
    unravel: Callable = eqx.field(static=True)
    Q_factor: Float[Array, "nz nz"]
    R_factor: Float[Array, "nv nv"]
    dt: float = eqx.field(static=True)

    @property
    def num_parameters(self) -> int:
        return self.Q_factor.shape[0] - self.model.state_dim

    @property
    def state_dim(self) -> int:
        return self.Q_factor.shape[0]

    def split(self, z: Float[Array, " nz"]):
        """``(x [n], θ)`` with θ structured like ``where(model)``."""
        n = self.model.state_dim
        return z[:n], self.unravel(z[n:])

    def with_parameters(self, theta) -> AbstractModel:
        """The underlying model with its parameters replaced by ``theta`` (structured like ``where(model)``)."""
        return eqx.tree_at(self.where, self.model, theta)

    def transition(self, z, u, t=0.0, d=None):
        x, theta = self.split(z)
        return jnp.concatenate([self.with_parameters(theta).transition(x, u, t, d), z[self.model.state_dim :]])

    def observe(self, z, u, t=0.0):
        x, theta = self.split(z)
        return self.with_parameters(theta).observe(x, u, t)

    def noise_gain(self, z, u, t):
        x, theta = self.split(z)
        return self.with_parameters(theta).noise_gain(x, u, t)


def augment_parameters(model: AbstractModel, where: Callable, param_std) -> ParameterAugmentedModel:
    """Augment ``model``'s state with the parameters ``where(model)`` (a pytree of arrays, e.g.
    ``lambda m: m.vector_field.forcing``), as random walks with per-step standard deviations ``param_std``
    (a scalar or one value per flattened parameter).  Returns the augmented model.

    Typical use::

        aug = augment_parameters(model, lambda m: m.vector_field.forcing, 1e-3)
        mean0, cov0 = joint_prior(aug, x_mean, x_cov, param_std0)
        res = run_filter(UKF(), aug, mean0, cov0, ys, us)
        x_hat, theta_hat = aug.split(res.means[-1])
    """
    flat, unravel = ravel_pytree(where(model))
    k = flat.shape[0]
    if k == 0:
        raise ValueError("where: selected no parameters; it must return the array leaves to estimate")
    std = np.asarray(param_std, dtype=float)
    if std.shape not in ((), (k,)) or not np.all(np.isfinite(std)) or np.any(std < 0):
        raise ValueError(f"param_std: expected a non-negative scalar or {k} values, got {param_std!r}")
    std = np.broadcast_to(std, (k,))
    q = jsl.block_diag(jnp.tril(model.Q_factor), jnp.diag(jnp.asarray(std, flat.dtype)))
    return ParameterAugmentedModel(
        model=model, where=where, unravel=unravel, Q_factor=q, R_factor=model.R_factor, dt=model.dt
    )


def joint_prior(
    augmented: ParameterAugmentedModel, mean_x: Float[Array, " n"], cov_x: Float[Array, "n n"], param_std0
) -> tuple[Float[Array, " nz"], Float[Array, "nz nz"]]:
    """Prior over ``z = [x; θ]``: ``N([mean_x; θ₀], blkdiag(cov_x, diag(param_std0²)))``.

    θ₀ are the model's current parameter values.
    """
    n, k = augmented.model.state_dim, augmented.num_parameters
    mean_x = _checks.as_array("mean_x", mean_x, (n,))
    cov_x = _checks.as_array("cov_x", cov_x, (n, n))
    std0 = _checks.as_array("param_std0", jnp.broadcast_to(jnp.asarray(param_std0, float), (k,)), (k,))
    theta0, _ = ravel_pytree(augmented.where(augmented.model))
    return jnp.concatenate([mean_x, theta0]), jsl.block_diag(cov_x, jnp.diag(std0**2))
