"""Logistics: a serial multi-echelon inventory network with shipping lead times (linear, demand as disturbance).

Echelon 0 is the retailer facing customer demand, echelon K-1 the factory.  Each period,
echelon i orders ``u_i`` units from echelon i+1 (the factory's order is its production);
the shipment leaves upstream stock at once and arrives after ``lead_times[i] ≥ 1`` periods.
Stock may go negative (backlog).  State, per echelon i: on-hand stock ``I_i`` followed by
its pipeline ``p_i1..p_iL`` (units arriving in 1..L periods)::

    I_i+   = I_i + p_i1 - u_{i-1}        (retailer: - demand d)
    p_ij+  = p_i,j+1,   p_iL+ = u_i

Measured: the on-hand stocks (counts with noise).  Units: items, periods.
"""

from __future__ import annotations

import numpy as np

from ..linear import LinearModel


def inventory_model(lead_times=(1, 2, 3), q_std: float = 0.5, r_std: float = 1.0) -> LinearModel:
    """The network as a ``LinearModel`` with ``n = Σ (1 + L_i)`` states, ``K`` inputs, ``K`` outputs, 1 disturbance."""
    lead = [int(v) for v in lead_times]
    if not lead or any(v < 1 for v in lead) or any(v != w for v, w in zip(lead, lead_times)):
        raise ValueError(f"lead_times: expected a non-empty sequence of integers >= 1, got {lead_times!r}")
    k = len(lead)
    start = np.cumsum([0] + [1 + v for v in lead])  # index of I_i
    n = int(start[-1])
    A, B, E, H = np.zeros((n, n)), np.zeros((n, k)), np.zeros((n, 1)), np.zeros((k, n))
    for i, li in enumerate(lead):
        s = start[i]
        A[s, s] = 1.0  # stock carries over
        A[s, s + 1] = 1.0  # first pipeline slot arrives
        for j in range(1, li):
            A[s + j, s + j + 1] = 1.0  # pipeline shifts one slot closer
        B[s + li, i] = 1.0  # new order enters the last slot
        if i > 0:
            B[s, i - 1] = -1.0  # shipping to the downstream echelon
        H[i, s] = 1.0
    E[0, 0] = -1.0  # customer demand leaves the retailer
    return LinearModel(A, B, H, q_std**2 * np.eye(n), r_std**2 * np.eye(k), E=E)
