"""Batched MPC: jtwin's jitted vmap of LinearMPC.solve vs OSQP warm-started in a Python loop.

Plant: the 12-state / 4-input quadcopter of OSQP's MPC example (horizon 10,
input boxes, boxes on the roll/pitch angles and the vertical velocity).
A batch of initial states is solved (1) by ``jax.jit(jax.vmap(mpc.solve))``
(one shared KKT factorisation) and (2) by OSQP on the *same* QP matrices,
once on jtwin's condensed QP and once on the sparse QP that OSQP prefers,
updating ``q, l, u`` and warm starting from the previous solution (OSQP's
solver object also keeps its adapted ρ between solves), at the same
tolerances, polishing off, with OSQP's default termination check every 25
iterations and with a check every 5 (jtwin's default).  jtwin's batch starts
cold (x = y = 0, ρ = 0.1).  Compilation is timed separately and excluded.
Reported: throughput ratio against the fastest OSQP run, max |Δu₀| between the
solvers and against a tight reference, a float32 jtwin row (counted only if it
meets the tolerance), single-solve latency, closed-loop warm-start iterations.

    .venv/bin/python benchmarks/bench_mpc_batch.py [--quick] [--batch 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import osqp
import scipy.sparse as sp

import _references as refs
import jtwin  # noqa: F401  (float64)
from jtwin.control import LinearMPC
from jtwin.qp import is_successful
from jtwin.control.mpc import _offsets

RESULTS = pathlib.Path(__file__).parent / "results" / "mpc_batch.json"


def quadcopter():
    Ad = np.array([
        [1, 0, 0, 0, 0, 0, 0.1, 0, 0, 0, 0, 0],
        [0, 1, 0, 0, 0, 0, 0, 0.1, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0, 0, 0, 0.1, 0, 0, 0],
        [0.0488, 0, 0, 1, 0, 0, 0.0016, 0, 0, 0.0992, 0, 0],
        [0, -0.0488, 0, 0, 1, 0, 0, -0.0016, 0, 0, 0.0992, 0],
        [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0.0992],
        [0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0],
        [0.9734, 0, 0, 0, 0, 0, 0.0488, 0, 0, 0.9846, 0, 0],
        [0, -0.9734, 0, 0, 0, 0, 0, -0.0488, 0, 0, 0.9846, 0],
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.9846],
    ])  # fmt: skip
    Bd = np.array([
        [0, -0.0726, 0, 0.0726], [-0.0726, 0, 0.0726, 0], [-0.0152, 0.0152, -0.0152, 0.0152],
        [0, -0.0006, -0.0, 0.0006], [0.0006, 0, -0.0006, 0], [0.0106, 0.0106, 0.0106, 0.0106],
        [0, -1.4512, 0, 1.4512], [-1.4512, 0, 1.4512, 0], [-0.3049, 0.3049, -0.3049, 0.3049],
        [0, -0.0236, 0, 0.0236], [0.0236, 0, -0.0236, 0], [0.2107, 0.2107, 0.2107, 0.2107],
    ])  # fmt: skip
    u0 = 10.5916
    inf = np.inf
    return dict(
        A=Ad,
        B=Bd,
        Q=np.diag([0, 0, 10, 10, 10, 10, 0, 0, 0, 5, 5, 5.0]),
        R=0.1 * np.eye(4),
        umin=np.full(4, 9.6 - u0),
        umax=np.full(4, 13.0 - u0),
        xmin=np.array([-np.pi / 6, -np.pi / 6, -inf, -inf, -inf, -1.0, -inf, -inf, -inf, -inf, -inf, -inf]),
        xmax=np.array([np.pi / 6, np.pi / 6, inf, inf, inf, inf, inf, inf, inf, inf, inf, inf]),
        xref=np.array([0, 0, 1.0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    )


def make_mpc(plant, formulation, eps, max_iter=4000):
    return LinearMPC(
        plant["A"], plant["B"], 10, plant["Q"], plant["R"], QN=plant["Q"], xref=plant["xref"],
        umin=plant["umin"], umax=plant["umax"], xmin=plant["xmin"], xmax=plant["xmax"],
        formulation=formulation, eps_abs=eps, eps_rel=eps, max_iter=max_iter,
    )  # fmt: skip


def quadcopter_ocp(plant, N=10):
    """The same MPC for the peer solvers (``_references.OCP``; jtwin's cost has no ½: weights ×2)."""
    n, m = plant["B"].shape
    Q, r = 2 * plant["Q"], plant["xref"]
    return refs.OCP(
        N=N, A=plant["A"], B=plant["B"], E=np.zeros((n, 0)), Q=Q, QN=Q, R=2 * plant["R"], qx=-Q @ r, qxN=-Q @ r,
        qw=np.zeros(m), C=np.zeros((0, n)), D=np.zeros((0, m)), G=np.zeros((0, 0)), lg=np.zeros(0), ug=np.zeros(0),
        wmin=plant["umin"], wmax=plant["umax"], xmin=plant["xmin"], xmax=plant["xmax"], n_inputs=m,
    )  # fmt: skip


def peer_references(plant, x0s, u0_jt, pool, within=1e-3):
    """OSQP, PIQP, DAQP and HPIPM (CasADi) as their users write them, each at its loosest
    tolerance within ``within`` of Clarabel at 1e-10, alone and as a 2-process pool."""
    o = quadcopter_ocp(plant)
    ds = np.zeros((len(x0s), o.N, 0))
    if refs.available("clarabel"):
        return {}, {"skipped": refs.available("clarabel")}
    truth, _, ok, _, _ = refs.run_loop(refs.make("clarabel", o), x0s, ds)
    out, skipped = {}, {}
    for name in refs.REFERENCES:
        if (why := refs.available(name)) is not None:
            print(why)
            skipped[name] = why
            continue
        tol = refs.pick_tolerance(name, o, x0s, ds, truth, within=within)
        out[name] = refs.measure(name, o, tol, x0s, ds, truth, pool) | {"version": refs.version(name)}
        print(name, json.dumps(out[name]))
    info = dict(truth="Clarabel, tolerances 1e-10", truth_solved=int(ok),
                jtwin_max_abs_du0_vs_truth=float(np.max(np.abs(u0_jt - truth))), skipped=skipped)  # fmt: skip
    return out, info


def qp_batch(mpc, x0s):
    """The QP jtwin solves for each state, in OSQP's form: shared (P, A), per-state (q, l, u).

    jtwin keeps the variable bounds (input boxes, and state boxes in the sparse
    form) as a diagonal; for OSQP they are the identity rows of ``A`` that
    OSQP's own MPC example uses.
    """
    ref = mpc.xref
    d = jnp.zeros((mpc.horizon, 0))
    P, _, A, _, _ = mpc._qp(jnp.asarray(x0s[0]), d, ref)
    q, l, u = jax.vmap(lambda x: tuple(mpc._qp(x, d, ref)[i] for i in (1, 3, 4)))(jnp.asarray(x0s))
    lb, ub = mpc._var_bounds(mpc.formulation)
    rows = np.flatnonzero(np.isfinite(lb) | np.isfinite(ub))
    A = np.vstack([np.asarray(A), np.eye(P.shape[0])[rows]])
    B = len(x0s)
    l = np.hstack([np.asarray(l), np.tile(lb[rows], (B, 1))])
    u = np.hstack([np.asarray(u), np.tile(ub[rows], (B, 1))])
    return np.asarray(P), A, np.asarray(q), l, u


def osqp_loop(P, A, q, l, u, eps, u_slice, check_termination=25):
    solver = osqp.OSQP()
    solver.setup(
        sp.csc_matrix(np.triu(P)), q[0], sp.csc_matrix(A), l[0], u[0],
        eps_abs=eps, eps_rel=eps, polishing=False, verbose=False, warm_starting=True,
        check_termination=check_termination,
    )  # fmt: skip
    u0s, iters, ok = [], [], 0
    t0 = time.perf_counter()
    for i in range(q.shape[0]):
        solver.update(q=q[i], l=l[i], u=u[i])
        res = solver.solve(raise_error=False)
        u0s.append(res.x[u_slice][:4])
        iters.append(res.info.iter)
        ok += res.info.status == "solved"
    elapsed = time.perf_counter() - t0
    return elapsed, np.array(u0s), np.array(iters), ok


def timeit(fn, repeat, cpu=False):
    """Best of ``repeat`` wall times (compiled calls only): the machine is shared, and the
    minimum is the least disturbed by other processes; OSQP's loop is timed the same way.
    ``cpu=True``: also the best process CPU time (all of jtwin's threads)."""
    times, cpus = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return (float(np.min(times)), float(np.min(cpus))) if cpu else float(np.min(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 problems instead of 1000")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--eps", type=float, default=1e-6, help="eps_abs = eps_rel for both solvers")
    parser.add_argument("--no-references", action="store_true", help="skip PIQP, DAQP, HPIPM (and their pool runs)")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args()
    batch = 200 if args.quick else args.batch
    load_start = os.getloadavg()[0]
    plant = quadcopter()
    rng = np.random.default_rng(0)
    x0s = rng.uniform(-0.3, 0.3, size=(batch, 12)) * np.array([0.5, 0.5, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1])

    mpc = make_mpc(plant, "auto", args.eps)
    solve = jax.jit(jax.vmap(mpc.solve))
    t0 = time.perf_counter()
    sols = jax.block_until_ready(solve(x0s))
    compile_s = time.perf_counter() - t0
    batch_s, batch_cpu = timeit(lambda: solve(x0s), 7, cpu=True)
    u0_jt = np.asarray(sols.u[:, 0])
    status_jt = np.asarray(is_successful(sols.status))

    tight = make_mpc(plant, "auto", 1e-9)
    u0_ref = np.asarray(jax.jit(jax.vmap(tight.solve))(x0s).u[:, 0])

    # float32 throughput path at the same tolerance (reported, counted only if it meets it)
    plant32 = {k: np.asarray(v, np.float32) for k, v in plant.items()}
    mpc32 = make_mpc(plant32, "auto", args.eps, max_iter=1000)
    solve32 = jax.jit(jax.vmap(mpc32.solve))
    x0s32 = x0s.astype(np.float32)
    sols32 = jax.block_until_ready(solve32(x0s32))
    f32_s = timeit(lambda: solve32(x0s32), 5)
    u0_32 = np.asarray(sols32.u[:, 0], np.float64)

    osqp_runs = {}
    for form, check in (("condensed", 25), ("sparse", 25), ("condensed", 5), ("sparse", 5)):
        m_f = make_mpc(plant, form, args.eps)
        P, A, q, l, u = qp_batch(m_f, x0s)
        off = _offsets(m_f._var_blocks(form), m_f.horizon)["u"]
        runs = [osqp_loop(P, A, q, l, u, args.eps, slice(off, off + 40), check) for _ in range(3)]
        el, u0_os, it, ok = runs[0]
        el = min(r[0] for r in runs)
        osqp_runs[form if check == 25 else f"{form}_check_every_{check}"] = dict(
            seconds=el,
            solves_per_s=batch / el,
            mean_iterations=float(it.mean()),
            solved=int(ok),
            n_variables=int(P.shape[0]),
            n_constraints=int(A.shape[0]),
            max_abs_du0_vs_jtwin=float(np.max(np.abs(u0_os - u0_jt))),
            max_abs_du0_vs_reference=float(np.max(np.abs(u0_os - u0_ref))),
        )
    best = min(osqp_runs.values(), key=lambda r: r["seconds"])
    f32_ok = bool(np.all(np.asarray(is_successful(sols32.status))) and np.max(np.abs(u0_32 - u0_ref)) <= 1e-3)

    peers, peer_info = ({}, {"skipped": "--no-references"})
    if not args.no_references:
        pool = refs.Pool2()
        try:
            peers, peer_info = peer_references(plant, x0s, u0_jt, pool)
        finally:
            pool.close()
    top = refs.fastest(peers) if peers else None
    jt_cpu_us = 1e6 * batch_cpu / batch

    # single-solve latency (jitted call) vs one OSQP update+solve
    single = jax.jit(lambda x: mpc.solve(x))
    jax.block_until_ready(single(x0s[0]))
    t0 = time.perf_counter()
    for x in x0s[:50]:  # mean over 50 one-at-a-time solves, as for OSQP below
        jax.block_until_ready(single(x))
    lat_jt = (time.perf_counter() - t0) / 50
    P, A, q, l, u = qp_batch(make_mpc(plant, "sparse", args.eps), x0s[:50])
    lat_os = osqp_loop(P, A, q, l, u, args.eps, slice(0, 4))[0] / 50

    # closed loop: 30 steps from one state, cold vs shifted warm start
    step = jax.jit(lambda x, ws: mpc.solve(x, warm_start=ws))
    cold_step = jax.jit(lambda x: mpc.solve(x))
    x = jnp.asarray(x0s[0])
    prev = cold_step(x)
    cold_it, warm_it = [], []
    for _ in range(30):
        x = prev.x[1]
        cold_it.append(int(cold_step(x).iterations))
        prev = step(x, mpc.shift(prev))
        warm_it.append(int(prev.iterations))

    result = dict(
        benchmark="mpc_batch",
        plant="OSQP MPC example quadcopter: 12 states, 4 inputs, horizon 10",
        formulation=mpc.formulation,
        batch=batch,
        eps=args.eps,
        jtwin=dict(
            seconds=batch_s,
            solves_per_s=batch / batch_s,
            compile_seconds=compile_s,
            solved=int(np.sum(status_jt)),
            max_iterations=int(np.max(np.asarray(sols.iterations))),
            mean_iterations=float(np.mean(np.asarray(sols.iterations))),
            max_abs_du0_vs_reference=float(np.max(np.abs(u0_jt - u0_ref))),
        ),
        jtwin_float32=dict(
            seconds=f32_s,
            solves_per_s=batch / f32_s,
            solved=int(np.sum(np.asarray(is_successful(sols32.status)))),
            max_iterations=int(np.max(np.asarray(sols32.iterations))),
            max_abs_du0_vs_reference=float(np.max(np.abs(u0_32 - u0_ref))),
            meets_tolerance_and_accuracy=f32_ok,
            throughput_ratio_vs_best_osqp=best["seconds"] / f32_s,
        ),
        osqp=osqp_runs,
        references=peers,
        references_info=peer_info,
        jtwin_cpu_us_per_solve=jt_cpu_us,
        jtwin_solves_per_s_per_core=batch / batch_s / os.cpu_count(),
        fastest_reference=None if top is None else dict(
            run=top[0], solves_per_s=top[1], cpu_us_per_solve=top[2],
            throughput_ratio=batch / batch_s / top[1], cpu_time_ratio=top[2] / jt_cpu_us,
        ),
        throughput_ratio_vs_best_osqp=best["seconds"] / batch_s,
        max_abs_du0_jtwin_vs_best_osqp=best["max_abs_du0_vs_jtwin"],
        single_solve_latency_s=dict(jtwin_jit=lat_jt, osqp_sparse_warm=lat_os, ratio=lat_os / lat_jt),
        closed_loop_iterations=dict(cold_mean=float(np.mean(cold_it)), shifted_warm_mean=float(np.mean(warm_it))),
        timing="best of repeated runs (jtwin 7, OSQP loop 3, references 3 alone / 2 pooled); cpu = process CPU time "
        "(jtwin: all threads; pool: both workers); load_average: the 1-min load at start and end",
        load_average=os.getloadavg()[0],
        load_average_start=load_start,
        machine=dict(platform=platform.platform(), jax=jax.__version__, osqp=osqp.__version__, device=str(jax.devices()[0])),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
