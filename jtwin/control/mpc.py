"""Linear MPC with ℓ2 tracking, ℓ1 and demand-charge (hinge) costs, boxes and soft state constraints.

Objective (exact convention: **no factor ½**; this is the value reported in
``MPCSolution.objective`` and the one the tests compare with cvxpy)::

    J = Σ_{t=0}^{N-1} [ (x_t − r_t)ᵀQ(x_t − r_t) + u_tᵀR u_t + α‖u_t‖₁ + β·max{0, cᵀu_t − ρ} ]
        + (x_N − r_N)ᵀ Q_N (x_N − r_N)  +  w·Σ_{t=1}^{N} Σ_j viol_{t,j}

    x_{t+1} = A x_t + B u_t + E d_t,   x_0 given,
    umin ≤ u_t ≤ umax,   xmin ≤ x_t ≤ xmax  (t = 1..N),

with ``viol_{t,j} = max{0, x_{t,j} − xmax_j, xmin_j − x_{t,j}}`` when the state
constraints are soft (``soft_penalty = w``; an exact ℓ1 penalty: for ``w``
above the constraints' multipliers the soft and hard optima coincide, and a
disturbed state never makes the problem infeasible).  ``Q_N`` defaults to the
LQR cost-to-go (:func:`jtwin.control.lqr`), ``r_t`` is ``xref`` ([n] constant
or [N+1, n] time-varying), ``d`` the disturbance forecast [N, p].

Solvers (``solver=`` a :mod:`jtwin.qp` solver object, or ``method=`` its name):

* ``ADMM()`` / ``"admm"`` (default) and ``InteriorPoint()`` / ``"ipm"``: the problem is written as
  a QP for :func:`jtwin.qp.solve` (``½zᵀPz + qᵀz``, so ``P`` is twice the Hessian of
  ``J``).  ℓ1 through epigraph slacks ``τ ≥ |u|`` (cost ``α·Στ``) — or, when every
  input box fixes the input's sign (e.g. ``umin ≥ 0``), exactly as the linear cost
  ``α·sign(u)ᵀu`` without slacks — the hinge
  through ``h ≥ 0, h ≥ cᵀu_t − ρ`` (cost ``β·Σh``), soft constraints through
  slacks ``s ≥ 0`` with ``xmin − s ≤ x ≤ xmax + s`` (cost ``w·Σs``).
* ``FISTA()`` / ``"fista"``: accelerated proximal gradient on the condensed inputs with the
  exact prox of ``α‖u‖₁ + box + β·hinge`` per step (:mod:`jtwin.qp.prox`);
  no slacks, no state constraints; gradients by implicit differentiation of the
  proximal-gradient fixed point (:func:`jtwin.qp.attach_fixed_point_gradient`).

Formulation (``formulation``, QP solvers): ``"condensed"`` eliminates the states
(variables ``u`` [N·m] + slacks; dense rows for state constraints),
``"sparse"`` keeps ``x_1..x_N`` as variables with the dynamics as equality
rows.  Both are solved with dense linear algebra, so ``"auto"`` picks the one
with the smaller per-iteration cost ``n_z² + 2·n_rows·n_z`` unless
condensing is ill-conditioned (spectral radius of ``A`` to the power ``N`` above
1e6), in which case it takes ``"sparse"``.

Every matrix of the QP depends only on the model and weights, never on
``x0, d, xref``: ``jax.vmap(mpc.solve)`` over states therefore shares one KKT
factorisation (see :func:`jtwin.qp.solve_qp`).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from .. import _checks
from ..qp import FISTA, RESULTS, AbstractQPSolver, throw_if_failed, QPProblem, WarmStart, attach_fixed_point_gradient, solve
from ..qp.fista import fista, power_iteration
from ..qp.prox import prox_l1_box, prox_l1_box_hinge
from ..qp.registry import make_solver, solver_name
from .base import AbstractController, ControlInfo, info_of
from .lqr import lqr, solve_discrete_are


class MPCSolution(eqx.Module):
    """Result of :meth:`LinearMPC.solve`.

    ``u`` [N, m] inputs (inside their boxes), ``x`` [N+1, n] the states they produce (simulated
    exactly from ``x0``), ``status`` the solver's :class:`jtwin.qp.RESULTS` item,
    ``iterations``, ``objective`` (``J`` above), and the solver's raw primal
    ``z`` and dual ``y`` vectors (``y``: the multipliers of the QP's rows, then
    those of its variable bounds), used as the warm start of the next solve
    (see :meth:`LinearMPC.shift`).
    """

    u: Float[Array, "N m"]
    x: Float[Array, "N+1 n"]
    status: RESULTS
    iterations: Int[Array, ""]
    objective: Float[Array, ""]
    z: Float[Array, " nz"]
    y: Float[Array, " nrows+nz"]


def _bound(name, value, size, default):
    if value is None:
        return np.full(size, default)
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0:
        arr = np.full(size, float(arr))
    if arr.shape != (size,) or np.any(np.isnan(arr)):
        raise ValueError(f"{name}: expected a scalar or shape ({size},) without NaN, got shape {arr.shape}")
    return arr


class LinearMPC(AbstractController):
    """Receding-horizon controller for ``x⁺ = Ax + Bu + Ed`` (see the module docstring for ``J``).

    Array fields (``A, B, E, Q, R, QN, xref, alpha, beta, c, rho, soft_penalty``)
    are differentiable parameters; bounds and the problem structure (which
    states are constrained, whether ℓ1/hinge/soft terms exist) are fixed at
    construction.  ``solver``: a :mod:`jtwin.qp` solver object (``ADMM(...)``,
    ``InteriorPoint(...)``, ``FISTA(...)``); or ``method`` (``"admm"``, ``"ipm"``, ``"fista"``)
    with the solver's options as keywords — ``eps_abs, eps_rel, max_iter, differentiation``
    and, for ADMM, ``polish, adaptive_rho_rule, adaptive_rho_tolerance`` (``None``: the
    solver's default; see the README for when ``adaptive_rho_rule="residual"`` pays).
    ``formulation``: ``"auto"``, ``"condensed"`` or ``"sparse"``.

    As a :class:`~jtwin.control.AbstractController` its state is the last plan (an
    :class:`MPCSolution`): ``step`` solves from the belief's mean warm-started by the shifted plan
    and applies the plan's first input; ``fallback`` applies the shifted plan's.
    """

    A: Float[Array, "n n"]
    B: Float[Array, "n m"]
    E: Float[Array, "n p"]
    Q: Float[Array, "n n"]
    R: Float[Array, "m m"]
    QN: Float[Array, "n n"]
    xref: Float[Array, "N+1 n"]
    umin: tuple[float, ...] = eqx.field(static=True)
    umax: tuple[float, ...] = eqx.field(static=True)
    xmin: tuple[float, ...] = eqx.field(static=True)
    xmax: tuple[float, ...] = eqx.field(static=True)
    alpha: Float[Array, ""]
    beta: Float[Array, ""]
    c: Float[Array, " m"]
    rho: Float[Array, ""]
    soft_penalty: Float[Array, ""]
    horizon: int = eqx.field(static=True)
    solver: AbstractQPSolver
    formulation: str = eqx.field(static=True)
    use_l1: bool = eqx.field(static=True)
    l1_sign: tuple[float, ...] | None = eqx.field(static=True)
    use_hinge: bool = eqx.field(static=True)
    soft: bool = eqx.field(static=True)
    terminal_lqr: bool = eqx.field(static=True)

    def __init__(
        self,
        A,
        B,
        horizon: int,
        Q,
        R,
        QN=None,
        xref=None,
        umin=None,
        umax=None,
        xmin=None,
        xmax=None,
        alpha=0.0,
        beta=0.0,
        c=None,
        rho=0.0,
        E=None,
        *,
        soft_penalty=None,
        solver: AbstractQPSolver | None = None,
        method: str | None = None,
        formulation: str = "auto",
        **solver_options,
    ):
        if not (isinstance(horizon, int) and horizon >= 1):
            raise ValueError(f"horizon: expected a positive int, got {horizon!r}")
        if formulation not in ("auto", "condensed", "sparse"):
            raise ValueError(f"formulation: expected 'auto', 'condensed' or 'sparse', got {formulation!r}")
        self.solver = controller_solver(solver, method, solver_options)
        A = _checks.as_array("A", A, (None, None))
        n = A.shape[0]
        self.A = _checks.as_array("A", A, (n, n))
        self.B = _checks.as_array("B", B, (n, None))
        m = self.B.shape[1]
        N = horizon
        self.E = jnp.zeros((n, 0), self.A.dtype) if E is None else _checks.as_array("E", E, (n, None))
        self.Q = _checks.as_array("Q", Q, (n, n))
        self.R = _checks.as_array("R", R, (m, m))
        self.QN = lqr(self.A, self.B, self.Q, self.R)[1] if QN is None else _checks.as_array("QN", QN, (n, n))
        self.terminal_lqr = QN is None
        self.xref = _reference(jnp.zeros(n, self.A.dtype) if xref is None else xref, N, n)
        bounds = {}
        for name, value, size, default in (
            ("umin", umin, m, -np.inf), ("umax", umax, m, np.inf), ("xmin", xmin, n, -np.inf), ("xmax", xmax, n, np.inf)
        ):  # fmt: skip
            bounds[name] = _bound(name, value, size, default)
        for lo, hi in (("umin", "umax"), ("xmin", "xmax")):
            if np.any(bounds[lo] > bounds[hi]):
                raise ValueError(f"{lo}, {hi}: need {lo} <= {hi} elementwise")
        self.umin, self.umax, self.xmin, self.xmax = (tuple(map(float, bounds[k])) for k in ("umin", "umax", "xmin", "xmax"))
        dtype = self.A.dtype
        self.alpha = _nonneg("alpha", alpha, dtype)
        self.beta = _nonneg("beta", beta, dtype)
        self.c = jnp.ones(m, dtype) if c is None else _checks.as_array("c", c, (m,)).astype(dtype)
        self.rho = jnp.asarray(rho, dtype)
        self.soft = soft_penalty is not None
        self.soft_penalty = _nonneg("soft_penalty", 0.0 if soft_penalty is None else soft_penalty, dtype)
        l1 = not (_checks.is_concrete(self.alpha) and float(self.alpha) == 0.0)
        # |u_j| is linear where the box fixes the sign of u_j: no epigraph slack is needed then
        sign = np.where(bounds["umin"] >= 0, 1.0, np.where(bounds["umax"] <= 0, -1.0, 0.0))
        self.l1_sign = tuple(map(float, sign)) if l1 and np.all(sign != 0) else None
        self.use_l1 = l1 and self.l1_sign is None
        self.use_hinge = not (_checks.is_concrete(self.beta) and float(self.beta) == 0.0)
        self.horizon = N
        if self.method == "fista" and self._constrained_states().size:
            raise ValueError("xmin, xmax: the FISTA solver (method='fista') handles input constraints only; use ADMM or InteriorPoint")
        self.formulation = self._choose_formulation(formulation)

    # ------------------------------------------------------------------ structure

    @property
    def n(self) -> int:
        return self.A.shape[0]

    @property
    def method(self) -> str:
        """The solver's registered name: ``"admm"``, ``"ipm"`` or ``"fista"``."""
        return solver_name(self.solver)

    @property
    def m(self) -> int:
        return self.B.shape[1]

    @property
    def disturbance_dim(self) -> int:
        return self.E.shape[1]

    def input_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """``(umin, umax)`` [m] each."""
        return self._bounds()[:2]

    def init(self, mean: Float[Array, " n"], cov=None, d: Float[Array, "N p"] | None = None) -> MPCSolution:
        """The plan from the initial belief's mean (the covariance is not used)."""
        return self.solve(mean, d)

    def step(
        self, state: MPCSolution, mean: Float[Array, " n"], cov=None, d: Float[Array, "N p"] | None = None
    ) -> tuple[Float[Array, " m"], MPCSolution, ControlInfo]:
        """``(u = plan.u[0], plan, info)`` with ``plan = solve(mean, d, warm_start=shift(state))``."""
        plan = self.solve(mean, d, warm_start=self.shift(state))
        return plan.u[0], plan, info_of(plan)

    def fallback(self, state: MPCSolution, mean=None, cov=None, d=None) -> tuple[Float[Array, " m"], MPCSolution]:
        """``(shift(state).u[0], shift(state))``: the previous plan one step on."""
        plan = self.shift(state)
        return plan.u[0], plan

    def _bounds(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(umin, umax, xmin, xmax)`` as float arrays (stored as hashable tuples)."""
        return tuple(np.asarray(b, dtype=float) for b in (self.umin, self.umax, self.xmin, self.xmax))

    def _constrained_states(self) -> np.ndarray:
        return np.nonzero(np.isfinite(self.xmin) | np.isfinite(self.xmax))[0]

    def _var_blocks(self, formulation: str) -> tuple[tuple[str, int], ...]:
        """Variable blocks, each [N, width], stacked time-major in this order."""
        nc = self._constrained_states().size
        blocks = [("x", self.n)] if formulation == "sparse" else []
        blocks.append(("u", self.m))
        if self.use_l1:
            blocks.append(("tau", self.m))
        if self.use_hinge:
            blocks.append(("h", 1))
        if self.soft and nc:
            blocks.append(("s", nc))
        return tuple(blocks)

    def _row_blocks(self, formulation: str) -> tuple[tuple[str, int], ...]:
        """Constraint rows of the QP; simple bounds on a variable are not rows (see :meth:`_var_bounds`)."""
        nc = self._constrained_states().size
        blocks = [("dyn", self.n)] if formulation == "sparse" else []
        if self.use_l1:
            blocks += [("l1_pos", self.m), ("l1_neg", self.m)]
        if self.use_hinge:
            blocks.append(("h_cut", 1))
        if nc:
            if self.soft:
                blocks += [("x_hi", nc), ("x_lo", nc)]
            elif formulation == "condensed":
                blocks.append(("xbox", nc))
        return tuple(blocks)

    def _var_bounds(self, formulation: str) -> tuple[np.ndarray, np.ndarray]:
        """``lb ≤ z ≤ ub`` of the QP variables: input boxes, ``h ≥ 0``, ``s ≥ 0`` and, in the
        sparse hard-constrained form, the state boxes (solved elementwise by :func:`solve_qp`)."""
        N = self.horizon
        umin, umax, xmin, xmax = self._bounds()
        per_block = {
            "x": (xmin, xmax) if not self.soft else (np.full(self.n, -np.inf), np.full(self.n, np.inf)),
            "u": (umin, umax),
            "tau": (np.full(self.m, -np.inf), np.full(self.m, np.inf)),
            "h": (np.zeros(1), np.full(1, np.inf)),
            "s": (np.zeros(self._constrained_states().size), np.full(self._constrained_states().size, np.inf)),
        }
        blocks = self._var_blocks(formulation)
        lb = np.concatenate([np.tile(per_block[name][0], N) for name, _ in blocks])
        ub = np.concatenate([np.tile(per_block[name][1], N) for name, _ in blocks])
        return lb, ub

    def _choose_formulation(self, formulation: str) -> str:
        if self.method == "fista":
            return "condensed"
        if formulation != "auto":
            return formulation

        def cost(f):
            nz = self.horizon * sum(w for _, w in self._var_blocks(f))
            nr = self.horizon * sum(w for _, w in self._row_blocks(f))
            return nz * nz + 2 * nr * nz

        if _checks.is_concrete(self.A):
            radius = float(np.max(np.abs(np.linalg.eigvals(np.asarray(self.A)))))
            if radius > 1.0 and self.horizon * math.log(radius) > math.log(1e6):
                return "sparse"
        return "condensed" if cost("condensed") <= cost("sparse") else "sparse"

    # ------------------------------------------------------------------ prediction

    def _prediction(self):
        """``Φ`` [N, n, n], ``Γ`` [N, n, N, m], ``Γ_d`` [N, n, N, p] with ``x_{t+1} = Φ_t x0 + Γ_t U + Γd_t D``."""
        N, n = self.horizon, self.n
        powers = [jnp.eye(n, dtype=self.A.dtype)]
        for _ in range(N):
            powers.append(self.A @ powers[-1])
        pw = jnp.stack(powers)  # A^0..A^N
        lag = np.arange(N)[:, None] - np.arange(N)[None, :]  # t - k
        mask = jnp.asarray(lag >= 0, self.A.dtype)[:, :, None, None]
        blocks = pw[np.clip(lag, 0, N)]  # [N, N, n, n]: A^{t-k}
        Gam = jnp.einsum("tkij,jl->tikl", blocks * mask, self.B)
        Gam_d = jnp.einsum("tkij,jl->tikl", blocks * mask, self.E)
        return pw[1:], Gam, Gam_d

    def _stage_weights(self):
        """Block-diagonal state weight over x_1..x_N: Q for t < N, QN at N; as [N, n, n]."""
        return jnp.concatenate([jnp.broadcast_to(self.Q, (self.horizon - 1, self.n, self.n)), self.QN[None]])

    # ------------------------------------------------------------------ QP assembly

    def _qp(self, x0, d, xref):
        """``(P, q, A, l, u)`` of the QP; ``P, A`` depend only on the model (shared under vmap)."""
        f = self.formulation
        N, n, m = self.horizon, self.n, self.m
        dtype = self.A.dtype
        vb, rb = self._var_blocks(f), self._row_blocks(f)
        voff = _offsets(vb, N)
        nz = sum(N * w for _, w in vb)
        cidx = self._constrained_states()
        xmin, xmax = self._bounds()[2:]
        nc = cidx.size
        Wx = self._stage_weights()
        r = xref[1:]  # [N, n]
        I_N = jnp.eye(N, dtype=dtype)

        P = jnp.zeros((nz, nz), dtype)
        q = jnp.zeros(nz, dtype)
        su = slice(voff["u"], voff["u"] + N * m)
        R_bar = jnp.kron(I_N, self.R)
        if f == "condensed":
            Phi, Gam, Gam_d = self._prediction()
            G = Gam.reshape(N * n, N * m)
            Wbar = jax.scipy.linalg.block_diag(*Wx)
            free = (jnp.einsum("tij,j->ti", Phi, x0) + jnp.einsum("tikl,kl->ti", Gam_d, d)).reshape(N * n)
            P = P.at[su, su].set(2.0 * (G.T @ Wbar @ G + R_bar))
            q = q.at[su].set(2.0 * G.T @ (Wbar @ (free - r.reshape(N * n))))
            x_rows = G.reshape(N, n, N * m)[:, cidx, :].reshape(N * nc, N * m)  # x_{t,c} = x_rows U + offset
            x_off = free.reshape(N, n)[:, cidx].reshape(N * nc)
            x_cols = su
        else:
            sx = slice(voff["x"], voff["x"] + N * n)
            P = P.at[sx, sx].set(2.0 * jax.scipy.linalg.block_diag(*Wx))
            P = P.at[su, su].set(2.0 * R_bar)
            q = q.at[sx].set(-2.0 * jnp.einsum("tij,tj->ti", Wx, r).reshape(N * n))
            sel = np.zeros((nc, n))
            sel[np.arange(nc), cidx] = 1.0
            x_rows = jnp.kron(I_N, jnp.asarray(sel, dtype))  # soft rows only: hard boxes are bounds
            x_off = jnp.zeros(N * nc, dtype)
            x_cols = sx
        if self.use_l1:
            q = q.at[voff["tau"] : voff["tau"] + N * m].set(self.alpha)
        elif self.l1_sign is not None:  # α|u| = α·sign·u on sign-definite boxes
            q = q.at[su].add(self.alpha * jnp.tile(jnp.asarray(self.l1_sign, dtype), N))
        if self.use_hinge:
            q = q.at[voff["h"] : voff["h"] + N].set(self.beta)
        if self.soft and nc:
            q = q.at[voff["s"] : voff["s"] + N * nc].set(self.soft_penalty)

        rows, lows, ups = [], [], []

        def add(coeffs, lo, hi):
            row = jnp.zeros((lo.shape[0], nz), dtype)
            for cols, block in coeffs:
                row = row.at[:, cols].add(block)
            rows.append(row)
            lows.append(jnp.asarray(lo, dtype))
            ups.append(jnp.asarray(hi, dtype))

        def cols(name):
            w = dict(vb)[name]
            return slice(voff[name], voff[name] + N * w)

        inf = np.full(N * max(m, n, 1), np.inf)
        for name, w in rb:
            k = N * w
            if name == "dyn":  # x_{t+1} − A x_t − B u_t = A x0 (t=0) + E d_t
                shift = jnp.kron(jnp.eye(N, k=-1, dtype=dtype), self.A)
                rhs = jnp.concatenate([(self.A @ x0)[None], jnp.zeros((N - 1, n), dtype)]) + d @ self.E.T
                add([(cols("x"), jnp.eye(N * n, dtype=dtype) - shift), (su, -jnp.kron(I_N, self.B))], rhs.ravel(), rhs.ravel())
            elif name in ("l1_pos", "l1_neg"):
                sign = -1.0 if name == "l1_pos" else 1.0  # tau - u >= 0, tau + u >= 0
                add([(cols("tau"), jnp.eye(k, dtype=dtype)), (su, sign * jnp.eye(k, dtype=dtype))], np.zeros(k), inf[:k])
            elif name == "h_cut":  # h - c'u_t >= -rho
                add([(cols("h"), jnp.eye(N, dtype=dtype)), (su, -jnp.kron(I_N, self.c[None, :]))], -self.rho * jnp.ones(N, dtype), inf[:N])
            elif name == "xbox":
                add([(x_cols, x_rows)], np.tile(xmin[cidx], N) - x_off, np.tile(xmax[cidx], N) - x_off)
            elif name == "x_hi":  # x - s <= xmax
                add([(x_cols, x_rows), (cols("s"), -jnp.eye(k, dtype=dtype))], -inf[:k], np.tile(xmax[cidx], N) - x_off)
            elif name == "x_lo":  # x + s >= xmin
                add([(x_cols, x_rows), (cols("s"), jnp.eye(k, dtype=dtype))], np.tile(xmin[cidx], N) - x_off, inf[:k])
        if rows:
            Aqp, l, u = jnp.concatenate(rows), jnp.concatenate(lows), jnp.concatenate(ups)
        else:
            Aqp, l, u = jnp.zeros((0, nz), dtype), jnp.zeros(0, dtype), jnp.zeros(0, dtype)
        return P, q, Aqp, l, u

    def refresh_terminal_cost(self) -> "LinearMPC":
        """With ``QN=None`` at construction: this controller with ``QN`` the LQR cost-to-go of its
        current ``(A, B, Q, R)`` (after they were changed, e.g. by tuning; differentiable through
        the doubling Riccati solver); with an explicit ``QN``: ``self``."""
        if not self.terminal_lqr:
            return self
        return eqx.tree_at(lambda mpc: mpc.QN, self, solve_discrete_are(self.A, self.B, self.Q, self.R))

    # ------------------------------------------------------------------ solve

    def solve(
        self,
        x0: Float[Array, " n"],
        d: Float[Array, "N p"] | None = None,
        warm_start: MPCSolution | None = None,
        xref: Float[Array, "N+1 n"] | Float[Array, " n"] | None = None,
        *,
        throw: bool = False,
    ) -> MPCSolution:
        """Optimal input sequence from state ``x0`` [n] with forecast ``d`` [N, p] (zero if None).

        ``warm_start``: a previous solution, usually ``mpc.shift(previous)``.
        ``xref`` overrides the stored reference for this call ([n] or [N+1, n]).
        jit/vmap/grad-able; failures are reported in ``status`` (``throw=True``: raised instead).
        """
        N, n = self.horizon, self.n
        dtype = self.A.dtype
        x0 = _checks.as_array("x0", x0, (n,)).astype(dtype)
        p = self.E.shape[1]
        d = jnp.zeros((N, p), dtype) if d is None else _checks.as_array("d", d, (N, p)).astype(dtype)
        ref = self.xref if xref is None else _reference(xref, N, n).astype(dtype)
        sol = _solve_jit(self, x0, d, ref, warm_start)
        return throw_if_failed(sol, sol.status) if throw else sol

    def _solve(self, x0, d, ref, warm_start) -> MPCSolution:
        N = self.horizon
        if isinstance(self.solver, FISTA):
            return self._solve_fista(x0, d, ref, warm_start)
        P, q, Aqp, l, u = self._qp(x0, d, ref)
        lb, ub = (jnp.asarray(b, x0.dtype) for b in self._var_bounds(self.formulation))
        nr = Aqp.shape[0]
        ws = None if warm_start is None else WarmStart(x=warm_start.z, y=warm_start.y[:nr], y_bound=warm_start.y[nr:])
        sol = solve(self.solver, QPProblem(P, q, Aqp, l, u, lb, ub), ws)
        voff = _offsets(self._var_blocks(self.formulation), N)
        U = sol.x[voff["u"] : voff["u"] + N * self.m].reshape(N, self.m)
        y = jnp.concatenate([sol.y, sol.y_bound])
        return self._finish(x0, d, ref, U, sol.status, sol.iterations, sol.x, y)

    def _condensed(self, x0, d, ref):
        """Condensed cost ``UᵀHU + gᵀU + const`` of the ℓ2 terms: ``H`` [N·m, N·m], ``g`` [N·m]."""
        N, n, m = self.horizon, self.n, self.m
        Phi, Gam, Gam_d = self._prediction()
        G = Gam.reshape(N * n, N * m)
        Wbar = jax.scipy.linalg.block_diag(*self._stage_weights())
        H = G.T @ Wbar @ G + jnp.kron(jnp.eye(N, dtype=x0.dtype), self.R)
        free = (jnp.einsum("tij,j->ti", Phi, x0) + jnp.einsum("tikl,kl->ti", Gam_d, d)).reshape(N * n)
        return H, 2.0 * G.T @ (Wbar @ (free - ref[1:].reshape(N * n)))

    def _prox(self, V, t):
        """``prox_{t(α‖·‖₁ + β·hinge + box)}`` of the stacked inputs ``V`` [N·m], stage by stage."""
        N, m = self.horizon, self.m
        lo, hi = (jnp.asarray(b, V.dtype) for b in self._bounds()[:2])
        V = V.reshape(N, m)
        if self.use_hinge:
            out = jax.vmap(lambda v: prox_l1_box_hinge(v, t, self.alpha, lo, hi, self.beta, self.c, self.rho))(V)
        else:
            out = prox_l1_box(V, t, self.alpha, lo, hi)
        return out.reshape(N * m)

    def _solve_fista(self, x0, d, ref, warm_start) -> MPCSolution:
        N, m = self.horizon, self.m
        solver = self.solver
        unrolled = solver.differentiation == "unrolled"
        inputs = (self, x0, d, ref) if unrolled else jax.lax.stop_gradient((self, x0, d, ref))
        H, g = inputs[0]._condensed(*inputs[1:])
        start = jax.random.normal(jax.random.PRNGKey(0), (N * m,), x0.dtype)
        step = jax.lax.stop_gradient(1.0 / (2.0 * power_iteration(lambda v: H @ v, start)))
        U0 = jnp.zeros(N * m, x0.dtype) if warm_start is None else warm_start.z
        sol = fista(
            lambda U: 2.0 * H @ U + g, inputs[0]._prox, U0, 1.0 / step,
            max_iter=solver.max_iter, tol=solver.tolerance, restart=solver.restart, unrolled=unrolled,
        )  # fmt: skip
        U = sol.x if unrolled else attach_fixed_point_gradient(_prox_gradient_step, sol.x, (self, x0, d, ref, step))
        return self._finish(x0, d, ref, U.reshape(N, m), sol.status, sol.iterations, U, jnp.zeros(0, x0.dtype))

    def _finish(self, x0, d, ref, U, status, iterations, z, y) -> MPCSolution:
        X = self.simulate(x0, U, d)
        return MPCSolution(u=U, x=X, status=status, iterations=iterations, objective=self.objective(X, U, ref), z=z, y=y)

    # ------------------------------------------------------------------ helpers

    def simulate(self, x0: Float[Array, " n"], u: Float[Array, "N m"], d: Float[Array, "N p"]) -> Float[Array, "N+1 n"]:
        """States ``x_0..x_N`` of ``x⁺ = Ax + Bu + Ed`` (``lax.scan``)."""

        def step(x, ud):
            xn = self.A @ x + self.B @ ud[0] + self.E @ ud[1]
            return xn, xn

        _, xs = jax.lax.scan(step, x0, (u, d))
        return jnp.concatenate([x0[None], xs])

    def objective(self, x: Float[Array, "N+1 n"], u: Float[Array, "N m"], xref: Float[Array, "N+1 n"] | None = None) -> Float[Array, ""]:
        """``J`` of the module docstring for a trajectory (soft-constraint penalty included when soft)."""
        ref = self.xref if xref is None else _reference(xref, self.horizon, self.n)
        e = x - ref
        stage = jnp.einsum("ti,ij,tj->", e[:-1], self.Q, e[:-1]) + jnp.einsum("ti,ij,tj->", u, self.R, u)
        cost = stage + e[-1] @ self.QN @ e[-1]
        cost = cost + self.alpha * jnp.sum(jnp.abs(u)) + self.beta * jnp.sum(jnp.maximum(0.0, u @ self.c - self.rho))
        if self.soft:
            xs = x[1:]
            lo, hi = (jnp.asarray(b, x.dtype) for b in self._bounds()[2:])
            viol = jnp.maximum(0.0, jnp.maximum(jnp.where(jnp.isfinite(hi), xs - hi, 0.0), jnp.where(jnp.isfinite(lo), lo - xs, 0.0)))
            cost = cost + self.soft_penalty * jnp.sum(viol)
        return cost

    def shift(self, solution: MPCSolution) -> MPCSolution:
        """Warm start for the next step: every time-indexed block moved one step ahead, last step repeated."""
        vb = self._var_blocks(self.formulation)
        rb = () if isinstance(self.solver, FISTA) else self._row_blocks(self.formulation) + vb  # rows, then bounds
        N = self.horizon
        roll = lambda a: jnp.concatenate([a[1:], a[-1:]])  # noqa: E731
        return MPCSolution(
            u=roll(solution.u),
            x=roll(solution.x),
            status=solution.status,
            iterations=solution.iterations,
            objective=solution.objective,
            z=_shift_blocks(solution.z, vb, N),
            y=_shift_blocks(solution.y, rb, N),
        )


@eqx.filter_jit
def _solve_jit(mpc: LinearMPC, x0, d, ref, warm_start) -> MPCSolution:
    return mpc._solve(x0, d, ref, warm_start)


def _prox_gradient_step(U, params):
    """One proximal-gradient step of the FISTA MPC problem, ``U ↦ prox_{tg}(U − t∇f(U))``: its
    fixed point is the optimum, and its implicit derivative the solution's gradient."""
    mpc, x0, d, ref, step = params
    H, g = mpc._condensed(x0, d, ref)
    return mpc._prox(U - step * (2.0 * H @ U + g), step)


def controller_solver(solver: AbstractQPSolver | None, method: str | None, options: dict) -> AbstractQPSolver:
    """The QP solver of a controller: ``solver`` as given, or ``make_solver(method or "admm", **options)``.
    Raises ValueError when both, or options next to a solver object, are given."""
    if solver is not None:
        if not isinstance(solver, AbstractQPSolver):
            raise ValueError(f"solver: expected a jtwin.qp solver object (ADMM(), InteriorPoint(), FISTA()), got {solver!r}")
        given = sorted(k for k, v in options.items() if v is not None) + (["method"] if method is not None else [])
        if given:
            raise ValueError(f"{', '.join(given)}: set options on the solver object, not next to solver=")
        return solver
    return make_solver("admm" if method is None else method, **options)


def _offsets(blocks, N) -> dict[str, int]:
    out, pos = {}, 0
    for name, w in blocks:
        out[name] = pos
        pos += N * w
    return out


def _shift_blocks(vec, blocks, N):
    parts, pos = [], 0
    for _, w in blocks:
        blk = vec[pos : pos + N * w].reshape(N, w)
        parts.append(jnp.concatenate([blk[1:], blk[-1:]]).ravel())
        pos += N * w
    return jnp.concatenate(parts) if parts else vec


def _reference(xref, N, n):
    ref = jnp.asarray(xref)
    if ref.shape == (n,):
        return jnp.broadcast_to(ref, (N + 1, n))
    return _checks.as_array("xref", ref, (N + 1, n))


def _nonneg(name, value, dtype):
    arr = jnp.asarray(value, dtype)
    if arr.shape != () or (_checks.is_concrete(arr) and not bool(arr >= 0)):
        raise ValueError(f"{name}: expected a non-negative scalar, got {value!r}")
    return arr

