"""Time-offset analysis: what a timestamp offset ε does to a twin-based state feedback ``u = K x̂``.

A twin whose clock lags the plant by ε acts on ``x̂(t) ≈ x(t − ε)``.  To first order
(spec, section S) the input error is ``Δu ≈ −K ε ẋ(t) = −K ε (A + B K) x(t)`` with the
continuous-time closed loop ``ẋ = (A + B K) x``: a state-dependent disturbance of gain
``ε ‖K (A + B K)‖``.

Exactly, for a plant sampled every ``h`` with a zero-order hold, an offset ``ε = d h + τ``
(integer ``d ≥ 0``, ``0 ≤ τ < h``) makes the input computed at step k act from ``kh + ε``::

    x[k+1] = Φ x[k] + Γ₁ u[k−d−1] + Γ₀ u[k−d],   u[j] = K x[j]
    Φ = e^{A h},  Γ₀ = ∫₀^{h−τ} e^{A s} ds B,  Γ₁ = e^{A (h−τ)} ∫₀^{τ} e^{A s} ds B

a linear system in ``z[k] = (x[k], u[k−1], …, u[k−d−1])`` whose spectral radius decides
closed-loop stability.  ``critical_offset`` finds the smallest ε at which it reaches 1.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._checks import as_array
from ..models.linear import zoh_discretize


def input_error(
    K: Float[Array, "m n"], A: Float[Array, "n n"], B: Float[Array, "n m"], x: Float[Array, "*batch n"], eps
) -> Float[Array, "*batch m"]:
    """First-order input error of a time offset: ``Δu ≈ −K ε (A + B K) x`` (continuous-time A, B)."""
    return -eps * jnp.einsum("mn,...n->...m", K @ (A + B @ K), x)


def input_error_gain(K: Float[Array, "m n"], A: Float[Array, "n n"], B: Float[Array, "n m"]) -> Float[Array, ""]:
    """``‖K (A + B K)‖₂``: the input error per unit offset and unit state, ``‖Δu‖ ≤ ε · gain · ‖x‖``."""
    return jnp.linalg.norm(K @ (A + B @ K), ord=2)


def delayed_loop_matrix(
    A: Float[Array, "n n"], B: Float[Array, "n m"], K: Float[Array, "m n"], h: float, eps: float
) -> Float[Array, "N N"]:
    """Closed-loop matrix of the sampled plant ``(A, B)`` (continuous time) under ``u = K x`` delayed by ``eps``.

    ``N = n + m (d + 1)`` with ``d = ⌊eps / h⌋``; see the module docstring for the model.
    """
    if not eps >= 0:
        raise ValueError(f"eps: expected a non-negative time offset, got {eps}")
    if not h > 0:
        raise ValueError(f"h: expected a positive sample period, got {h}")
    A = as_array("A", A, (None, None))
    n = A.shape[0]
    B = as_array("B", B, (n, None))
    m = B.shape[1]
    K = as_array("K", K, (m, n))
    d = int(np.floor(eps / h + 1e-12))
    tau = max(eps - d * h, 0.0)
    phi, gamma_tau = zoh_discretize(A, B, tau) if tau > 0 else (jnp.eye(n), jnp.zeros((n, m)))
    phi_rest, gamma_rest = zoh_discretize(A, B, h - tau)
    Phi = phi_rest @ phi
    gamma0, gamma1 = gamma_rest, phi_rest @ gamma_tau
    # z = (x[k], u[k-1], ..., u[k-d-1]); u[k] = K x[k]
    size = n + m * (d + 1)
    M = jnp.zeros((size, size), A.dtype)
    M = M.at[:n, :n].set(Phi)
    if d == 0:
        M = M.at[:n, :n].add(gamma0 @ K)  # u[k] acts within this period
        M = M.at[:n, n : n + m].set(gamma1)  # u[k-1] before kh + τ
    else:
        M = M.at[:n, n + m * (d - 1) : n + m * d].set(gamma0)  # u[k-d]
        M = M.at[:n, n + m * d :].set(gamma1)  # u[k-d-1]
    M = M.at[n : n + m, :n].set(K)  # new u[k] enters the buffer
    if d >= 1:
        M = M.at[n + m :, n : n + m * d].set(jnp.eye(m * d, dtype=A.dtype))  # shift the buffer
    return M


def delayed_spectral_radius(A, B, K, h: float, eps: float) -> float:
    """Spectral radius of :func:`delayed_loop_matrix`; the loop is stable iff it is < 1."""
    return float(np.max(np.abs(np.linalg.eigvals(np.asarray(delayed_loop_matrix(A, B, K, h, eps))))))


def critical_offset(A, B, K, h: float, eps_max: float, grid: int = 200, tol: float = 1e-6) -> float:
    """Smallest offset ε in ``[0, eps_max]`` at which the delayed loop loses stability (``inf`` if none).

    Scans a grid of ``grid`` offsets for the first crossing of spectral radius 1, then bisects to ``tol``.
    Raises ``ValueError`` if the loop is already unstable at ε = 0.
    """
    rho = lambda e: delayed_spectral_radius(A, B, K, h, e) - 1.0
    if rho(0.0) >= 0:
        raise ValueError("K: the undelayed closed loop is already unstable (spectral radius >= 1 at eps = 0)")
    grid_eps = np.linspace(0.0, eps_max, grid + 1)
    for lo, hi in zip(grid_eps[:-1], grid_eps[1:]):
        if rho(hi) >= 0:
            while hi - lo > tol:
                mid = 0.5 * (lo + hi)
                lo, hi = (mid, hi) if rho(mid) < 0 else (lo, mid)
            return 0.5 * (lo + hi)
    return float("inf")
