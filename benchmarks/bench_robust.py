"""Tube MPC benchmark: offline set computations, batched nominal solves vs an OSQP loop, closed-loop rollouts.

Problem: the double integrator of Mayne et al. (2005) (x₂ ≤ 2, |u| ≤ 1, ‖w‖∞ ≤ 0.1,
horizon 9) with tube tightening and the maximal admissible terminal set.

* setup: wall time of building :class:`jtwin.control.TubeMPC` (mRPI bound, tightening
  tables, terminal set, terminal cost);
* nominal solves: ``jax.vmap`` of the nominal QP over a batch of initial states (one
  shared KKT factorisation) vs OSQP (python, polishing on, same tolerance) solving the
  same QPs one after another; throughput ratio, and the first-input error of both
  against Clarabel (cvxpy, 1e-10) on a subsample;
* closed loop: ``TubeMPC.simulate`` disturbance-sequence·steps per second.

Writes ``benchmarks/results/robust.json``.  ``--quick`` shrinks the batches.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import time

import cvxpy as cp
import jax
import jax.numpy as jnp
import numpy as np
import osqp
import scipy.sparse as sp

import jtwin  # noqa: F401  (float64)
from jtwin.control import TubeMPC
from jtwin.qp import is_successful
from jtwin.uncertainty import Polytope

RESULTS = pathlib.Path(__file__).parent / "results" / "robust.json"
A = np.array([[1.0, 1.0], [0.0, 1.0]])
B = np.array([[0.5], [1.0]])
EPS = 1e-5


def best_of(fn, repeat=3):
    """Minimum wall time of ``repeat`` calls (the machine is shared; the minimum is least disturbed)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return min(times)


def clarabel_u0(P, q, Aq, lo, up) -> float:
    """Reference first input: the same QP solved by Clarabel (cvxpy) to 1e-10."""
    x = cp.Variable(P.shape[0])
    fu, fl = np.isfinite(up), np.isfinite(lo)
    cons = [Aq[fu] @ x <= up[fu], Aq[fl] @ x >= lo[fl]]
    cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, cp.psd_wrap(0.5 * (P + P.T))) + q @ x), cons).solve(
        solver=cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10
    )
    return float(x.value[0])


def main(quick: bool = False) -> dict:
    batch, seqs, steps = (64, 200, 60) if quick else (512, 2000, 200)
    t0 = time.perf_counter()
    tube = TubeMPC(A, B, 9, np.eye(2), np.array([[0.01]]), Polytope.box([-np.inf, -np.inf], [np.inf, 2.0]),
                   Polytope.box([-1.0], [1.0]), Polytope.box([-0.1, -0.1], [0.1, 0.1]), eps_abs=EPS, eps_rel=EPS)  # fmt: skip
    setup_s = time.perf_counter() - t0
    nominal = tube.nominal
    rng = np.random.default_rng(0)
    x0s = np.column_stack([rng.uniform(-5, 5, batch), rng.uniform(-1.5, 1.5, batch)])
    bx, bu = tube.backoffs(jnp.asarray(0))
    solve = jax.jit(jax.vmap(lambda x: nominal._solve(x, bx, bu, None)))
    sols = solve(jnp.asarray(x0s))
    jax_s = best_of(lambda: solve(jnp.asarray(x0s)).u)
    qps = [tuple(np.asarray(a) for a in nominal._qp(jnp.asarray(x), bx, bu)) for x in x0s]
    P, _, Aq, _, _ = qps[0]
    solver = osqp.OSQP()
    lo0 = np.maximum(qps[0][3], -1e30)
    up0 = np.minimum(qps[0][4], 1e30)
    solver.setup(sp.csc_matrix(np.triu(P)), qps[0][1], sp.csc_matrix(Aq), lo0, up0, eps_abs=EPS, eps_rel=EPS,
                 polishing=True, verbose=False, warm_starting=False)  # fmt: skip
    u0_osqp, solved = [], 0
    t0 = time.perf_counter()
    for _, q, _, lo, up in qps:
        solver.update(q=q, l=np.maximum(lo, -1e30), u=np.minimum(up, 1e30))
        res = solver.solve(raise_error=False)
        u0_osqp.append(res.x[0])
        solved += res.info.status == "solved"
    osqp_s = time.perf_counter() - t0
    ref = np.array([clarabel_u0(*qps[i]) for i in range(0, batch, max(1, batch // 32))])
    sub = slice(0, batch, max(1, batch // 32))
    err_jtwin = float(np.max(np.abs(np.asarray(sols.u[sub, 0, 0]) - ref)))
    err_osqp = float(np.max(np.abs(np.array(u0_osqp)[sub] - ref)))
    w = jnp.asarray(rng.uniform(-0.1, 0.1, (seqs, steps, 2)))
    x0 = jnp.array([-5.0, -1.0])
    tube.simulate(x0, w)
    sim_s = best_of(lambda: tube.simulate(x0, w).x)
    out = dict(
        problem=dict(n=2, m=1, horizon=9, qp_vars=int(P.shape[0]), qp_rows=int(Aq.shape[0]), batch=batch, eps=EPS),
        setup_seconds=setup_s,
        nominal=dict(
            jtwin_solves_per_s=batch / jax_s, osqp_solves_per_s=batch / osqp_s, speedup=osqp_s / jax_s,
            jtwin_solved=int(np.sum(np.asarray(is_successful(sols.status)))), osqp_solved=int(solved),
            max_abs_u0_error_vs_clarabel=dict(jtwin=err_jtwin, osqp=err_osqp, problems=len(ref)),
        ),  # fmt: skip
        closed_loop=dict(sequences=seqs, steps=steps, seconds=sim_s, sequence_steps_per_s=seqs * steps / sim_s),
        machine=dict(platform=platform.platform(), jax=jax.__version__, osqp=osqp.__version__, device=str(jax.devices()[0])),
        quick=quick,
    )
    print(json.dumps(out, indent=2))
    if not quick:
        RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    main(**vars(parser.parse_args()))
