"""Gaussian beliefs over the state and the per-update record, the pytrees every estimator passes around."""

from __future__ import annotations

import equinox as eqx
from jaxtyping import Array, Bool, Float, Int

from ._linalg import cov_from_factor


class Belief(eqx.Module):
    """A Gaussian belief ``x ~ N(mean, cov)``: ``mean`` [n], ``cov`` [n, n] (symmetric PSD)."""

    mean: Float[Array, " n"]
    cov: Float[Array, "n n"]


class SqrtBelief(eqx.Module):
    """A Gaussian belief held by a lower-triangular square root: ``cov = chol @ chol.T``.

    Used by :class:`~jtwin.estimation.SquareRootUKF`; ``cov`` is available as a property,
    so code that only reads ``belief.mean`` / ``belief.cov`` works with either belief.
    """

    mean: Float[Array, " n"]
    chol: Float[Array, "n n"]

    @property
    def cov(self) -> Float[Array, "n n"]:
        return cov_from_factor(self.chol)


class UpdateInfo(eqx.Module):
    """What one measurement update saw.

    * ``log_likelihood``: ``log N(y_obs; ŷ_obs, S_obs)`` over the observed entries of ``y``
      (0 when nothing was observed or the measurement was rejected by the gate);
    * ``innovation`` [ny]: ``y - ŷ`` with 0 in the missing (NaN) entries;
    * ``nis``: normalised innovation squared ``eᵀ S⁻¹ e`` over the observed entries;
    * ``num_observed``: how many entries of ``y`` were finite;
    * ``rejected``: True when the χ² gate rejected the measurement (the update was skipped).
    """

    log_likelihood: Float[Array, ""]
    innovation: Float[Array, " ny"]
    nis: Float[Array, ""]
    num_observed: Int[Array, ""]
    rejected: Bool[Array, ""]
