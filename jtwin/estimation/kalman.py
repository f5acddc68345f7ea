"""KF: the exact Kalman filter of a :class:`~jtwin.models.LinearModel`."""

from __future__ import annotations

import equinox as eqx

from ..models.linear import LinearModel
from ._linearised import LinearisedFilter
from .base import validate_gate


class KF(LinearisedFilter):
    """Kalman filter for ``x⁺ = A x + B u + E d + w``, ``y = H x + v`` (optimal for linear-Gaussian models).

    Joseph-form covariance update (PSD for any gain, symmetrised).  ``gate``: optional χ²
    significance level for outlier rejection (see :class:`AbstractFilter`).
    Requires a :class:`~jtwin.models.LinearModel`; use :class:`EKF`/:class:`UKF` otherwise.
    """

    gate: float | None = eqx.field(static=True, default=None)

    def __init__(self, gate: float | None = None):
        self.gate = validate_gate(gate)

    def linearise_transition(self, model: LinearModel, mean, u, t, d):
        _require_linear(model)
        return model.transition(mean, u, t, d), model.A

    def linearise_observation(self, model: LinearModel, mean, u, t):
        _require_linear(model)
        return model.H @ mean, model.H


def _require_linear(model) -> None:
    if not isinstance(model, LinearModel):
        raise ValueError(f"model: KF needs a jtwin.models.LinearModel, got {type(model).__name__}; use EKF or UKF")
