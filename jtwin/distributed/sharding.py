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

Several CPU devices in one process (for tests and benchmarks) must be requested
before JAX initialises, i.e. in the environment of a fresh process:
:func:`cpu_devices_env` builds it.  It also turns off XLA:CPU's multi-threaded
Eigen kernels: with more host devices than cores, per-device programs blocked
in a collective can hold the shared thread pool that the other devices' large
kernels wait for, and the all-reduce never completes (observed with 8 devices
on 2 cores and 4,096 agents).
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from jaxtyping import PyTree

from .consensus import AGENTS


def cpu_devices_env(count: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a subprocess whose JAX sees ``count`` CPU devices (copy of ``base``, default ``os.environ``)."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count: expected an integer >= 1, got {count!r}")
    flags = f"--xla_force_host_platform_device_count={count} --xla_cpu_multi_thread_eigen=false"
    return dict(os.environ if base is None else base, JAX_PLATFORMS="cpu", XLA_FLAGS=flags)


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
