"""Peer QP solvers for the MPC benchmarks, each written the way its users write it.

One linear MPC problem class (:class:`OCP`) is handed to every reference:

    min  Σ_{k=1}^{N-1} ½x_kᵀQx_k + qxᵀx_k  +  ½x_Nᵀ Q_N x_N + qx_Nᵀx_N  +  Σ_{k=0}^{N-1} ½w_kᵀRw_k + qwᵀw_k
    s.t. x_{k+1} = A x_k + B w_k + E d_k,                 (x_0 given)
         lg − G d_k ≤ C x_k + D w_k ≤ ug − G d_k,         k = 0..N-1
         wmin ≤ w_k ≤ wmax,  xmin ≤ x_k ≤ xmax (k = 1..N)

``w_k`` holds the plant inputs first (``n_inputs`` of them) and then any per-stage auxiliary
variables (the building's demand-charge epigraph and comfort slacks). Per problem only
``x0`` and the disturbance forecast ``d`` (N × nd) change.

References (all in float64 on one core, Python loops over problems):

* ``osqp``: OSQP on the sparse (stage-wise) QP, ``update(q, l, u)`` + warm start.
* ``piqp``: PIQP's ``SparseSolver`` with the ``sparse_multistage`` KKT backend
  (variables ordered stage-wise, which it detects), ``update(c, b, h_l, h_u)``.
* ``daqp``: DAQP (dual active set) on the condensed QP (states eliminated), ``daqp.solve``.
* ``hpipm``: HPIPM through CasADi (``casadi.conic(..., 'hpipm', ...)``) in ``robust`` mode,
  structure given as ``N, nx, nu, ng`` (``nu`` has N+1 entries, the last 0).
* ``clarabel``: the accuracy truth (Clarabel at 1e-10 on the sparse QP; not timed).

:func:`run_loop` times one reference over a list of problems (wall and process CPU time),
:class:`Pool2` runs the same loop split over two worker processes (the machine's two cores;
jtwin's batch uses both).
"""

from __future__ import annotations

import dataclasses
import importlib
import multiprocessing as mp
import os
import time

import numpy as np
import scipy.sparse as sp

REFERENCES = ("osqp", "piqp", "daqp", "hpipm")
_MODULES = {"osqp": "osqp", "piqp": "piqp", "daqp": "daqp", "hpipm": "casadi", "clarabel": "clarabel"}


def available(name: str) -> str | None:
    """``None`` if the reference's package imports, else the reason (the benchmark skips it)."""
    try:
        importlib.import_module(_MODULES[name])
    except ImportError as exc:  # pragma: no cover - depends on the environment
        return f"{name} skipped: {exc} (pip install -e '.[dev,bench]')"
    return None


def version(name: str) -> str:
    from importlib.metadata import version as v

    return v({"hpipm": "casadi"}.get(name, name))


@dataclasses.dataclass
class OCP:
    N: int
    A: np.ndarray
    B: np.ndarray
    E: np.ndarray
    Q: np.ndarray
    QN: np.ndarray
    R: np.ndarray
    qx: np.ndarray
    qxN: np.ndarray
    qw: np.ndarray
    C: np.ndarray
    D: np.ndarray
    G: np.ndarray
    lg: np.ndarray
    ug: np.ndarray
    wmin: np.ndarray
    wmax: np.ndarray
    xmin: np.ndarray
    xmax: np.ndarray
    n_inputs: int

    @property
    def dims(self):
        return self.A.shape[0], self.B.shape[1], self.C.shape[0], self.E.shape[1]


# ---------------------------------------------------------------- sparse, stage-wise QP
# z = [w_0, x_1, w_1, x_2, ..., w_{N-1}, x_N]; rows: dynamics (equalities), stage constraints.


