"""Terminal ingredients ``(X_f, V_f)`` for MPC under a local law ``u = Kx``, and their certificates.

Convention: ``u = Kx`` (so ``K = −K_lqr`` of :func:`jtwin.control.lqr`), ``Φ = A + BK``.
Stage cost (the MPC's, with ``ρ ≥ 0``)::

    ℓ(x, u) = xᵀQx + uᵀRu + α‖u‖₁ + β·max{0, cᵀu − ρ}.

**Terminal cost** ``V_f(x) = xᵀP_f x + μ·ψ(x)``:

* ``P_f = γP`` with ``P`` the DARE solution (or a given Lyapunov matrix) and
  ``γ = max(1, λ_max((P − ΦᵀPΦ)⁻¹(Q + KᵀRK)))``; then
  ``xᵀP_f x − (Φx)ᵀP_f Φx ≥ xᵀ(Q + KᵀRK)x`` (equality with γ = 1 when ``K`` is the LQR gain).
* The ℓ1 and hinge terms grow linearly near the origin, so **no quadratic**
  ``γxᵀPx`` can pay for them there (``γ·O(‖x‖²) < α‖Kx‖₁`` for small ``x``).  They are
  paid by a polyhedral Lyapunov function: ``ψ(x) = max_i L_i x``, the gauge of
  ``C = {x : ‖λ^{-k}Φ^k x‖∞ ≤ 1 ∀k ≥ 0}`` (the maximal admissible set of ``Φ/λ``,
  ``ρ(Φ) < λ < 1``), which satisfies ``ψ(Φx) ≤ λψ(x)``.  With
  ``g(x) = α‖Kx‖₁ + β·max{0, cᵀKx}`` (≥ the non-smooth part of ``ℓ(x, Kx)``) and
  ``μ = max_{v ∈ vert C} g(v) / (1 − λ)``, ``μψ(Φx) − μψ(x) ≤ −g(x)`` for all x.

Together: ``V_f(Φx) − V_f(x) ≤ −ℓ(x, Kx)`` everywhere.  ``V_f`` is QP-representable
(one epigraph variable ``s ≥ L x``).

**Terminal set** ``X_f``: the maximal (robust) positively invariant set of
``x⁺ = Φx (+ w)`` inside a polytope ``Y`` of state and input constraints
(:func:`maximal_admissible_set`, Gilbert & Tan 1991; Kolmanovsky & Gilbert 1998).

**Certificates** (:func:`certify_decrease`, :func:`certify_invariance`) check the two
conditions and return the worst margin: exact by eigenvalues, LPs and vertex
enumeration, with the maximiser (or a sampled witness) reported.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float
from scipy.optimize import linprog

from ..uncertainty.sets import Polytope, _matrix
from .lqr import solve_discrete_are


def maximal_admissible_set(Phi, Y: Polytope, W: Polytope | None = None, max_steps: int = 500, tol: float = 1e-9) -> Polytope:
    """Maximal (robust) positively invariant set ``O_∞`` of ``x⁺ = Φx + w`` in ``Y = {y : Hx ≤ h}``.

    ``O_∞ = {x : HΦ^k x ≤ h − h_{F_k}(H)  ∀k ≥ 0}``, ``F_k = ⊕_{i<k}Φ^i W``
    (``W = None``: no disturbance).  The standard iteration adds the rows of step
    ``k + 1`` until all of them are redundant (one LP per row); then
    ``O_{k+1} = O_k`` is a fixed point of ``S ↦ Y ∩ Pre(S)``, so ``O_∞ = O_k``.
    Finitely determined when ``Φ`` is Schur, ``O_∞`` bounded and ``0`` lies in the
    interior of ``Y ⊖ F_∞``.  Returns the set without redundant rows; raises
    ``ValueError`` when it is empty or not determined within ``max_steps``.
    """
    Phi = _matrix("Phi", Phi, (Y.dim, Y.dim))
    if W is not None and W.dim != Y.dim:
        raise ValueError(f"W: expected dimension {Y.dim}, got {W.dim}")
    H, h = Y.H, Y.h
    rows, rhs = [H], [h]
    offset = np.zeros(H.shape[0])
    M = H.copy()  # H Φ^k
    for _ in range(max_steps):
        if W is not None:
            offset = offset + W.support(M)  # h_{F_{k+1}}(H) = h_{F_k}(H) + h_W((Φ^k)ᵀHᵀ)
        M = M @ Phi
        new_rhs = h - offset
        current = Polytope(np.vstack(rows), np.concatenate(rhs))
        if np.any(new_rhs < -tol) or current.chebyshev()[1] < 0:
            raise ValueError("maximal_admissible_set: the set is empty (constraints too tight for the disturbance)")
        redundant = True
        for j in range(M.shape[0]):
            try:
                redundant = current._lp_max(M[j]) <= new_rhs[j] + tol
            except ValueError:  # unbounded in this direction: not redundant yet
                redundant = False
            if not redundant:
                break
        if redundant:
            return current.minimal(tol)
        rows.append(M)
        rhs.append(new_rhs)
    raise ValueError(
        f"maximal_admissible_set: not finitely determined within {max_steps} steps; "
        "need Phi Schur, a bounded set and the origin inside the tightened constraints"
    )


class TerminalCost(eqx.Module):
    """``V_f(x) = xᵀPx + μ·max_i L_i x`` (``P`` [n, n], ``L`` [r, n], ``μ`` scalar; ``r = 0`` when ``μ = 0``)."""

    P: Float[Array, "n n"]
    L: Float[Array, "r n"]
    mu: Float[Array, ""]

    def __call__(self, x: Float[Array, " n"]) -> Float[Array, ""]:
        gauge = jnp.max(self.L @ x) if self.L.shape[0] else 0.0
        return x @ self.P @ x + self.mu * gauge


def contractive_gauge(Phi, lam: float) -> np.ndarray:
    """Rows ``L`` [r, n] of a λ-contractive polytope ``C = {x : Lx ≤ 1}`` of ``Φ`` (``ψ(Φx) ≤ λψ(x)``)."""
    Phi = np.asarray(Phi, dtype=float)
    n = Phi.shape[0]
    radius = float(np.max(np.abs(np.linalg.eigvals(Phi))))
    if not radius < lam < 1.0:
        raise ValueError(f"lam: expected spectral radius of Phi ({radius:.4g}) < lam < 1, got {lam}")
    C = maximal_admissible_set(Phi / lam, Polytope.box(-np.ones(n), np.ones(n)))
    return C.H / C.h[:, None]


def _nonsmooth_bound(K, alpha, beta, c):
    """``g(x) = α‖Kx‖₁ + β·max{0, cᵀKx}`` evaluated on points [V, n]."""
    return lambda X: alpha * np.abs(X @ K.T).sum(axis=1) + beta * np.maximum(0.0, X @ K.T @ c)


def terminal_cost(A, B, K, Q, R, alpha=0.0, beta=0.0, c=None, rho=0.0, P=None, lam=None) -> TerminalCost:
    """Terminal cost ``V_f`` with ``V_f(Φx) − V_f(x) ≤ −ℓ(x, Kx)`` for all ``x`` (module docstring).

    ``K`` [m, n] in the ``u = Kx`` convention (``A + BK`` Schur).  ``P``: a matrix to
    scale (default: the DARE solution).  ``lam``: the gauge's contraction rate
    (default ``(1 + ρ(Φ))/2``).  Needs ``ρ ≥ 0`` when ``β > 0`` (else ``ℓ(0, 0) > 0``).
    """
    A = _matrix("A", A, (None, None))
    n = A.shape[0]
    B = _matrix("B", B, (n, None))
    m = B.shape[1]
    K = _matrix("K", K, (m, n))
    Q, R = _matrix("Q", Q, (n, n)), _matrix("R", R, (m, m))
    c = np.ones(m) if c is None else _matrix("c", c, (m,))
    if alpha < 0 or beta < 0:
        raise ValueError(f"alpha, beta: expected non-negative weights, got {alpha}, {beta}")
    if beta > 0 and rho < 0:
        raise ValueError(f"rho: expected rho >= 0 with a hinge cost (the stage cost must vanish at 0), got {rho}")
    Phi = A + B @ K
    radius = float(np.max(np.abs(np.linalg.eigvals(Phi))))
    if radius >= 1.0:
        raise ValueError(f"K: A + BK must be Schur stable, spectral radius is {radius:.4g}")
    P = np.asarray(solve_discrete_are(A, B, Q, R)) if P is None else _matrix("P", P, (n, n))
    decrease = P - Phi.T @ P @ Phi
    if np.min(np.linalg.eigvalsh(0.5 * (decrease + decrease.T))) <= 0:
        raise ValueError("P: P − (A+BK)ᵀP(A+BK) must be positive definite to be scaled into a terminal cost")
    Lc = np.linalg.cholesky(0.5 * (decrease + decrease.T))
    Linv = np.linalg.inv(Lc)
    gamma = max(1.0, float(np.max(np.linalg.eigvalsh(Linv @ (Q + K.T @ R @ K) @ Linv.T))))
    if alpha == 0 and beta == 0:
        return TerminalCost(jnp.asarray(gamma * P), jnp.zeros((0, n)), jnp.asarray(0.0))
    lam = 0.5 * (1.0 + radius) if lam is None else float(lam)
    L = contractive_gauge(Phi, lam)
    vertices = Polytope(L, np.ones(L.shape[0])).vertices()
    mu = float(np.max(_nonsmooth_bound(K, alpha, beta, c)(vertices))) / (1.0 - lam)
    return TerminalCost(jnp.asarray(gamma * P), jnp.asarray(L), jnp.asarray(mu))


@dataclasses.dataclass(frozen=True)
class Certificate:
    """Outcome of a certificate check.

    ``holds``: the condition is proven (``upper_bound ≤ tol``); ``worst_margin``: the
    largest margin (condition value minus allowance) found, attained at ``witness``;
    ``upper_bound``: a proven bound on the true worst margin (equal to
    ``worst_margin`` when the check is exact); ``exact``: whether it is.
    """

    holds: bool
    worst_margin: float
    upper_bound: float
    witness: np.ndarray
    exact: bool


def certify_decrease(
    Vf: TerminalCost, A, B, K, Q, R, alpha=0.0, beta=0.0, c=None, rho=0.0, X_f: Polytope | None = None, tol: float = 1e-9
) -> Certificate:
    """Check ``Δ(x) = V_f(Φx) − V_f(x) + ℓ(x, Kx) ≤ 0`` on ``X_f`` and report ``max Δ``.

    Upper bound: ``Δ ≤ xᵀDx + p(x)`` with ``D = ΦᵀPΦ − P + Q + KᵀRK`` and the
    positively homogeneous ``p(x) = μψ(Φx) − μψ(x) + g(x)``.  If ``D ⪯ 0`` and
    ``max_{ψ(x)=1} p = max_{v∈vert C}[μψ(Φv) + g(v)] − μ ≤ 0`` (exact: a convex
    function peaks at a vertex), then ``max Δ = Δ(0) = 0``.  Otherwise the
    certificate is not proven and ``worst_margin`` is the largest ``Δ`` over the
    vertices of ``X_f`` (and of ``C``) scaled by factors down to 1e-6 — a witness.
    """
    A, B, K, Q, R = (np.asarray(v, float) for v in (A, B, K, Q, R))
    c = np.ones(B.shape[1]) if c is None else np.asarray(c, float)
    P, L, mu = np.asarray(Vf.P), np.asarray(Vf.L), float(Vf.mu)
    Phi = A + B @ K
    n = A.shape[0]
    D = Phi.T @ P @ Phi - P + Q + K.T @ R @ K
    quad = float(np.max(np.linalg.eigvalsh(0.5 * (D + D.T))))
    g = _nonsmooth_bound(K, alpha, beta, c)
    psi = (lambda X: np.max(X @ L.T, axis=1)) if L.shape[0] else (lambda X: np.zeros(X.shape[0]))
    unit = Polytope(L, np.ones(L.shape[0])).vertices() if L.shape[0] else Polytope.box(-np.ones(n), np.ones(n)).vertices()
    pwl = float(np.max(mu * psi(unit @ Phi.T) + g(unit) - mu * psi(unit)))
    exact_zero = quad <= tol and pwl <= tol

    def delta(X):
        Y = X @ Phi.T
        U = X @ K.T
        Vf_x = np.einsum("vi,ij,vj->v", X, P, X) + mu * psi(X)
        Vf_y = np.einsum("vi,ij,vj->v", Y, P, Y) + mu * psi(Y)
        ell = np.einsum("vi,ij,vj->v", X, Q, X) + np.einsum("vi,ij,vj->v", U, R, U)
        ell = ell + alpha * np.abs(U).sum(axis=1) + beta * np.maximum(0.0, U @ c - rho)
        return Vf_y - Vf_x + ell

    base = unit if X_f is None else np.vstack([X_f.vertices(), unit])
    scales = np.logspace(-6, 0, 25)
    points = np.vstack([np.zeros((1, n)), (scales[:, None, None] * base[None]).reshape(-1, n)])
    if X_f is not None:
        points = points[X_f.contains(points)]
    values = delta(points)
    i = int(np.argmax(values))
    if exact_zero:
        return Certificate(True, 0.0, 0.0, np.zeros(n), True)
    return Certificate(False, float(values[i]), np.inf, points[i], False)


def certify_invariance(Phi, X_f: Polytope, W: Polytope | None = None, Y: Polytope | None = None, tol: float = 1e-9) -> Certificate:
    """Check ``ΦX_f ⊕ W ⊆ X_f`` (robust positive invariance) and ``X_f ⊆ Y`` exactly, by LPs.

    Margin of row ``j`` of ``X_f = {Hx ≤ h}``: ``max_{x∈X_f} H_jΦx + h_W(H_j) − h_j``;
    of row ``i`` of ``Y``: ``max_{x∈X_f} Y_i x − y_i``.  ``worst_margin`` is the
    largest, ``witness`` its maximiser; the certificate holds when it is ``≤ tol``.
    """
    Phi = _matrix("Phi", Phi, (X_f.dim, X_f.dim))
    dirs = X_f.H @ Phi
    slack = -X_f.h + (W.support(X_f.H) if W is not None else 0.0)
    if Y is not None:
        dirs = np.vstack([dirs, Y.H])
        slack = np.concatenate([slack, -Y.h])
    best, witness = -np.inf, np.zeros(X_f.dim)
    for d, s in zip(dirs, slack):
        res = linprog(-d, A_ub=X_f.H, b_ub=X_f.h, bounds=[(None, None)] * X_f.dim, method="highs")
        if res.status != 0:
            raise ValueError(f"X_f: LP failed ({res.message}); X_f must be a non-empty bounded polytope")
        if -res.fun + s > best:
            best, witness = float(-res.fun + s), res.x
    return Certificate(best <= tol, best, best, witness, True)
