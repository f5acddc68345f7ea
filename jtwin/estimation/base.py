"""The estimator interface shared by every filter (diffrax-style: an ``equinox.Module`` with pure methods).

An estimator carries only configuration (static fields); the state it estimates lives in a
belief pytree that is passed in and returned::

    belief = estimator.init(mean0, cov0)
    belief, info = estimator.update(model, belief, y, u, t)      # assimilate y[k] (a measurement of x[k])
    belief = estimator.predict(model, belief, u, t, d)            # propagate to x[k+1] with u[k]

All methods are pure and ``jit``/``vmap``/``grad``-compatible.  :func:`~jtwin.estimation.run_filter`
scans them over a measurement sequence.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ..models.base import AbstractModel
from ._linalg import Innovation
from .belief import Belief, UpdateInfo


def validate_gate(gate: float | None) -> float | None:
    """Check a χ² gate significance level: ``None`` (no gating) or a number in (0, 1)."""
    if gate is None:
        return None
    if not 0.0 < float(gate) < 1.0:
        raise ValueError(f"gate: expected None or a significance level in (0, 1) (e.g. 1e-3), got {gate!r}")
    return float(gate)


def disturbance(model: AbstractModel, d):
    """The disturbance argument for ``model.transition``: ``None`` for models without one."""
    return d if model.disturbance_dim else None


class AbstractFilter(eqx.Module):
    """Base class of the Gaussian filters (KF, EKF, UKF, square-root UKF).

    ``gate``: optional χ² innovation gate, a significance level α.  A measurement whose
    normalised innovation squared ``NIS = eᵀ S⁻¹ e`` has ``P(χ²_k > NIS) < α`` (k observed
    entries) is rejected: the update is skipped, its log-likelihood term is 0, and
    ``UpdateInfo.rejected`` is set.
    """

    gate: eqx.AbstractVar[float | None]

    def init(self, mean: Float[Array, " n"], cov: Float[Array, "n n"]):
        """The belief ``N(mean, cov)`` in the form this estimator propagates."""
        return Belief(mean, cov)

    def predict(self, model: AbstractModel, belief, u: Float[Array, " m"], t, d: Float[Array, " p"] | None = None):
        """Time update: the belief over ``x[k+1] = f(x[k], u, t, d) + w`` given the belief over ``x[k]``."""
        return self.predict_with_cross(model, belief, u, t, d)[0]

    @abc.abstractmethod
    def predict_with_cross(
        self, model: AbstractModel, belief, u: Float[Array, " m"], t, d: Float[Array, " p"] | None = None
    ) -> tuple[Belief, Float[Array, "n n"]]:
        """Time update plus the cross-covariance ``Cov(x[k], x[k+1])`` [n, n] (used by RTS smoothers)."""

    @abc.abstractmethod
    def update(
        self, model: AbstractModel, belief, y: Float[Array, " ny"], u: Float[Array, " m"], t
    ) -> tuple[Belief, UpdateInfo]:
        """Measurement update with ``y`` (NaN entries = not measured).

        Returns the posterior belief and an :class:`UpdateInfo`.
        """

    def diagnostics(self, model: AbstractModel, belief, u, t, d=None) -> dict | None:
        """Per-step diagnostics of the filtered belief (``None`` unless an estimator defines some)."""
        return None


def finish_update(prior, posterior, innov: Innovation) -> tuple[Belief, UpdateInfo]:
    """Keep the posterior when the gate accepted the measurement, the prior otherwise; build the record."""
    accepted = innov.accepted
    belief = jax.tree.map(lambda a, b: jnp.where(accepted, a, b), posterior, prior)
    info = UpdateInfo(
        log_likelihood=jnp.where(accepted, innov.log_likelihood, 0.0),
        innovation=innov.residual,
        nis=innov.nis,
        num_observed=innov.num_observed,
        rejected=~accepted,
    )
    return belief, info