def sparse_qp(o: OCP):
    """``(P, q, Aeq, beq_fn, Ain, lin_fn, uin_fn, zl, zu)`` with the ``*_fn(x0, d)`` affine."""
    nx, nw, ng, nd = o.dims
    N, s = o.N, nx + nw
    P = sp.block_diag([o.R, o.Q] * (N - 1) + [o.R, o.QN], format="csc")
    q = np.concatenate([np.concatenate([o.qw, o.qx])] * (N - 1) + [o.qw, o.qxN])
    eq = sp.lil_matrix((N * nx, N * s))
    ineq = sp.lil_matrix((N * ng, N * s))
    for k in range(N):
        eq[k * nx : (k + 1) * nx, k * s : k * s + nw] = -o.B
        eq[k * nx : (k + 1) * nx, k * s + nw : (k + 1) * s] = np.eye(nx)
        ineq[k * ng : (k + 1) * ng, k * s : k * s + nw] = o.D
        if k > 0:
            eq[k * nx : (k + 1) * nx, (k - 1) * s + nw : k * s] = -o.A
            ineq[k * ng : (k + 1) * ng, (k - 1) * s + nw : k * s] = o.C
    zl = np.tile(np.concatenate([o.wmin, o.xmin]), N)
    zu = np.tile(np.concatenate([o.wmax, o.xmax]), N)

    def beq(x0, d):
        b = d @ o.E.T
        b[0] += o.A @ x0
        return b.ravel()

    def shift(x0, d):
        g = d @ o.G.T
        g[0] += o.C @ x0
        return g.ravel()

    def lin(x0, d):
        return np.tile(o.lg, N) - shift(x0, d)

    def uin(x0, d):
        return np.tile(o.ug, N) - shift(x0, d)

    return P, q, eq.tocsc(), beq, ineq.tocsc(), lin, uin, zl, zu


def _osqp_form(o: OCP):
    """OSQP's one constraint block: dynamics, stage constraints, identity rows for the bounded variables."""
    P, q, Aeq, beq, Ain, lin, uin, zl, zu = sparse_qp(o)
    rows = np.flatnonzero(np.isfinite(zl) | np.isfinite(zu))
    A = sp.vstack([Aeq, Ain, sp.eye(P.shape[0], format="csr")[rows]]).tocsc()

    def bounds(x0, d):
        b = beq(x0, d)
        return np.concatenate([b, lin(x0, d), zl[rows]]), np.concatenate([b, uin(x0, d), zu[rows]])

    return P, q, A, bounds


class OSQPRef:
    def __init__(self, o: OCP, tol: float, **settings):
        import osqp

        P, q, A, self.bounds = _osqp_form(o)
        self.nw = o.B.shape[1]
        self.m = o.n_inputs
        lo, hi = self.bounds(np.zeros(o.A.shape[0]), np.zeros((o.N, o.E.shape[1])))
        self.solver = osqp.OSQP()
        options = dict(eps_abs=tol, eps_rel=tol, polishing=False, verbose=False, warm_starting=True, max_iter=100_000)
        self.solver.setup(sp.triu(P, format="csc"), q, A, lo, hi, **(options | settings))

    def solve(self, x0, d):
        lo, hi = self.bounds(x0, d)
        self.solver.update(l=lo, u=hi)
        res = self.solver.solve(raise_error=False)
        return res.x[: self.m], res.info.iter, res.info.status == "solved"


class PIQPRef:
    def __init__(self, o: OCP, tol: float):
        import piqp

        P, q, Aeq, self.beq, Ain, self.lin, self.uin, zl, zu = sparse_qp(o)
        self.m = o.n_inputs
        self.solver = piqp.SparseSolver()
        self.solver.settings.kkt_solver = piqp.KKTSolver.sparse_multistage
        self.solver.settings.eps_abs = tol
        self.solver.settings.eps_rel = tol
        self.solver.settings.verbose = False
        x0, d = np.zeros(o.A.shape[0]), np.zeros((o.N, o.E.shape[1]))
        self.solver.setup(P, q, Aeq, self.beq(x0, d), Ain, self.lin(x0, d), self.uin(x0, d), zl, zu)
        self.solved = piqp.PIQP_SOLVED

    def solve(self, x0, d):
        self.solver.update(b=self.beq(x0, d), h_l=self.lin(x0, d), h_u=self.uin(x0, d))
        status = self.solver.solve()
        return self.solver.result.x[: self.m].copy(), self.solver.result.info.iter, status == self.solved


