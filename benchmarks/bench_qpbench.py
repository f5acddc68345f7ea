"""qpbench dev subset (45 MPC QPs of mpc_qpbenchmark) at low / mid / high accuracy (1e-3 / 1e-6 / 1e-9).

For each solver and accuracy: the success rate (qpbenchmark's rule: reported success and the
primal residual, dual residual and duality gap all below the tolerance, recomputed by
:mod:`benchmarks.qpbench` from the returned point and multipliers) and the shifted geometric
mean (shift 10) of the solve times, a failed solve counted as the time limit (10 s), as
qpbenchmark does.  Solvers are configured as qpbenchmark configures them: ``eps_abs = tol``,
``eps_rel = 0``.

* ``ipm``: :class:`jtwin.qp.InteriorPoint`; ``admm``: :class:`jtwin.qp.ADMM` with polishing;
  both through :func:`jtwin.qp.solve` (jitted; one compile per problem shape and setting,
  reported apart; the solve time is the fastest of ``--repeats`` calls after it, the machine being shared);
* ``osqp``: OSQP 1.x (setup + solve wall time, polishing on).

Writes ``benchmarks/results/qpbench.json`` and prints a table and, for each miss, the problem
and why (status, or which measure missed).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import sys
import time

import jax
import numpy as np
import osqp
import scipy.sparse as sp

import jtwin  # noqa: F401  (float64)
from jtwin.qp.admm import ADMM
from jtwin.qp.base import solve
from jtwin.qp.ipm import InteriorPoint
from jtwin.qp.problem import QPProblem
from jtwin.qp.results import status_name

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import qpbench  # noqa: E402

RESULTS = pathlib.Path(__file__).parent / "results" / "qpbench.json"
SOLVERS = ("ipm", "admm", "osqp")


def _jtwin_solver(name: str, tol: float):
    if name == "ipm":
        return InteriorPoint(eps_abs=tol, eps_rel=0.0)
    return ADMM(eps_abs=tol, eps_rel=0.0, polish=True)


def run_jtwin(name: str, tol: float, problems, repeats: int) -> tuple[list[dict], dict[str, float]]:
    """Solve every problem; compile time per problem shape (first call minus a timed call)."""
    solver = _jtwin_solver(name, tol)
    compiled: dict[tuple, float] = {}
    rows = []
    for prob in problems:
        problem = QPProblem(prob.P, prob.q, prob.C, prob.l, prob.u, prob.lb, prob.ub)
        shape = (prob.C.shape, prob.lb is not None)
        if shape not in compiled:
            t0 = time.perf_counter()
            jax.block_until_ready(solve(solver, problem))
            compiled[shape] = time.perf_counter() - t0
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            sol = jax.block_until_ready(solve(solver, problem))
            times.append(time.perf_counter() - t0)
        status = status_name(sol.status)
        rows.append(dict(problem=prob.name, status=status, found=status == "successful", runtime=float(np.min(times)),
                         iterations=int(sol.iterations), **qpbench.score(prob, sol.x, sol.y, sol.y_bound)))
    return rows, {f"{s[0][0]}x{s[0][1]}": t for s, t in compiled.items()}


def run_osqp(tol: float, problems) -> list[dict]:
    rows = []
    for prob in problems:
        C, lo, hi = prob.C, prob.l, prob.u
        if prob.lb is not None:
            C, lo, hi = np.concatenate([C, np.eye(len(prob.q))]), np.concatenate([lo, prob.lb]), np.concatenate([hi, prob.ub])
        t0 = time.perf_counter()
        s = osqp.OSQP()
        s.setup(P=sp.csc_matrix(np.triu(prob.P)), q=prob.q, A=sp.csc_matrix(C), l=lo, u=hi, eps_abs=tol, eps_rel=0.0,
                polishing=True, time_limit=qpbench.TIME_LIMIT, verbose=False)
        res = s.solve(raise_error=False)
        runtime = time.perf_counter() - t0
        k = prob.C.shape[0]
        y = np.zeros(k + len(prob.q)) if res.y is None else res.y
        x = np.zeros(len(prob.q)) if res.x is None else res.x
        status = res.info.status
        found = status == "solved"
        rows.append(dict(problem=prob.name, status=status, found=found, runtime=runtime, iterations=int(res.info.iter),
                         **qpbench.score(prob, x, y[:k], y[k:] if prob.lb is not None else None)))
    return rows


def summarise(rows: list[dict], tol: float) -> dict:
    solved = [qpbench.solved(r["found"], {k: r[k] for k in ("primal_residual", "dual_residual", "duality_gap")}, tol) for r in rows]
    times = [r["runtime"] if r["found"] else qpbench.TIME_LIMIT for r in rows]
    misses = [
        dict(problem=r["problem"], why=qpbench.failure_reason(r["found"], r["status"], {k: r[k] for k in ("primal_residual", "dual_residual", "duality_gap")}, tol))
        for r, ok in zip(rows, solved)
        if not ok
    ]
    return dict(
        success_rate=100.0 * float(np.mean(solved)),
        shgeom_time_s=qpbench.shifted_geometric_mean(times),
        median_time_s=float(np.median([r["runtime"] for r in rows])),
        median_iterations=float(np.median([r["iterations"] for r in rows])),
        slowest=[dict(problem=r["problem"], time_s=r["runtime"]) for r in sorted(rows, key=lambda r: -r["runtime"])[:3]],
        misses=misses,
    )


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--solvers", nargs="+", default=list(SOLVERS), choices=SOLVERS)
    parser.add_argument("--accuracies", nargs="+", default=list(qpbench.ACCURACIES), choices=list(qpbench.ACCURACIES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    problems = qpbench.load_all()
    out = dict(problems=len(problems), time_limit_s=qpbench.TIME_LIMIT, shift=qpbench.TIME_SHIFT, machine=platform.processor() or platform.machine(),
               jax=jax.__version__, osqp=osqp.__version__, results={})
    for acc in args.accuracies:
        tol = qpbench.ACCURACIES[acc]
        for name in args.solvers:
            if name == "osqp":
                rows, compile_s = run_osqp(tol, problems), {}
            else:
                rows, compile_s = run_jtwin(name, tol, problems, args.repeats)
            summary = summarise(rows, tol)
            summary["compile_s"] = compile_s
            out["results"].setdefault(name, {})[acc] = summary
            print(f"{name:5s} {acc:4s} tol {tol:.0e}: {summary['success_rate']:5.1f}% solved, shgeom time {summary['shgeom_time_s'] * 1e3:8.3f} ms, "
                  f"median {summary['median_time_s'] * 1e3:7.3f} ms, median iterations {summary['median_iterations']:.0f}"
                  + (f", compile {', '.join(f'{k}: {v:.1f} s' for k, v in compile_s.items())}" if compile_s else ""), flush=True)
            for miss in summary["misses"]:
                print(f"      miss {miss['problem']}: {miss['why']}")
    print("\nsuccess rate % (low / mid / high) and shifted geometric mean of time relative to the best solver per accuracy")
    best = {acc: min(out["results"][s][acc]["shgeom_time_s"] for s in args.solvers) for acc in args.accuracies}
    for name in args.solvers:
        r = out["results"][name]
        rates = " / ".join(f"{r[acc]['success_rate']:.1f}" for acc in args.accuracies)
        rel = " / ".join(f"{r[acc]['shgeom_time_s'] / best[acc]:.2f}" for acc in args.accuracies)
        print(f"  {name:5s} {rates:>22s}   time {rel}")
    pathlib.Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
