"""Polytopes, support functions, disturbance reachable sets and the mRPI outer bound (host side).

Sets are H-polytopes ``{w : Hw ≤ h}``.  Everything here runs once, outside
``jit``, on numpy/scipy (the online controllers only consume the numbers):

* support function ``h_W(d) = max_{w∈W} dᵀw`` — closed form for boxes
  (``Σ_i max(d_i lo_i, d_i hi_i)``), one LP (scipy ``linprog``/HiGHS) per
  direction otherwise;
* disturbance reachable sets of ``e⁺ = Φe + w``:
  ``F_t = ⊕_{i<t} Φ^i W``, whose support function is the sum
  ``h_{F_t}(d) = Σ_{i<t} h_W((Φ^i)ᵀd)`` (:func:`reachable_support`);
* an outer bound of the minimal robust positively invariant (mRPI) set
  ``F_∞ = ⊕_{i≥0} Φ^i W`` (Raković, Kerrigan, Kouramas & Mayne 2005): with
  ``Φ^s W ⊆ αW`` (``α < 1``), ``F_∞ ⊆ (1 − α)⁻¹ F_s``, itself RPI, and within
  ``ε`` of ``F_∞`` in the ∞-norm (:func:`mrpi_outer`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.optimize import linprog
from scipy.spatial import HalfspaceIntersection


def _matrix(name: str, value, shape) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
        raise ValueError(f"{name}: expected shape {tuple('?' if s is None else s for s in shape)}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or inf entries; expected finite values")
    return arr


@dataclasses.dataclass(frozen=True, eq=False)
class Polytope:
    """H-polytope ``{x ∈ Rⁿ : Hx ≤ h}`` (``H`` [r, n], ``h`` [r]); boxes keep their bounds for closed forms."""

    H: np.ndarray
    h: np.ndarray
    bounds: tuple[np.ndarray, np.ndarray] | None = None

    def __post_init__(self):
        H = _matrix("H", self.H, (None, None))
        object.__setattr__(self, "H", H)
        object.__setattr__(self, "h", _matrix("h", self.h, (H.shape[0],)))

    @classmethod
    def box(cls, lo, hi) -> Polytope:
        """``{x : lo ≤ x ≤ hi}``; infinite bounds are dropped from ``H`` (a box must be bounded for supports)."""
        lo, hi = (np.atleast_1d(np.asarray(b, dtype=float)) for b in (lo, hi))
        if lo.shape != hi.shape or lo.ndim != 1 or np.any(np.isnan(lo)) or np.any(np.isnan(hi)):
            raise ValueError(f"lo, hi: expected two vectors of one shape without NaN, got {lo.shape} and {hi.shape}")
        if np.any(lo > hi):
            raise ValueError("lo, hi: need lo <= hi elementwise")
        n = lo.size
        eye = np.eye(n)
        up, down = np.isfinite(hi), np.isfinite(lo)
        H = np.concatenate([eye[up], -eye[down]]).reshape(-1, n)
        h = np.concatenate([hi[up], -lo[down]])
        bounded = bool(np.all(up) and np.all(down))
        return cls(H, h, (lo, hi) if bounded else None)

    @property
    def dim(self) -> int:
        return self.H.shape[1]

    def support(self, directions) -> np.ndarray:
        """``h(d) = max_{x∈P} dᵀx`` for each row of ``directions`` [k, n] (or one [n]); raises if unbounded/empty."""
        D = np.asarray(directions, dtype=float)
        single = D.ndim == 1
        D = _matrix("directions", np.atleast_2d(D), (None, self.dim))
        if self.bounds is not None:
            lo, hi = self.bounds
            out = np.sum(np.maximum(D * lo, D * hi), axis=1)
        else:
            out = np.array([self._lp_max(d) for d in D])
        return out[0] if single else out

    def _lp_max(self, d: np.ndarray) -> float:
        res = linprog(-d, A_ub=self.H, b_ub=self.h, bounds=[(None, None)] * self.dim, method="highs")
        if res.status == 2:
            raise ValueError("polytope: empty (the constraints Hx <= h are infeasible)")
        if res.status == 3:
            raise ValueError(f"polytope: unbounded in direction {d.tolist()}; support functions need a bounded set")
        if res.status != 0:
            raise RuntimeError(f"polytope: LP failed ({res.message})")
        return float(-res.fun)

    def contains(self, x, tol: float = 1e-9) -> np.ndarray:
        """Membership of points ``x`` [..., n]: ``Hx ≤ h + tol`` for every row."""
        x = np.asarray(x, dtype=float)
        return np.all(x @ self.H.T <= self.h + tol, axis=-1)

    def chebyshev(self) -> tuple[np.ndarray, float]:
        """Centre and radius of the largest Euclidean ball inside (LP); radius ≤ 0 means no interior."""
        norms = np.linalg.norm(self.H, axis=1)
        c = np.zeros(self.dim + 1)
        c[-1] = -1.0
        A = np.hstack([self.H, norms[:, None]])
        res = linprog(c, A_ub=A, b_ub=self.h, bounds=[(None, None)] * self.dim + [(None, None)], method="highs")
        if res.status == 2:
            raise ValueError("polytope: empty (the constraints Hx <= h are infeasible)")
        if res.status != 0:
            raise ValueError("polytope: unbounded or degenerate; no Chebyshev ball")
        return res.x[:-1], float(res.x[-1])

    def vertices(self) -> np.ndarray:
        """Vertices [V, n] of a bounded polytope with non-empty interior (qhull halfspace intersection)."""
        centre, radius = self.chebyshev()
        if radius <= 1e-12:
            raise ValueError("polytope: no interior; vertex enumeration needs a full-dimensional set")
        if self.dim == 1:
            return np.array([[-self.support(np.array([-1.0]))], [self.support(np.array([1.0]))]])
        hs = HalfspaceIntersection(np.hstack([self.H, -self.h[:, None]]), centre)
        pts = hs.intersections
        _, idx = np.unique(np.round(pts, 9), axis=0, return_index=True)
        return pts[np.sort(idx)]

    def minimal(self, tol: float = 1e-9) -> Polytope:
        """The same set without redundant rows (one LP per row)."""
        keep = np.ones(self.H.shape[0], bool)
        for j in range(self.H.shape[0]):
            keep[j] = False
            others = Polytope(self.H[keep], self.h[keep])
            try:
                redundant = others._lp_max(self.H[j]) <= self.h[j] + tol
            except ValueError:  # unbounded without row j: row j is needed
                redundant = False
            keep[j] = not redundant
        return Polytope(self.H[keep], self.h[keep])

    def intersect(self, other: Polytope) -> Polytope:
        """``P ∩ other`` (rows stacked)."""
        return Polytope(np.vstack([self.H, other.H]), np.concatenate([self.h, other.h]))


def reachable_support(Phi, W: Polytope, directions, steps: int) -> np.ndarray:
    """Table ``T[t, j] = h_{F_t}(d_j)`` for ``t = 0..steps``, with ``F_t = ⊕_{i<t} Φ^i W`` (``F_0 = {0}``).

    ``Phi`` [n, n], ``directions`` [k, n]; returns [steps + 1, k].  Uses
    ``h_{A⊕B} = h_A + h_B`` and ``h_{ΦW}(d) = h_W(Φᵀd)``.
    """
    Phi = _matrix("Phi", Phi, (W.dim, W.dim))
    D = _matrix("directions", np.atleast_2d(np.asarray(directions, dtype=float)), (None, W.dim))
    if not (isinstance(steps, (int, np.integer)) and steps >= 0):
        raise ValueError(f"steps: expected a non-negative int, got {steps!r}")
    rotated, M = [], D
    for _ in range(steps):  # (Φ^i)ᵀ d_j for i < steps
        rotated.append(M)
        M = M @ Phi
    if steps == 0:
        return np.zeros((1, D.shape[0]))
    terms = W.support(np.concatenate(rotated)).reshape(steps, D.shape[0])
    return np.concatenate([np.zeros((1, D.shape[0])), np.cumsum(terms, axis=0)])


@dataclasses.dataclass(frozen=True, eq=False)
class MRPIOuter:
    """Outer bound ``S = (1 − α)⁻¹ F_s ⊇ F_∞`` of the mRPI set of ``e⁺ = Φe + w, w ∈ W`` (RPI itself)."""

    Phi: np.ndarray
    W: Polytope
    s: int
    alpha: float

    def support(self, directions) -> np.ndarray:
        """``h_S(d) = h_{F_s}(d) / (1 − α)`` for each row of ``directions`` [k, n]."""
        D = np.atleast_2d(np.asarray(directions, dtype=float))
        return reachable_support(self.Phi, self.W, D, self.s)[-1] / (1.0 - self.alpha)

    def outer_polytope(self, directions) -> Polytope:
        """``{x : Dx ≤ h_S(D)} ⊇ S`` — the tightest outer polytope with the given facet normals."""
        D = np.atleast_2d(np.asarray(directions, dtype=float))
        return Polytope(D, self.support(D))


def mrpi_outer(Phi, W: Polytope, eps: float = 1e-3, max_s: int = 1000) -> MRPIOuter:
    """Raković et al. (2005) ε-outer approximation of the mRPI set ``F_∞ = ⊕_{i≥0} Φ^i W``.

    Needs ``Φ`` Schur stable and ``0`` in the interior of ``W = {w : Gw ≤ g}``
    (``g > 0``).  Picks the smallest ``s`` with
    ``α(s) = max_i h_W((Φ^s)ᵀG_i)/g_i ≤ ε / (ε + M(s))``,
    ``M(s) = max_j h_{F_s}(±e_j)``; then ``F_∞ ⊆ (1 − α)⁻¹F_s ⊆ F_∞ ⊕ εB_∞``.
    """
    Phi = _matrix("Phi", Phi, (W.dim, W.dim))
    if not eps > 0:
        raise ValueError(f"eps: expected a positive number, got {eps}")
    if np.max(np.abs(np.linalg.eigvals(Phi))) >= 1.0:
        raise ValueError("Phi: must be Schur stable (spectral radius < 1) for a bounded mRPI set")
    if np.any(W.h <= 0):
        raise ValueError("W: the origin must lie in the interior of W (h > 0 in every row)")
    n = W.dim
    axes = np.vstack([np.eye(n), -np.eye(n)])
    Phis, Fs = np.eye(n), np.zeros(2 * n)
    for s in range(1, max_s + 1):
        Fs = Fs + W.support(axes @ Phis)  # h_{F_s}(±e_j), F_s = F_{s-1} ⊕ Φ^{s-1} W
        Phis = Phis @ Phi
        alpha = float(np.max(W.support(W.H @ Phis) / W.h))
        if alpha <= eps / (eps + np.max(Fs)):
            return MRPIOuter(Phi, W, s, max(alpha, 0.0))
    raise ValueError(f"mrpi_outer: no s <= {max_s} reached the accuracy eps={eps}; increase max_s or eps")