class ClarabelRef:
    """The accuracy truth: Clarabel (interior point) on the sparse QP at tight tolerances."""

    def __init__(self, o: OCP, tol: float = 1e-10):
        import clarabel

        self.clarabel = clarabel
        P, self.q, A, self.bounds = _osqp_form(o)
        self.P, self.A = sp.triu(P, format="csc"), A
        lo, hi = self.bounds(np.zeros(o.A.shape[0]), np.zeros((o.N, o.E.shape[1])))
        self.eq = lo == hi
        self.settings = clarabel.DefaultSettings()
        self.settings.verbose = False
        for name in ("tol_gap_abs", "tol_gap_rel", "tol_feas", "tol_ktratio"):
            setattr(self.settings, name, tol)
        self.settings.max_iter = 500
        self.m = o.n_inputs

    def solve(self, x0, d):
        lo, hi = self.bounds(x0, d)
        eq, up, low = self.eq, ~self.eq & np.isfinite(hi), ~self.eq & np.isfinite(lo)
        A = sp.vstack([self.A[eq], self.A[up], -self.A[low]]).tocsc()
        b = np.concatenate([lo[eq], hi[up], -lo[low]])
        cones = [self.clarabel.ZeroConeT(int(eq.sum())), self.clarabel.NonnegativeConeT(int(up.sum() + low.sum()))]
        sol = self.clarabel.DefaultSolver(self.P, self.q, A, b, cones, self.settings).solve()
        return np.asarray(sol.x)[: self.m], sol.iterations, str(sol.status) == "Solved"


# ---------------------------------------------------------------- condensed QP (DAQP)


def condensed_qp(o: OCP):
    """States eliminated: ``W = [w_0..w_{N-1}]``, ``X = Sx x0 + Sw W + Sd d``; returns
    ``(H, f_fn, Ag, lo_fn, hi_fn, wl, wu)`` for ``lo ≤ Ag W ≤ hi``, ``wl ≤ W ≤ wu``."""
    nx, nw, ng, nd = o.dims
    N = o.N
    Sx, Sw, Sd = np.zeros((N * nx, nx)), np.zeros((N * nx, N * nw)), np.zeros((N * nx, N * nd))
    Ak = np.eye(nx)
    powers = [np.eye(nx)]
    for _ in range(N):
        powers.append(o.A @ powers[-1])
    for k in range(N):  # x_{k+1} = A^{k+1} x0 + Σ_{j≤k} A^{k-j} (B w_j + E d_j)
        Sx[k * nx : (k + 1) * nx] = powers[k + 1]
        for j in range(k + 1):
            Sw[k * nx : (k + 1) * nx, j * nw : (j + 1) * nw] = powers[k - j] @ o.B
            Sd[k * nx : (k + 1) * nx, j * nd : (j + 1) * nd] = powers[k - j] @ o.E
    del Ak
    Qbar = scipy_block_diag([o.Q] * (N - 1) + [o.QN])
    qbar = np.concatenate([np.tile(o.qx, N - 1), o.qxN])
    H = Sw.T @ Qbar @ Sw + scipy_block_diag([o.R] * N)
    H = 0.5 * (H + H.T)
    fw = np.tile(o.qw, N) + Sw.T @ qbar
    Fx, Fd = Sw.T @ Qbar @ Sx, Sw.T @ Qbar @ Sd
    # stage constraints: C x_k + D w_k (x_k from X for k ≥ 1, x0 for k = 0)
    Cx = np.zeros((N * ng, N * nx))
    for k in range(1, N):
        Cx[k * ng : (k + 1) * ng, (k - 1) * nx : k * nx] = o.C
    C0 = np.zeros((N * ng, nx))
    C0[:ng] = o.C
    Gbar = scipy_block_diag([o.G] * N)
    xrows = np.flatnonzero(np.isfinite(np.tile(o.xmin, N)) | np.isfinite(np.tile(o.xmax, N)))
    grows = np.flatnonzero(np.isfinite(np.tile(o.lg, N)) | np.isfinite(np.tile(o.ug, N)))
    Ag = np.vstack([(Cx @ Sw + scipy_block_diag([o.D] * N))[grows], Sw[xrows]])
    gx, gd = (Cx @ Sx + C0)[grows], (Cx @ Sd + Gbar)[grows]
    lg, ug = np.tile(o.lg, N)[grows], np.tile(o.ug, N)[grows]
    xl, xu = np.tile(o.xmin, N)[xrows], np.tile(o.xmax, N)[xrows]

    def f(x0, d):
        return fw + Fx @ x0 + Fd @ d.ravel()

    def offsets(x0, d):
        dd = d.ravel()
        return np.concatenate([gx @ x0 + gd @ dd, (Sx @ x0 + Sd @ dd)[xrows]])

    lo0, hi0 = np.concatenate([lg, xl]), np.concatenate([ug, xu])
    return H, f, Ag, lambda x0, d: lo0 - offsets(x0, d), lambda x0, d: hi0 - offsets(x0, d), np.tile(o.wmin, N), np.tile(o.wmax, N)


