"""Output-feedback tube MPC: the tube twin's guarantee when it acts on a Kalman filter's estimate.

Plant ``x⁺ = Ax + Bu + w``, ``y = Hx + v`` with ``w ∈ W``, ``v ∈ V`` (boxes), and a filter with a
constant gain ``G`` (a Kalman filter started at its steady-state covariance, whose gain then never
changes) acting on the posterior ``x̂ = x̄ + G(y − Hx̄)``, ``x̄ = Ax̂_prev + Bu``.  The estimation
error ``e = x − x̂`` obeys (Mayne, Raković, Findeisen & Allgöwer 2006)::

    e⁺ = (I − GH)A e + (I − GH) w − G v      ⇒  e ∈ E  for all k  when e₀ ∈ E,

``E`` an outer bound of the mRPI set of ``Φ_e = (I − GH)A`` under the box outer bound of
``(I − GH)W ⊕ (−G)V``; and the estimate moves by ``x̂⁺ = Ax̂ + Bu + ŵ`` with
``ŵ = G(HAe + Hw + v) ∈ Ŵ`` (box outer bound from support functions).  A tube MPC on ``x̂`` with
disturbance set ``Ŵ`` and state constraints ``X ⊖ E`` keeps ``x̂ − z`` in its tube, so the true
state ``x = x̂ + e ∈ z ⊕ S ⊕ E ⊆ X`` — a **hard** guarantee for every bounded ``w, v`` and
``e₀ ∈ E`` (:func:`output_feedback_tube_sets`).  A Gaussian ``w, v`` is only bounded by a box with
some probability; the guarantee then holds with the probability of those boxes over the run.
"""

import numpy as np

from ..uncertainty.sets import MRPIOuter, Polytope, mrpi_outer


def _box_bound(maps_and_sets, n: int) -> Polytope:
    """The smallest box containing ``⊕_i M_i S_i`` (``S_i`` polytopes or mRPI bounds with ``support``)."""
    dirs = np.vstack([np.eye(n), -np.eye(n)])
    h = sum(S.support(dirs @ M) for M, S in maps_and_sets)
    return Polytope.box(-h[n:], h[:n])


def output_feedback_tube_sets(A, H, G, W: Polytope, V: Polytope, X: Polytope, mrpi_eps: float = 1e-3):
    """``(E, W_hat, X_tight)`` for a tube MPC on a constant-gain estimate (module docstring).

    ``A`` [n, n], ``H`` [ny, n], ``G`` [n, ny] the filter gain (posterior form); ``W`` [n], ``V`` [ny]
    the process and measurement noise boxes; ``X`` the state constraints.  Returns the error bound
    ``E`` (:class:`~jtwin.uncertainty.MRPIOuter`), the estimate's disturbance box ``Ŵ`` and
    ``X ⊖ E = {H_x x ≤ h_x − h_E(H_x)}``.  Build the controller as
    ``TubeMPC(A, B, N, Q, R, X_tight, U, W_hat)``.
    """
    A, H, G = (np.asarray(M, float) for M in (A, H, G))
    n = A.shape[0]
    if H.shape[1] != n or G.shape != (n, H.shape[0]):
        raise ValueError(f"H, G: expected H [ny, {n}] and G [{n}, ny], got {H.shape} and {G.shape}")
    if W.dim != n or V.dim != H.shape[0]:
        raise ValueError(f"W, V: expected dimensions {n} and {H.shape[0]}, got {W.dim} and {V.dim}")
    I_GH = np.eye(n) - G @ H
    Phi_e = I_GH @ A
    radius = float(np.max(np.abs(np.linalg.eigvals(Phi_e))))
    if radius >= 1.0:
        raise ValueError(f"G: the error dynamics (I − GH)A are not stable (spectral radius {radius:.4g})")
    E: MRPIOuter = mrpi_outer(Phi_e, _box_bound([(I_GH, W), (-G, V)], n), mrpi_eps)
    W_hat = _box_bound([(G @ H @ A, E), (G @ H, W), (G, V)], n)
    X_tight = Polytope(X.H, X.h - E.support(X.H))
    return E, W_hat, X_tight


def steady_state_gain(A, H, Qn, Rn, iterations: int = 2000):
    """``(G, P)``: the Kalman filter's steady-state posterior gain ``G = PHᵀ(HPHᵀ + R)⁻¹`` and prior ``P``
    (the DARE of the filter, by iterating the Riccati recursion; ``Qn``, ``Rn`` the noise covariances)."""
    A, H, Qn, Rn = (np.asarray(M, float) for M in (A, H, Qn, Rn))
    P = Qn.copy()
    for _ in range(iterations):
        G = P @ H.T @ np.linalg.inv(H @ P @ H.T + Rn)
        post = (np.eye(A.shape[0]) - G @ H) @ P
        P_new = A @ post @ A.T + Qn
        if np.max(np.abs(P_new - P)) < 1e-14 * (1 + np.max(np.abs(P))):
            P = P_new
            break
        P = P_new
    return P @ H.T @ np.linalg.inv(H @ P @ H.T + Rn), P
