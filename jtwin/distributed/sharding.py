"""Device meshes over agents, and placing agent data on them (single- or multi-process).

Multi-host launch (one process per host, or several per machine with CPU devices)::

    import jax
    jax.distributed.initialize(coordinator_address="10.0.0.1:1234", num_processes=P, process_id=i)
    import jtwin as jt
    mesh = jt.distributed.agents_mesh()                  # all devices of all processes
    data = jt.distributed.shard_agents(agent_data, mesh)  # every process passes the same full host data
    z, history = jt.distributed.consensus_admm(f, data, rho, K, z0=z0, mesh=mesh)

Every process runs the same program (SPMD); ``z`` comes back replicated on all
devices.  ``experiments/distributed_multihost.py`` does exactly this with
several processes on one machine and a coordinator on 127.0.0.1.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from jaxtyping import PyTree

from .consensus import AGENTS


def agents_mesh(devices=None) -> Mesh:
    """A 1-D mesh with an ``"agents"`` axis over ``devices`` (default: ``jax.devices()``, all processes)."""
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("devices: expected at least one device")
    return jax.make_mesh((len(devices),), (AGENTS,), axis_types=(AxisType.Explicit,), devices=devices)


def shard_agents(agent_data: PyTree, mesh: Mesh) -> PyTree:
    """Place a host pytree (leading agent axis) on ``mesh``, split along ``"agents"``.

    Works across processes: each process passes the same full host data and
    uploads only the slices its own devices hold.
    """
    sharding = NamedSharding(mesh, P(AGENTS))

    def place(leaf):
        host = np.asarray(leaf)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree_util.tree_map(place, agent_data)