def scipy_block_diag(blocks):
    import scipy.linalg

    return scipy.linalg.block_diag(*blocks)


class DAQPRef:
    BIG = 1e30  # DAQP's infinity

    def __init__(self, o: OCP, tol: float = 1e-6):
        import daqp

        self.daqp = daqp
        self.H, self.f, self.Ag, self.lo, self.hi, wl, wu = condensed_qp(o)
        self.wl, self.wu = np.clip(wl, -self.BIG, self.BIG), np.clip(wu, -self.BIG, self.BIG)
        self.sense = np.zeros(self.wl.size + self.Ag.shape[0], dtype=np.int32)
        self.m, self.tol = o.n_inputs, tol

    def solve(self, x0, d):
        bu = np.concatenate([self.wu, np.minimum(self.hi(x0, d), self.BIG)])
        bl = np.concatenate([self.wl, np.maximum(self.lo(x0, d), -self.BIG)])
        x, _, flag, info = self.daqp.solve(self.H, self.f(x0, d), self.Ag, bu, bl, self.sense, primal_tol=self.tol)
        return np.asarray(x)[: self.m], info["iterations"], flag >= 1


# ---------------------------------------------------------------- HPIPM through CasADi


class HPIPMRef:
    """Variables ``[x0, w0, x1, w1, ..., xN]``, rows ``[gap0, lincon0, ..., gap_{N-1}, lincon_{N-1}]``."""

    def __init__(self, o: OCP, tol: float, mode: str = "robust"):
        import casadi

        nx, nw, ng, nd = o.dims
        N, s = o.N, nx + nw
        n = nx + N * s
        H = scipy_block_diag([np.zeros((nx, nx))] + [o.R, o.Q] * (N - 1) + [o.R, o.QN])
        g = np.concatenate([np.zeros(nx)] + [np.concatenate([o.qw, o.qx])] * (N - 1) + [o.qw, o.qxN])
        A = np.zeros((N * (nx + ng), n))
        for k in range(N):
            r, c = k * (nx + ng), k * s
            A[r : r + nx, c : c + nx], A[r : r + nx, c + nx : c + s], A[r : r + nx, c + s : c + s + nx] = o.A, o.B, -np.eye(nx)
            A[r + nx : r + nx + ng, c : c + nx], A[r + nx : r + nx + ng, c + nx : c + s] = o.C, o.D
        self.casadi, self.o, self.N, self.nx, self.ng = casadi, o, N, nx, ng
        self.H, self.g, self.A = casadi.DM(sp.csc_matrix(H)), g, casadi.DM(sp.csc_matrix(A))
        opts = dict(
            N=N, nx=[nx] * (N + 1), nu=[nw] * N + [0], ng=[ng] * N + [0],
            hpipm=dict(mode=mode, iter_max=200, res_g_max=tol, res_b_max=tol, res_d_max=tol, res_m_max=tol),
        )  # fmt: skip
        self.solver = casadi.conic("hpipm", "hpipm", {"h": self.H.sparsity(), "a": self.A.sparsity()}, opts)
        self.xl = np.concatenate([np.zeros(nx)] + [np.concatenate([o.wmin, o.xmin])] * N)
        self.xu = np.concatenate([np.zeros(nx)] + [np.concatenate([o.wmax, o.xmax])] * N)
        self.m = o.n_inputs

    def solve(self, x0, d):
        o = self.o
        gap = -(d @ o.E.T)  # A x_k + B w_k − x_{k+1} = −E d_k
        lo = np.hstack([gap, o.lg - d @ o.G.T]).ravel()
        hi = np.hstack([gap, o.ug - d @ o.G.T]).ravel()
        self.xl[: self.nx] = self.xu[: self.nx] = x0
        res = self.solver(h=self.H, g=self.g, a=self.A, lba=lo, uba=hi, lbx=self.xl, ubx=self.xu)
        stats = self.solver.stats()
        return np.asarray(res["x"]).ravel()[self.nx : self.nx + self.m], stats.get("iter_count", -1), bool(stats["success"])


FACTORIES = {"osqp": OSQPRef, "piqp": PIQPRef, "daqp": DAQPRef, "hpipm": HPIPMRef, "clarabel": ClarabelRef}


def make(name: str, o: OCP, tol: float | None = None, **kw):
    return FACTORIES[name](o, tol, **kw) if tol is not None else FACTORIES[name](o, **kw)


