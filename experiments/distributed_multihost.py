"""Consensus ADMM across several JAX processes on one machine (the multi-host path, on CPU devices).

Usage::

    .venv/bin/python experiments/distributed_multihost.py [--processes 2] [--devices-per-process 2] [--agents 64]

The launcher starts ``--processes`` copies of this script, each with its own
``--devices-per-process`` CPU devices (``jt.distributed.cpu_devices_env``)
and a coordinator on 127.0.0.1.  Every worker runs the same SPMD program, as on
a real cluster (one process per host, the coordinator address being host 0's)::

    jax.distributed.initialize(coordinator_address="127.0.0.1:PORT", num_processes=P, process_id=i)
    mesh = jt.distributed.agents_mesh()                    # all P·D devices, "agents" axis
    data = jt.distributed.shard_agents(agent_data, mesh)    # each process uploads its devices' slices
    z, history = jt.distributed.consensus_admm(f, data, rho, K, z0=z0, mesh=mesh)

so the z-average is a ``pmean`` over devices in different processes (XLA CPU
collectives over gloo).  Each worker writes its ``z`` and residual history as
JSON; the launcher checks that all processes agree, that ``z`` matches the
centralised least-squares solution (``numpy.linalg.lstsq``) and that the run
matches a single-process vmapped run of the same problem to round-off, then
prints the numbers.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROWS, DIM, RHO, ITERATIONS, TOL = 12, 6, 1.0, 500, 1e-10


def problem(n_agents: int) -> tuple[np.ndarray, np.ndarray]:
    """Distributed least squares: agent i holds rows ``(A_i, b_i)`` of ``min_s Σ_i ½‖A_i s − b_i‖²``."""
    rng = np.random.default_rng(2024)
    return rng.normal(size=(n_agents, ROWS, DIM)), rng.normal(size=(n_agents, ROWS))


def least_squares(x, data):
    import jax.numpy as jnp

    return 0.5 * jnp.sum((data["A"] @ x - data["b"]) ** 2)


def solve(n_agents: int, *, distributed: bool) -> dict:
    """Run consensus ADMM on the problem; on a global mesh when ``distributed``, else vmapped in-process."""
    import jax.numpy as jnp

    import jtwin as jt

    a, b = problem(n_agents)
    data = {"A": a, "b": b}
    mesh = None
    if distributed:
        mesh = jt.distributed.agents_mesh()
        data = jt.distributed.shard_agents(data, mesh)
    z, history = jt.distributed.consensus_admm(
        least_squares, data, RHO, ITERATIONS, z0=jnp.zeros(DIM), x_update="quadratic", tol=TOL, rel_tol=0.0, mesh=mesh
    )
    k = int(history.iterations)
    return {
        "z": np.asarray(z).tolist(),
        "primal_residual": np.asarray(history.primal_residual)[:k].tolist(),
        "iterations": k,
        "status": history.status_name,
        "devices": 1 if mesh is None else mesh.size,
    }


def worker(args) -> None:
    import jax

    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{args.port}", num_processes=args.processes, process_id=args.process_id
    )
    result = solve(args.agents, distributed=True)
    result.update(process_id=jax.process_index(), process_count=jax.process_count(), local_devices=jax.local_device_count())
    Path(args.out).write_text(json.dumps(result))
    jax.distributed.shutdown()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(args) -> dict:
    """Start the workers, wait for them, and compare their results with the references."""
    if args.agents % (args.processes * args.devices_per_process):
        raise SystemExit("--agents must be divisible by --processes * --devices-per-process")
    port = free_port()
    from jtwin.distributed import cpu_devices_env

    env = cpu_devices_env(args.devices_per_process)
    with tempfile.TemporaryDirectory() as tmp:
        outs = [Path(tmp) / f"process{i}.json" for i in range(args.processes)]
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, "--worker", "--port", str(port), "--process-id", str(i), "--out", str(out),
                 "--processes", str(args.processes), "--agents", str(args.agents)],
                env=env,
            )
            for i, out in enumerate(outs)
        ]
        try:
            codes = [p.wait(timeout=args.timeout) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        if any(codes):
            raise SystemExit(f"worker exit codes {codes}")
        results = [json.loads(out.read_text()) for out in outs]

    a, b = problem(args.agents)
    reference = np.linalg.lstsq(a.reshape(-1, DIM), b.reshape(-1), rcond=None)[0]
    single = solve(args.agents, distributed=False)
    zs = np.array([r["z"] for r in results])
    k = min(len(single["primal_residual"]), len(results[0]["primal_residual"]))
    summary = {
        "processes": args.processes,
        "devices_per_process": args.devices_per_process,
        "global_devices": results[0]["devices"],
        "agents": args.agents,
        "status": results[0]["status"],
        "iterations": results[0]["iterations"],
        "iterations_single_process": single["iterations"],
        "max_abs_z_difference_between_processes": float(np.max(np.abs(zs - zs[0]))),
        "max_abs_error_vs_lstsq": float(np.max(np.abs(zs[0] - reference))),
        "max_abs_z_difference_vs_single_process": float(np.max(np.abs(zs[0] - np.asarray(single["z"])))),
        "max_abs_residual_history_difference_vs_single_process": float(
            np.max(np.abs(np.subtract(results[0]["primal_residual"][:k], single["primal_residual"][:k])))
        ),
    }
    for key, value in summary.items():
        print(f"{key:55s} {value}")
    return summary


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--devices-per-process", type=int, default=2)
    parser.add_argument("--agents", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--json", help="write the summary here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--process-id", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return
    summary = launch(args)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
