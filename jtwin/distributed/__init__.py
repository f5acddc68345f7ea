"""Distributed twins: consensus ADMM over agents, vmapped on one device or sharded over devices and hosts.

* :func:`consensus_admm` — ``min_s Σ_i f_i(s)`` with a central average (``pmean`` on a mesh);
* :func:`decentralized_admm` — the same problem with neighbour averaging only, over a graph
  given by a doubly stochastic mixing matrix (:func:`metropolis_weights`);
* local x-update strategies (:class:`QuadraticSolver`, :class:`NewtonSolver`, :class:`LBFGSSolver`);
* :func:`agents_mesh`, :func:`shard_agents` — meshes and data placement, also across processes;
  :func:`cpu_devices_env` — the environment of a subprocess with N host CPU devices.
"""

from .consensus import AGENTS, consensus_admm
from .decentralized import decentralized_admm
from .graph import check_mixing, metropolis_weights, ring_graph, spectral_gap
from .history import ADMMHistory
from .local_solvers import LBFGSSolver, LocalSolver, NewtonSolver, QuadraticSolver, box_quadratic_minimize
from .sharding import agents_mesh, cpu_devices_env, shard_agents

__all__ = [
    "AGENTS",
    "ADMMHistory",
    "LBFGSSolver",
    "LocalSolver",
    "NewtonSolver",
    "QuadraticSolver",
    "agents_mesh",
    "box_quadratic_minimize",
    "check_mixing",
    "consensus_admm",
    "cpu_devices_env",
    "decentralized_admm",
    "metropolis_weights",
    "ring_graph",
    "shard_agents",
    "spectral_gap",
]