# ---------------------------------------------------------------- timing


def run_loop(solver, x0s, ds):
    """Solve every problem in turn: ``(u0 [B, m], iterations [B], solved count, wall s, cpu s)``."""
    us, its, ok = [], [], 0
    w0, c0 = time.perf_counter(), time.process_time()
    for x0, d in zip(x0s, ds):
        u, it, good = solver.solve(x0, d)
        us.append(u)
        its.append(it)
        ok += bool(good)
    return np.array(us), np.array(its), ok, time.perf_counter() - w0, time.process_time() - c0


_WORKER_SOLVERS: dict = {}


def _worker(args):
    key, name, o, tol, kw, x0s, ds, hold = args
    if key not in _WORKER_SOLVERS:  # set up once per worker (in the untimed warm-up call)
        _WORKER_SOLVERS[key] = make(name, o, tol, **kw)
    out = run_loop(_WORKER_SOLVERS[key], x0s, ds)
    time.sleep(hold)  # warm-up: keep this worker busy so that the other one takes the next job
    return out


class Pool2:
    """Two spawned worker processes; each reference's solver is set up in a worker once (untimed)."""

    def __init__(self, workers: int = 2):
        self.workers = workers
        self.pool = mp.get_context("spawn").Pool(workers)

    def run(self, name, o, tol, x0s, ds, **kw):
        key = (name, tol, id(o))
        split = np.array_split(np.arange(len(x0s)), self.workers)
        warm = [(key, name, o, tol, kw, x0s[i[:1]], ds[i[:1]], 0.5) for i in split]
        self.pool.map(_worker, warm, chunksize=1)  # one warm-up job per worker: each sets its solver up
        jobs = [(key, name, o, tol, kw, x0s[i], ds[i], 0.0) for i in split]
        w0 = time.perf_counter()
        parts = self.pool.map(_worker, jobs, chunksize=1)
        wall = time.perf_counter() - w0
        u = np.concatenate([p[0] for p in parts])
        return u, np.concatenate([p[1] for p in parts]), sum(p[2] for p in parts), wall, sum(p[4] for p in parts)

    def close(self):
        self.pool.close()
        self.pool.join()


def load() -> float:
    return os.getloadavg()[0]


def pick_tolerance(name, o, x0s, ds, u_truth, tols=(1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8), within=1e-3):
    """The loosest tolerance at which every problem is solved and max |Δu₀| vs the truth ≤ ``within``
    (DAQP, an active-set method, has one: its default)."""
    if name == "daqp":
        tols = (1e-6,)
    for tol in tols:
        u, _, ok, _, _ = run_loop(make(name, o, tol), x0s, ds)
        if ok == len(x0s) and np.max(np.abs(u - u_truth)) <= within:
            return tol
    return tols[-1]


def measure(name, o, tol, x0s, ds, u_truth, pool=None, repeat=3):
    """One reference on the problems: best-of-``repeat`` wall and CPU per solve, alone and as a
    2-process pool, its max |Δu₀| against the truth and how many it solved."""
    solver = make(name, o, tol)
    runs = [run_loop(solver, x0s, ds) for _ in range(repeat)]
    u, its, ok = runs[0][:3]
    B = len(x0s)
    wall, cpu = min(r[3] for r in runs), min(r[4] for r in runs)
    out = dict(
        tolerance=tol,
        solved=int(ok),
        mean_iterations=float(np.mean(its)),
        max_abs_du0_vs_truth=float(np.max(np.abs(u - u_truth))),
        us_per_solve=1e6 * wall / B,
        cpu_us_per_solve=1e6 * cpu / B,
        solves_per_s=B / wall,
        solves_per_s_per_core=B / wall,
    )
    if pool is not None:
        pruns = [pool.run(name, o, tol, x0s, ds) for _ in range(max(1, repeat - 1))]
        pwall, pcpu = min(r[3] for r in pruns), min(r[4] for r in pruns)
        out["pool2"] = dict(
            us_per_solve=1e6 * pwall / B,
            cpu_us_per_solve=1e6 * pcpu / B,
            solves_per_s=B / pwall,
            solves_per_s_per_core=B / pwall / pool.workers,
            max_abs_du0_vs_truth=float(np.max(np.abs(pruns[0][0] - u_truth))),
        )
    return out


