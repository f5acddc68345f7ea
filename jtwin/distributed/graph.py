"""Communication graphs and doubly stochastic mixing matrices for decentralised consensus.

Host-side (NumPy/SciPy) construction and validation, run once at the edge.  A
mixing matrix ``W`` (N×N) is symmetric, non-negative, with rows summing to 1
(hence doubly stochastic); ``w_ij > 0`` only for neighbours ``i ~ j`` (and
``i = j``).  ``(Wx)_i`` is the neighbour average agent ``i`` can compute from
its neighbours' messages; ``I − W`` is a weighted graph Laplacian whose second
smallest eigenvalue (the spectral gap ``1 − λ₂(W)``) governs how fast
information spreads and hence the decentralised convergence rate.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Bool, Float
from scipy.sparse.csgraph import connected_components


def ring_graph(n_agents: int) -> Bool[np.ndarray, "N N"]:
    """Adjacency matrix of the ring ``0 – 1 – … – (N−1) – 0`` (N ≥ 2; N = 2 is a single edge)."""
    if isinstance(n_agents, bool) or not isinstance(n_agents, (int, np.integer)) or n_agents < 2:
        raise ValueError(f"n_agents: expected an integer >= 2, got {n_agents!r}")
    idx = np.arange(n_agents)
    adjacency = np.zeros((n_agents, n_agents), dtype=bool)
    adjacency[idx, (idx + 1) % n_agents] = True
    return adjacency | adjacency.T


def _check_connected(name: str, support: np.ndarray) -> None:
    n_components, labels = connected_components(support, directed=False)
    if n_components > 1:
        cut = [np.flatnonzero(labels == c).tolist() for c in range(n_components)]
        raise ValueError(
            f"{name}: the communication graph is disconnected ({n_components} components: {cut}); "
            "decentralised consensus needs a connected graph"
        )


def metropolis_weights(adjacency) -> Float[np.ndarray, "N N"]:
    """Metropolis–Hastings mixing matrix of an undirected, connected graph.

    ``w_ij = 1 / (1 + max(d_i, d_j))`` for each edge ``i ~ j`` (``d`` = degrees),
    ``w_ii = 1 − Σ_{j≠i} w_ij``: symmetric and doubly stochastic with local
    information only.  Raises ``ValueError`` for a non-square, non-symmetric or
    self-looped adjacency, and for a disconnected graph.
    """
    adj = np.asarray(adjacency)
    if adj.ndim != 2 or adj.shape[0] != adj.shape[1] or adj.shape[0] < 2:
        raise ValueError(f"adjacency: expected a square (N, N) matrix with N >= 2, got shape {adj.shape}")
    if not np.all((adj == 0) | (adj == 1)):
        raise ValueError("adjacency: expected 0/1 (or boolean) entries")
    adj = adj.astype(bool)
    if not np.array_equal(adj, adj.T):
        raise ValueError("adjacency: expected a symmetric matrix (undirected graph)")
    if np.any(np.diag(adj)):
        raise ValueError("adjacency: expected no self-loops (zero diagonal)")
    _check_connected("adjacency", adj)
    degree = adj.sum(axis=1)
    weights = np.where(adj, 1.0 / (1.0 + np.maximum.outer(degree, degree)), 0.0)
    return weights + np.diag(1.0 - weights.sum(axis=1))


def check_mixing(mixing) -> Float[np.ndarray, "N N"]:
    """Validate a mixing matrix: square, symmetric, non-negative, rows summing to 1, connected support."""
    w = np.asarray(mixing, dtype=np.float64)
    if w.ndim != 2 or w.shape[0] != w.shape[1] or w.shape[0] < 2:
        raise ValueError(f"mixing: expected a square (N, N) matrix with N >= 2, got shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("mixing: contains NaN or inf entries")
    if not np.allclose(w, w.T, atol=1e-12):
        raise ValueError("mixing: expected a symmetric matrix (undirected graph)")
    if np.any(w < 0):
        raise ValueError("mixing: expected non-negative weights")
    if not np.allclose(w.sum(axis=1), 1.0, atol=1e-12):
        raise ValueError(f"mixing: rows must sum to 1 (doubly stochastic); row sums {w.sum(axis=1)}")
    off_diagonal = (w > 0) & ~np.eye(w.shape[0], dtype=bool)
    _check_connected("mixing", off_diagonal)
    return w


def spectral_gap(mixing) -> float:
    """``1 − λ₂(W)``: algebraic connectivity of the Laplacian ``I − W`` (> 0 iff the graph is connected)."""
    eigvals = np.linalg.eigvalsh(check_mixing(mixing))
    return float(1.0 - eigvals[-2])
