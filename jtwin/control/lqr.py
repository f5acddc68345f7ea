"""Discrete-time LQR through a structure-preserving doubling solver of the Riccati equation.

Convention (no ½): cost ``Σ_k x_kᵀQx_k + u_kᵀRu_k`` for ``x⁺ = Ax + Bu``.
The stabilising solution ``X`` of the discrete algebraic Riccati equation

    X = AᵀXA − AᵀXB (R + BᵀXB)⁻¹ BᵀXA + Q

gives the optimal law ``u = −Kx`` with ``K = (R + BᵀXB)⁻¹BᵀXA`` and the
infinite-horizon cost-to-go ``xᵀXx`` (the default MPC terminal cost).

The doubling iteration (SDA; Chu, Fan & Lin 2005), with ``G₀ = BR⁻¹Bᵀ``,
``H₀ = Q``, ``A₀ = A``::

    W = I + G_k H_k
    A_{k+1} = A_k W⁻¹ A_k,   G_{k+1} = G_k + A_k W⁻¹ G_k A_kᵀ,   H_{k+1} = H_k + A_kᵀ H_k W⁻¹ A_k

converges quadratically (``H_k → X``; iteration k covers horizon 2^k), so a
fixed number of steps suffices; the loop is a ``fori_loop`` and differentiable.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .. import _checks


def solve_discrete_are(
    A: Float[Array, "n n"],
    B: Float[Array, "n m"],
    Q: Float[Array, "n n"],
    R: Float[Array, "m m"],
    iterations: int = 40,
) -> Float[Array, "n n"]:
    """Stabilising solution ``X`` [n, n] of the DARE (``(A, B)`` stabilisable, ``R ≻ 0``, ``Q ⪰ 0``)."""
    n = A.shape[0]
    eye = jnp.eye(n, dtype=A.dtype)
    G0 = B @ jnp.linalg.solve(R, B.T)

    def body(_, carry):
        Ak, Gk, Hk = carry
        W = eye + Gk @ Hk
        V = jnp.linalg.solve(W, Ak)
        U = jnp.linalg.solve(W, Gk)
        G = Gk + Ak @ U @ Ak.T
        H = Hk + Ak.T @ Hk @ V
        return Ak @ V, 0.5 * (G + G.T), 0.5 * (H + H.T)

    _, _, X = jax.lax.fori_loop(0, iterations, body, (A, 0.5 * (G0 + G0.T), 0.5 * (Q + Q.T)))
    return X


def lqr(
    A: Float[Array, "n n"], B: Float[Array, "n m"], Q: Float[Array, "n n"], R: Float[Array, "m m"]
) -> tuple[Float[Array, "m n"], Float[Array, "n n"]]:
    """Infinite-horizon discrete LQR: returns ``(K, X)`` with ``u = −Kx`` and cost-to-go ``xᵀXx``."""
    A = _checks.as_array("A", A, (None, None))
    n = A.shape[0]
    A = _checks.as_array("A", A, (n, n))
    B = _checks.as_array("B", B, (n, None))
    m = B.shape[1]
    Q = _checks.as_array("Q", Q, (n, n))
    R = _checks.as_array("R", R, (m, m))
    X = solve_discrete_are(A, B, Q, R)
    K = jnp.linalg.solve(R + B.T @ X @ B, B.T @ X @ A)
    return K, X
