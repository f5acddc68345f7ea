"""EKF: the extended Kalman filter (Jacobians by autodiff) and the spec's EKF validity diagnostic."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ..models.base import AbstractModel
from ..models.operating_point import jacobian_transform
from ._linearised import LinearisedFilter
from .base import validate_gate
from .staging import staged

JacobianMode = Literal["auto", "forward", "reverse"]


def _jacobian_transform(model: AbstractModel, mode: JacobianMode) -> Callable:
    """``jax.jacfwd`` unless reverse mode is asked for, or needed: ``"auto"`` picks ``jax.jacrev`` for
    ODE models whose diffrax adjoint is reverse-only (the default ``RecursiveCheckpointAdjoint``)."""
    if mode == "auto":
        return jacobian_transform(model)
    return jax.jacrev if mode == "reverse" else jax.jacfwd


def _value_and_jacobian(fn: Callable, x, jac: Callable):
    """``(fn(x), ∂fn/∂x)`` from one autodiff pass (:func:`~jtwin.estimation.staging.staged`: a user
    function's stencils, and those of its derivative, are evaluated once)."""
    def with_aux(z):
        value = fn(z)
        return value, value

    jacobian, value = staged(jac(with_aux, has_aux=True))(x)
    return value, jacobian


def validity_ratio(
    model: AbstractModel,
    mean: Float[Array, " n"],
    cov: Float[Array, "n n"],
    u: Float[Array, " m"],
    t=0.0,
    d: Float[Array, " p"] | None = None,
    jacobian: JacobianMode = "auto",
) -> Float[Array, ""]:
    """The spec's EKF validity ratio ``½ · L_f · tr(Σ) / ‖Q‖^½`` at the belief ``N(mean, cov)``.

    ``L_f = ‖∇²f(mean)‖_F`` is the Frobenius norm of the Hessian tensor [n, n, n] of the
    transition (an upper bound on its operator norm, so on the local curvature), ``‖Q‖`` the
    spectral norm of the process-noise covariance.  ``½ L_f tr(Σ)`` bounds the second-order
    bias ``½ E[(x-m)ᵀ ∇²f (x-m)]`` the EKF neglects; the EKF is trustworthy when the ratio is
    ≪ 1 and a sigma-point filter (UKF) is preferable when it is not.  ``inf`` when ``Q = 0``.
    Cost: a Hessian, i.e. O(n²) directional derivatives of ``f``.  For an ODE model whose
    adjoint is reverse-only, the Hessian is taken in forward mode through
    ``diffrax.DirectAdjoint`` (reverse-over-reverse through a checkpointed solve is unsupported).
    """
    adjoint = getattr(model, "adjoint", None)
    if adjoint is not None and not isinstance(adjoint, (diffrax.ForwardMode, diffrax.DirectAdjoint)):
        model = eqx.tree_at(lambda m: m.adjoint, model, diffrax.DirectAdjoint())
        jacobian = "forward"
    jac = _jacobian_transform(model, jacobian)
    hessian = staged(jac(jac(lambda x: model.transition(x, u, t, d))))(mean)
    curvature = jnp.sqrt(jnp.sum(hessian**2))
    q_root = jnp.sqrt(jnp.maximum(jnp.linalg.eigvalsh(model.Q)[-1], 0.0))
    bias = 0.5 * curvature * jnp.trace(cov)
    return jnp.where(q_root > 0, bias / jnp.where(q_root > 0, q_root, 1.0), jnp.inf)


class EKF(LinearisedFilter):
    """Extended Kalman filter: linearise ``f`` and ``h`` at the estimate by autodiff, Joseph-form update.

    * ``jacobian``: ``"forward"`` (``jax.jacfwd``), ``"reverse"`` (``jax.jacrev``), or ``"auto"``
      (default: forward, reverse for ODE models whose diffrax adjoint does not support forward mode);
    * ``diagnose``: compute the validity ratio (:func:`validity_ratio`) of each filtered belief;
      ``run_filter`` returns it as ``diagnostics["validity_ratio"]`` [T].  Costs a Hessian per step;
    * ``gate``: optional χ² significance level (see :class:`AbstractFilter`).
    """

    jacobian: JacobianMode = eqx.field(static=True, default="auto")
    diagnose: bool = eqx.field(static=True, default=True)
    gate: float | None = eqx.field(static=True, default=None)

    def __init__(self, jacobian: JacobianMode = "auto", diagnose: bool = True, gate: float | None = None):
        if jacobian not in ("auto", "forward", "reverse"):
            raise ValueError(f"jacobian: expected 'auto', 'forward' or 'reverse', got {jacobian!r}")
        self.jacobian = jacobian
        self.diagnose = bool(diagnose)
        self.gate = validate_gate(gate)

    def linearise_transition(self, model, mean, u, t, d):
        fn = lambda x: model.transition(x, u, t, d)  # noqa: E731
        return _value_and_jacobian(fn, mean, _jacobian_transform(model, self.jacobian))

    def linearise_observation(self, model, mean, u, t):
        fn = lambda x: model.observe(x, u, t)  # noqa: E731
        return _value_and_jacobian(fn, mean, _jacobian_transform(model, self.jacobian))

    def diagnostics(self, model, belief, u, t, d=None) -> dict | None:
        if not self.diagnose:
            return None
        return {"validity_ratio": validity_ratio(model, belief.mean, belief.cov, u, t, d, self.jacobian)}
