"""Training objectives on one log segment: the filter's negative log-likelihood and k-step prediction error.

Both return ``(total, count)`` — a sum over the segment and the number of measured entries it
covers — so batches of segments are combined as ``Σ total / Σ count`` (a per-measurement loss
whose scale does not depend on the batch or the log length).

* **MLE** (``method="mle"``): ``−log p(y[0..L−1] | prior) = −Σ_k log N(y_k; ŷ_k|k−1, S_k)``, the
  prediction-error decomposition computed by the filter (exact for linear-Gaussian models, the
  EKF/UKF approximation otherwise).  Missing entries contribute nothing.
* **Prediction error** (``method="prediction"``): from each filtered estimate ``x̂[i|i]`` the
  model is simulated ``k`` steps without noise, ``x̂[i+j|i] = f(x̂[i+j−1|i], u, t, d)``, and every
  measured ``y[i+j]`` (``1 ≤ j ≤ k``) scores ``‖(y[i+j] − h(x̂[i+j|i])) / σ‖²`` with ``σ`` the
  measurement-noise standard deviations (held fixed, so the loss cannot be lowered by inflating R;
  1 for channels without noise and for non-additive noise).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ..estimation import AbstractFilter, run_filter
from ..estimation.base import disturbance
from ..models.base import AbstractModel


def negative_log_likelihood(
    model: AbstractModel,
    estimator: AbstractFilter,
    mean0: Float[Array, " n"],
    cov0: Float[Array, "n n"],
    ys: Float[Array, "L ny"],
    us: Float[Array, "L m"],
    ds: Float[Array, "L p"],
    ts: Float[Array, " L"],
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """``(−log p(ys | N(mean0, cov0)), number of measured entries)`` for one segment."""
    result = run_filter(estimator, model, mean0, cov0, ys, us, ts, ds)
    return -result.log_likelihood, jnp.sum(result.num_observed).astype(ys.dtype)


def prediction_error(
    model: AbstractModel,
    estimator: AbstractFilter,
    mean0: Float[Array, " n"],
    cov0: Float[Array, "n n"],
    ys: Float[Array, "L ny"],
    us: Float[Array, "L m"],
    ds: Float[Array, "L p"],
    ts: Float[Array, " L"],
    horizon: int,
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """``(Σ squared normalised 1..horizon-step prediction errors, number of scored entries)`` for one segment.

    Cost: one filter pass plus ``L · horizon`` model steps (``vmap`` over start times, ``scan`` over steps).
    """
    L = ys.shape[0]
    means = run_filter(estimator, model, mean0, cov0, ys, us, ts, ds).means
    sigma = jax.lax.stop_gradient(jnp.sqrt(jnp.diagonal(model.R)))
    if not model.additive_measurement_noise:
        sigma = jnp.ones(model.output_dim, ys.dtype)
    sigma = jnp.where(sigma > 0, sigma, 1.0)  # noise-free channels are scored unweighted

    def from_start(i, x0):
        def step(x, j):
            k = jnp.minimum(i + j, L - 1)  # the step x[k] -> x[k+1] uses u[k], d[k]
            nxt = jnp.minimum(k + 1, L - 1)
            x = model.transition(x, us[k], ts[k], disturbance(model, ds[k]))
            residual = (ys[nxt] - model.observe(x, us[nxt], ts[nxt])) / sigma
            scored = (i + j + 1 < L) & ~jnp.isnan(ys[nxt])
            return x, (jnp.sum(jnp.where(scored, residual, 0.0) ** 2), jnp.sum(scored))

        _, (sq, n) = jax.lax.scan(step, x0, jnp.arange(horizon))
        return jnp.sum(sq), jnp.sum(n)

    sq, n = jax.vmap(from_start)(jnp.arange(L), means)
    return jnp.sum(sq), jnp.sum(n).astype(ys.dtype)
