"""The qpbench dev subset (``/work/shared/qpbench``): loader and qpbenchmark's scoring, independent of jtwin.

Each ``.npz`` holds ``P, q, G, h, A, b, lb, ub`` of ``min ½xᵀPx + qᵀx  s.t.  Gx ≤ h, Ax = b,
lb ≤ x ≤ ub`` (absent parts stored as ``None``).  :func:`load` turns one into the row form
``l ≤ Cx ≤ u`` (``C = [G; A]``, ``l = [−inf; b]``, ``u = [h; b]``) with the bounds kept apart, and
:func:`score` computes qpbenchmark's three measures from that form's multipliers, written out
in the original ``(z, y, z_box)`` form as qpsolvers defines them (``y > 0``: upper side active):

    primal residual  max(0, max(Gx − h), max|Ax − b|, max(lb − x), max(x − ub))
    dual residual    ‖Px + q + Gᵀz + Aᵀy + z_box‖∞
    duality gap      |xᵀPx + qᵀx + hᵀz + bᵀy + lbᵀmin(z_box, 0) + ubᵀmax(z_box, 0)|

A problem is solved at tolerance ``tol`` when the solver reported success and all three are
below ``tol`` (qpbenchmark compares with ``<``).  :func:`shifted_geometric_mean` is
qpbenchmark's ``shgeom`` (shift 10 for times, a failed solve counted as the time limit).
"""

from __future__ import annotations

import dataclasses
import glob
import os

import numpy as np

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "shared", "qpbench")  # ../shared beside the checkout
ACCURACIES = {"low": 1e-3, "mid": 1e-6, "high": 1e-9}
TIME_LIMIT = 10.0  # seconds counted for a failed solve in the shifted geometric mean of times
TIME_SHIFT = 10.0  # qpbenchmark's shift for computation times


@dataclasses.dataclass(frozen=True)
class Problem:
    """One qpbench problem in row form: ``l ≤ C x ≤ u`` (``G`` rows first, then ``A`` rows) and
    ``lb ≤ x ≤ ub`` (``None``: no bounds); ``n_ineq`` is the number of ``G`` rows."""

    name: str
    P: np.ndarray
    q: np.ndarray
    C: np.ndarray
    l: np.ndarray
    u: np.ndarray
    lb: np.ndarray | None
    ub: np.ndarray | None
    n_ineq: int


def _part(data, key):
    v = data[key]
    return None if v.dtype == object and v.shape == () and v.item() is None else np.asarray(v, dtype=np.float64)


def load(path: str) -> Problem:
    """Read one ``.npz`` into a :class:`Problem`."""
    d = np.load(path, allow_pickle=True)
    P, q, G, h, A, b, lb, ub = (_part(d, k) for k in ("P", "q", "G", "h", "A", "b", "lb", "ub"))
    n = q.shape[0]
    G = np.zeros((0, n)) if G is None else G.reshape(-1, n)
    h = np.zeros(0) if h is None else h
    A = np.zeros((0, n)) if A is None else A.reshape(-1, n)
    b = np.zeros(0) if b is None else b
    if lb is not None or ub is not None:
        lb = np.full(n, -np.inf) if lb is None else lb
        ub = np.full(n, np.inf) if ub is None else ub
    return Problem(
        name=os.path.splitext(os.path.basename(path))[0],
        P=0.5 * (P + P.T),
        q=q,
        C=np.concatenate([G, A]),
        l=np.concatenate([np.full(len(h), -np.inf), b]),
        u=np.concatenate([h, b]),
        lb=lb,
        ub=ub,
        n_ineq=len(h),
    )


def load_all(data_dir: str = DATA_DIR) -> list[Problem]:
    """Every problem of the subset, sorted by name."""
    return [load(p) for p in sorted(glob.glob(os.path.join(data_dir, "*.npz")))]


def score(prob: Problem, x, y, y_bound) -> dict[str, float]:
    """qpbenchmark's primal residual, dual residual and duality gap of ``x`` with row multipliers
    ``y`` [rows of C] and bound multipliers ``y_bound`` [n] (ignored without bounds)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    k = prob.n_ineq
    G, h, z = prob.C[:k], prob.u[:k], y[:k]
    A, b, y_eq = prob.C[k:], prob.u[k:], y[k:]
    primal = [0.0, np.max(G @ x - h, initial=0.0), np.max(np.abs(A @ x - b), initial=0.0)]
    dual = prob.P @ x + prob.q + G.T @ z + A.T @ y_eq
    gap = x @ prob.P @ x + prob.q @ x + h @ z + b @ y_eq
    if prob.lb is not None:
        zb = np.asarray(y_bound, np.float64)
        primal += [np.max(prob.lb - x), np.max(x - prob.ub)]
        dual = dual + zb
        finite_lb, finite_ub = np.where(np.isfinite(prob.lb), prob.lb, 0.0), np.where(np.isfinite(prob.ub), prob.ub, 0.0)
        gap += finite_lb @ np.minimum(zb, 0.0) + finite_ub @ np.maximum(zb, 0.0)
    return {"primal_residual": float(max(primal)), "dual_residual": float(np.max(np.abs(dual))), "duality_gap": float(abs(gap))}


def solved(found: bool, measures: dict[str, float], tol: float) -> bool:
    """qpbenchmark's success: the solver reported success and all three measures are below ``tol``."""
    return bool(found) and all(v < tol for v in measures.values())


def failure_reason(found: bool, status: str, measures: dict[str, float], tol: float) -> str:
    """Why a solve does not count: the status, or which measures missed ``tol``."""
    if not found:
        return f"status {status}"
    return ", ".join(f"{k} {v:.1e}" for k, v in measures.items() if not v < tol)


def shifted_geometric_mean(values, shift: float = TIME_SHIFT) -> float:
    """``exp(mean(log(v + shift))) − shift`` (qpbenchmark's ``shgeom``)."""
    v = np.asarray(values, np.float64)
    return float(np.exp(np.mean(np.log(v + shift))) - shift)