def fastest(refs: dict):
    """``(name, throughput, cpu µs per solve)`` of the fastest reference run (alone or pooled)."""
    best = None
    for name, r in refs.items():
        if r["max_abs_du0_vs_truth"] > 1e-3:  # its time does not count
            continue
        for tag, run in ((name, r), (f"{name} pool2", r.get("pool2"))):
            if run and (best is None or run["solves_per_s"] > best[1]):
                best = (tag, run["solves_per_s"], run["cpu_us_per_solve"])
    return best


# ---------------------------------------------------------------- closed loop: Kalman filter + MPC per scenario


def kf_mpc_loop(solver, plant, scen, noise, steps, cov0, N, record=None):
    """One scenario the Python way: filterpy's ``KalmanFilter`` and one QP solve per step.

    ``plant``: dict of numpy ``A, B, E, H, Q, R``; ``scen``: dict with ``x0, mean0, d, forecast_error``;
    ``noise``: per-step ``(w, v, dropped)`` drawn beforehand. Returns the inputs [steps, m];
    ``record`` (a list) receives each step's QP data ``(x̂, forecast)``."""
    from filterpy.kalman import KalmanFilter

    A, B, E, H = (plant[k] for k in "ABEH")
    kf = KalmanFilter(dim_x=A.shape[0], dim_z=H.shape[0], dim_u=B.shape[1] + E.shape[1])
    kf.x, kf.P = np.asarray(scen["mean0"], float).copy(), cov0.copy()
    kf.F, kf.B, kf.H, kf.Q, kf.R = A, np.hstack([B, E]), H, plant["Q"], plant["R"]
    x = np.asarray(scen["x0"], float)
    d_true = scen["d"]
    forecast_all = d_true + scen["forecast_error"]
    us = []
    for k in range(steps):
        w, v, dropped = (a[k] for a in noise)
        y = H @ x + v
        if not dropped.all():  # filterpy updates all rows: drop the missing ones by hand
            keep = ~dropped
            kf.dim_z = int(keep.sum())
            kf.update(y[keep], R=plant["R"][np.ix_(keep, keep)], H=H[keep])
            kf.dim_z = H.shape[0]
        forecast = forecast_all[k : k + N].copy()
        forecast[0] = d_true[k]
        if record is not None:
            record.append((kf.x.copy(), forecast))
        u = solver.solve(kf.x, forecast)[0]
        us.append(u)
        kf.predict(u=np.concatenate([u, d_true[k]]))
        x = A @ x + B @ u + E @ d_true[k] + w
    return np.array(us)


def _closed_loop_worker(args):
    key, name, o, tol, kw, plant, scens, noises, steps, cov0, hold = args
    if key not in _WORKER_SOLVERS:
        _WORKER_SOLVERS[key] = make(name, o, tol, **kw)
    w0, c0 = time.perf_counter(), time.process_time()
    us = [kf_mpc_loop(_WORKER_SOLVERS[key], plant, s, n, steps, cov0, o.N) for s, n in zip(scens, noises)]
    out = us, time.perf_counter() - w0, time.process_time() - c0
    time.sleep(hold)
    return out


def closed_loop(name, o, tol, plant, scens, noises, steps, cov0, pool=None, **kw):
    """``(inputs [S, steps, m], wall s, cpu s)`` of the reference's closed loops, in this process
    or split over the pool's two workers (solver set up beforehand, untimed)."""
    if pool is None:
        solver = make(name, o, tol, **kw)
        w0, c0 = time.perf_counter(), time.process_time()
        us = [kf_mpc_loop(solver, plant, s, n, steps, cov0, o.N) for s, n in zip(scens, noises)]
        return np.array(us), time.perf_counter() - w0, time.process_time() - c0
    key = ("loop", name, tol, id(o), tuple(sorted(kw.items())))
    split = np.array_split(np.arange(len(scens)), pool.workers)
    args = lambda idx, n_steps, hold: (key, name, o, tol, kw, plant, [scens[i] for i in idx], [noises[i] for i in idx], n_steps, cov0, hold)  # noqa: E731
    pool.pool.map(_closed_loop_worker, [args(i[:1], 1, 0.5) for i in split], chunksize=1)
    w0 = time.perf_counter()
    parts = pool.pool.map(_closed_loop_worker, [args(i, steps, 0.0) for i in split], chunksize=1)
    wall = time.perf_counter() - w0
    return np.array([u for p in parts for u in p[0]]), wall, sum(p[2] for p in parts)
