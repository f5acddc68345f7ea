"""MPC under uncertainty: polytopic nominal MPC, tube MPC, chance-constrained MPC, multi-model MPC.

**Nominal problem** (:class:`PolytopicMPC`; the QP is built here because
:class:`~jtwin.control.LinearMPC` handles boxes only)::

    min_v  Σ_{t<N} ℓ(z_t − r, v_t) + V_f(z_N − r)
    s.t.   z_{t+1} = A z_t + B v_t,  z_0 given,
           H_x z^{(i)}_t ≤ h_x − b^x_t   (t = 1..N, every model i),
           H_u v_t ≤ h_u − b^u_t          (t = 0..N−1),
           H_f z^{(i)}_N ≤ h_f,

with ``ℓ(x, u) = xᵀQx + uᵀRu + α‖u‖₁ + β·max{0, cᵀu − ρ}``, ``V_f`` a
:class:`~jtwin.control.terminal.TerminalCost` (``xᵀPx + μ·max_i L_i x``),
back-offs ``b`` supplied per call (runtime data, so ``jax.vmap`` over states
and back-offs shares one KKT factorisation), and ``z^{(i)}_t`` the prediction
under model ``(A_i, B_i)`` (``models``; default the nominal one).  Condensed QP
on ``v`` with epigraph slacks for ℓ1, the hinge and the gauge, solved by
:func:`jtwin.qp.solve_qp`.

**Tube MPC** (:class:`TubeMPC`; Mayne & Langson 2001, Rawlings–Mayne–Diehl §3.5)
for ``x⁺ = Ax + Bu + w``, ``w ∈ W``: the controller carries a nominal state ``z``
and applies ``u = v + K(x − z)``; the error ``e = x − z`` obeys
``e⁺ = Φe + w`` (``Φ = A + BK``), so ``e`` lies in ``F_j = ⊕_{i<j}Φ^iW`` at
``j`` steps since ``z`` was last set equal to ``x`` (``F_j ⊆ F_∞ ⊆ S``, the
mRPI outer bound).  The nominal problem tightens the constraints by the
support functions ``b^x_t = h_{F_{j+t}}(H_x)``, ``b^u_t = h_{F_{j+t}}(H_uK)``
(``S`` in place of ``F`` beyond a table length), and ``X_f`` is the maximal
admissible set of ``z⁺ = Φz`` in ``(X ⊖ S) ∩ {z : Kz ∈ U ⊖ KS}``.  Guarantees:
the shifted plan is feasible at the next step (recursive feasibility), the real
``x`` and ``u`` satisfy the constraints for every disturbance in ``W``, ``z → 0``
by the terminal decrease condition, so ``x`` converges to ``S``.  With
``reset=True`` the controller also tries ``z = x`` (age 0) each step and keeps
it when feasible and not costlier — feedback from the measured state without
losing the guarantees.

**Chance-constrained MPC** (:class:`ChanceMPC`): with ``x_0 ~ N(x̂, Σ_0)`` (the
estimator's belief) and Gaussian ``w``, ``e`` is Gaussian with covariance
``Σ_t`` propagated by ``Φ``; back-offs ``Φ⁻¹(1 − ε)√(HΣ_tHᵀ)`` make each row hold
with probability ``≥ 1 − ε`` (``joint=True``: Bonferroni ``ε/r`` per row, all
rows of a step jointly).

**Multi-model (epistemic) MPC**: :class:`PolytopicMPC` with ``models`` = the
vertex (or scenario) models ``(A_i, B_i)`` of a confidence set ``Θ_δ``: every
constraint holds for each of them.  Exact for the whole set when the prediction
is affine in θ (e.g. uncertain ``B`` with known ``A``); a scenario approximation
otherwise.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from .. import _checks
from ..qp import RESULTS, AbstractQPSolver, QPProblem, WarmStart, is_successful, solve
from ..uncertainty.chance import gaussian_backoff, propagate_covariance
from ..uncertainty.sets import MRPIOuter, Polytope, mrpi_outer, reachable_support
from .lqr import lqr
from .base import AbstractController, ControlInfo, info_of
from .mpc import MPCSolution, controller_solver
from .terminal import TerminalCost, maximal_admissible_set, terminal_cost


def _prediction(A, B, N: int):
    """``Φ`` [N, n, n] = A¹..A^N and ``Γ`` [N, n, N·m] with ``z_{t+1} = Φ_t z_0 + Γ_t v``."""
    n, m = B.shape
    powers, gammas = [], []
    Pw, G = jnp.eye(n, dtype=A.dtype), jnp.zeros((n, N * m), A.dtype)
    for t in range(N):
        Pw = A @ Pw
        G = (A @ G).at[:, t * m : (t + 1) * m].add(B)
        powers.append(Pw)
        gammas.append(G)
    return jnp.stack(powers), jnp.stack(gammas)


def _polytope_rows(name, P: Polytope | None, dim: int):
    if P is None:
        return jnp.zeros((0, dim)), jnp.zeros(0)
    if not isinstance(P, Polytope) or P.dim != dim:
        raise ValueError(f"{name}: expected a jtwin.uncertainty.Polytope of dimension {dim}")
    return jnp.asarray(P.H), jnp.asarray(P.h)


def _shift_blocks(vec, blocks):
    """Roll time-indexed blocks ``(steps, width, timed)`` one step ahead (last repeated); keep the others."""
    parts, pos = [], 0
    for steps, width, timed in blocks:
        blk = vec[pos : pos + steps * width].reshape(steps, width)
        parts.append((jnp.concatenate([blk[1:], blk[-1:]]) if timed else blk).ravel())
        pos += steps * width
    return jnp.concatenate(parts)


def _bounding_box(U: Polytope | None, m: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(lo, hi)`` of the smallest box containing ``U`` (``±inf`` where ``U`` is unbounded or None)."""
    lo, hi = np.full(m, -np.inf), np.full(m, np.inf)
    for j in range(m if U is not None else 0):
        e = np.eye(m)[j]
        for sign, out in ((1.0, hi), (-1.0, lo)):
            try:
                out[j] = sign * float(U.support(sign * e))
            except ValueError:  # unbounded in this direction
                pass
    return tuple(map(float, lo)), tuple(map(float, hi))


class PolytopicMPC(AbstractController):
    """Nominal MPC with polytopic constraints, per-call back-offs and several constraint models.

    ``X``, ``U``, ``terminal_set``: :class:`~jtwin.uncertainty.Polytope` (or None);
    ``terminal_cost``: a :class:`~jtwin.control.terminal.TerminalCost` (default
    the LQR cost-to-go); ``models``: a pair ``(As [M, n, n], Bs [M, n, m])`` of
    models under which the constraints must hold (default: ``(A, B)`` only);
    ``xref`` [n] a constant reference.  ``solver``: a :mod:`jtwin.qp` solver object, or ``method`` and its
    options as keywords (as for :class:`~jtwin.control.LinearMPC`); default ``ADMM(eps_abs=1e-5,
    eps_rel=1e-5, max_iter=10000, polish=True)``.

    As a :class:`~jtwin.control.AbstractController`: the state is the last plan; ``step`` solves
    from the belief's mean (cold, without back-offs), ``fallback`` follows the shifted plan, and
    ``input_bounds`` is the bounding box of ``U``.
    """

    A: Float[Array, "n n"]
    B: Float[Array, "n m"]
    As: Float[Array, "M n n"]
    Bs: Float[Array, "M n m"]
    Q: Float[Array, "n n"]
    R: Float[Array, "m m"]
    terminal: TerminalCost
    Hx: Float[Array, "rx n"]
    hx: Float[Array, " rx"]
    Hu: Float[Array, "ru m"]
    hu: Float[Array, " ru"]
    Hf: Float[Array, "rf n"]
    hf: Float[Array, " rf"]
    xref: Float[Array, " n"]
    alpha: Float[Array, ""]
    beta: Float[Array, ""]
    c: Float[Array, " m"]
    rho: Float[Array, ""]
    horizon: int = eqx.field(static=True)
    use_l1: bool = eqx.field(static=True)
    use_hinge: bool = eqx.field(static=True)
    solver: AbstractQPSolver
    u_box: tuple[tuple[float, ...], tuple[float, ...]] = eqx.field(static=True)

    def __init__(
        self, A, B, horizon: int, Q, R, X=None, U=None, terminal_cost=None, terminal_set=None, models=None,
        xref=None, alpha=0.0, beta=0.0, c=None, rho=0.0, *,
        solver: AbstractQPSolver | None = None, method: str | None = None, **solver_options,
    ):  # fmt: skip
        if not (isinstance(horizon, int) and horizon >= 1):
            raise ValueError(f"horizon: expected a positive int, got {horizon!r}")
        self.A = _checks.as_array("A", A, (None, None))
        n = self.A.shape[0]
        self.A = _checks.as_array("A", A, (n, n))
        self.B = _checks.as_array("B", B, (n, None))
        m = self.B.shape[1]
        if models is None:
            self.As, self.Bs = self.A[None], self.B[None]
        else:
            self.As = _checks.as_array("models[0]", models[0], (None, n, n))
            self.Bs = _checks.as_array("models[1]", models[1], (self.As.shape[0], n, m))
        self.Q = _checks.as_array("Q", Q, (n, n))
        self.R = _checks.as_array("R", R, (m, m))
        if terminal_cost is None:
            terminal_cost = TerminalCost(lqr(self.A, self.B, self.Q, self.R)[1], jnp.zeros((0, n)), jnp.asarray(0.0))
        if not isinstance(terminal_cost, TerminalCost) or terminal_cost.P.shape != (n, n):
            raise ValueError(f"terminal_cost: expected a TerminalCost with P of shape ({n}, {n})")
        self.terminal = terminal_cost
        self.Hx, self.hx = _polytope_rows("X", X, n)
        self.Hu, self.hu = _polytope_rows("U", U, m)
        self.u_box = _bounding_box(U, m)
        self.Hf, self.hf = _polytope_rows("terminal_set", terminal_set, n)
        self.xref = jnp.zeros(n) if xref is None else _checks.as_array("xref", xref, (n,))
        for name, value in (("alpha", alpha), ("beta", beta)):
            if not (np.ndim(value) == 0 and value >= 0):
                raise ValueError(f"{name}: expected a non-negative scalar, got {value!r}")
        self.alpha, self.beta, self.rho = jnp.asarray(alpha, float), jnp.asarray(beta, float), jnp.asarray(rho, float)
        self.c = jnp.ones(m) if c is None else _checks.as_array("c", c, (m,))
        self.use_l1, self.use_hinge = float(alpha) > 0, float(beta) > 0
        self.horizon = horizon
        if solver is None and method in (None, "admm"):
            solver_options = {"eps_abs": 1e-5, "eps_rel": 1e-5, "max_iter": 10000, "polish": True} | solver_options
        self.solver = controller_solver(solver, method, solver_options)

    @property
    def n(self) -> int:
        return self.A.shape[0]

    @property
    def m(self) -> int:
        return self.B.shape[1]

    @property
    def disturbance_dim(self) -> int:
        return 0

    def input_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """The bounding box ``(lo, hi)`` [m] of ``U`` (``±inf`` without ``U``)."""
        return tuple(np.asarray(b) for b in self.u_box)

    def init(self, mean: Float[Array, " n"], cov=None, d=None) -> MPCSolution:
        """The plan from the initial belief's mean."""
        return self.solve(mean)

    def step(self, state: MPCSolution, mean: Float[Array, " n"], cov=None, d=None) -> tuple[Float[Array, " m"], MPCSolution, ControlInfo]:
        """``(plan.u[0], plan, info)`` with ``plan = solve(mean)``."""
        plan = self.solve(mean)
        return plan.u[0], plan, info_of(plan)

    def fallback(self, state: MPCSolution, mean=None, cov=None, d=None) -> tuple[Float[Array, " m"], MPCSolution]:
        """The shifted plan's first input and the shifted plan."""
        plan = self.shift(state)
        return plan.u[0], plan

    def _var_blocks(self):
        N, m = self.horizon, self.m
        blocks = [("u", N, m, True)]
        if self.use_l1:
            blocks.append(("tau", N, m, True))
        if self.use_hinge:
            blocks.append(("h", N, 1, True))
        if self.terminal.L.shape[0]:
            blocks.append(("s", 1, 1, False))
        return blocks

    def _row_blocks(self):
        N, m, M = self.horizon, self.m, self.As.shape[0]
        blocks = [("x", N, M * self.Hx.shape[0], True), ("u", N, self.Hu.shape[0], True), ("f", 1, M * self.Hf.shape[0], False)]
        if self.use_l1:
            blocks += [("l1p", N, m, True), ("l1n", N, m, True)]
        if self.use_hinge:
            blocks += [("hp", N, 1, True), ("hc", N, 1, True)]
        if self.terminal.L.shape[0]:
            blocks.append(("g", 1, self.terminal.L.shape[0], False))
        return blocks

    def _qp(self, x0, bx, bu):
        N, n, m = self.horizon, self.n, self.m
        dtype = x0.dtype
        vb = self._var_blocks()
        offs, pos = {}, 0
        for name, steps, width, _ in vb:
            offs[name] = slice(pos, pos + steps * width)
            pos += steps * width
        nz = pos
        Phi0, G0 = _prediction(self.A, self.B, N)
        Phis, Gs = jax.vmap(lambda A, B: _prediction(A, B, N))(self.As, self.Bs)
        W = jax.scipy.linalg.block_diag(*([self.Q] * (N - 1) + [self.terminal.P]))
        G = G0.reshape(N * n, N * m)
        free = jnp.einsum("tij,j->ti", Phi0, x0).reshape(N * n) - jnp.tile(self.xref, N)
        Pqp = jnp.zeros((nz, nz), dtype).at[offs["u"], offs["u"]].set(2.0 * (G.T @ W @ G + jnp.kron(jnp.eye(N), self.R)))
        q = jnp.zeros(nz, dtype).at[offs["u"]].set(2.0 * G.T @ W @ free)
        rows, lows, ups = [], [], []

        def add(coeffs, lo, hi):
            row = jnp.zeros((lo.shape[0], nz), dtype)
            for name, block in coeffs:
                row = row.at[:, offs[name]].add(block)
            rows.append(row)
            lows.append(lo)
            ups.append(hi)

        inf = lambda k: jnp.full(k, jnp.inf, dtype)  # noqa: E731
        rx = self.Hx.shape[0]
        if rx:
            coef = jnp.einsum("rn,itnk->tirk", self.Hx, Gs).reshape(-1, N * m)
            rhs = self.hx - bx[:, None, :] - jnp.einsum("rn,itnj,j->tir", self.Hx, Phis, x0)
            add([("u", coef)], -inf(coef.shape[0]), rhs.ravel())
        if self.Hu.shape[0]:
            add([("u", jnp.kron(jnp.eye(N), self.Hu))], -inf(N * self.Hu.shape[0]), (self.hu - bu).ravel())
        if self.Hf.shape[0]:
            coef = jnp.einsum("rn,ink->irk", self.Hf, Gs[:, -1]).reshape(-1, N * m)
            rhs = self.hf - jnp.einsum("rn,inj,j->ir", self.Hf, Phis[:, -1], x0)
            add([("u", coef)], -inf(coef.shape[0]), rhs.ravel())
        if self.use_l1:
            eye = jnp.eye(N * m, dtype=dtype)
            q = q.at[offs["tau"]].set(self.alpha)
            add([("tau", eye), ("u", -eye)], jnp.zeros(N * m, dtype), inf(N * m))
            add([("tau", eye), ("u", eye)], jnp.zeros(N * m, dtype), inf(N * m))
        if self.use_hinge:
            eye = jnp.eye(N, dtype=dtype)
            q = q.at[offs["h"]].set(self.beta)
            add([("h", eye)], jnp.zeros(N, dtype), inf(N))
            add([("h", eye), ("u", -jnp.kron(eye, self.c[None]))], -self.rho * jnp.ones(N, dtype), inf(N))
        L = self.terminal.L
        if L.shape[0]:
            q = q.at[offs["s"]].set(self.terminal.mu)
            rhs = L @ (Phi0[-1] @ x0 - self.xref)
            add([("s", jnp.ones((L.shape[0], 1), dtype)), ("u", -L @ G0[-1])], rhs, inf(L.shape[0]))
        return Pqp, q, jnp.concatenate(rows), jnp.concatenate(lows), jnp.concatenate(ups)

    def solve(
        self,
        x0: Float[Array, " n"],
        state_backoff: Float[Array, "N rx"] | None = None,
        input_backoff: Float[Array, "N ru"] | None = None,
        warm_start: MPCSolution | None = None,
    ) -> MPCSolution:
        """Nominal plan from ``x0`` [n]; back-offs [N, rx] (rows ``t = 1..N``) and [N, ru] (``t = 0..N−1``).

        Returns :class:`~jtwin.control.MPCSolution` (``u`` [N, m], ``x`` [N+1, n]
        the nominal trajectory, ``status``, ``objective`` = J, raw ``z, y`` for warm
        starts).  jit/vmap-able; infeasibility is reported in ``status``.
        """
        N = self.horizon
        x0 = _checks.as_array("x0", x0, (self.n,))
        bx = jnp.zeros((N, self.Hx.shape[0])) if state_backoff is None else _checks.as_array("state_backoff", state_backoff, (N, self.Hx.shape[0]))
        bu = jnp.zeros((N, self.Hu.shape[0])) if input_backoff is None else _checks.as_array("input_backoff", input_backoff, (N, self.Hu.shape[0]))
        return _solve_jit(self, x0, bx, bu, warm_start)

    def _solve(self, x0, bx, bu, warm_start) -> MPCSolution:
        P, q, A, lo, up = self._qp(x0, bx, bu)
        ws = None if warm_start is None else WarmStart(x=warm_start.z, y=warm_start.y, y_bound=jnp.zeros_like(warm_start.z))
        sol = solve(self.solver, QPProblem(P, q, A, lo, up), ws)
        N, m = self.horizon, self.m
        U = sol.x[: N * m].reshape(N, m)
        X = self.simulate(x0, U)
        return MPCSolution(u=U, x=X, status=sol.status, iterations=sol.iterations, objective=self.objective(X, U), z=sol.x, y=sol.y)

    def simulate(self, x0: Float[Array, " n"], u: Float[Array, "N m"]) -> Float[Array, "N+1 n"]:
        """Nominal states ``z_0..z_N`` of ``z⁺ = Az + Bv``."""

        def step(z, v):
            zn = self.A @ z + self.B @ v
            return zn, zn

        _, zs = jax.lax.scan(step, x0, u)
        return jnp.concatenate([x0[None], zs])

    def objective(self, x: Float[Array, "N+1 n"], u: Float[Array, "N m"]) -> Float[Array, ""]:
        """``J = Σ_{t<N} ℓ(z_t − r, v_t) + V_f(z_N − r)``."""
        e = x - self.xref
        stage = jnp.einsum("ti,ij,tj->", e[:-1], self.Q, e[:-1]) + jnp.einsum("ti,ij,tj->", u, self.R, u)
        stage = stage + self.alpha * jnp.sum(jnp.abs(u)) + self.beta * jnp.sum(jnp.maximum(0.0, u @ self.c - self.rho))
        return stage + self.terminal(e[-1])

    def shift(self, solution: MPCSolution) -> MPCSolution:
        """Warm start for the next step: time-indexed blocks of ``z``, ``y`` moved one step ahead."""
        roll = lambda a: jnp.concatenate([a[1:], a[-1:]])  # noqa: E731
        return MPCSolution(
            u=roll(solution.u), x=roll(solution.x), status=solution.status, iterations=solution.iterations,
            objective=solution.objective,
            z=_shift_blocks(solution.z, [b[1:] for b in self._var_blocks()]),
            y=_shift_blocks(solution.y, [b[1:] for b in self._row_blocks()]),
        )  # fmt: skip


@eqx.filter_jit
def _solve_jit(mpc: PolytopicMPC, x0, bx, bu, warm_start) -> MPCSolution:
    return mpc._solve(x0, bx, bu, warm_start)


# ---------------------------------------------------------------------------------------- tube MPC


class _OnNominal(AbstractController):
    """A controller built around a :class:`PolytopicMPC` ``nominal``: its dimensions, horizon and input box
    (the bounding box of ``U``); no disturbance forecast.  Subclasses have a field ``nominal``."""

    @property
    def n(self) -> int:
        return self.nominal.n

    @property
    def m(self) -> int:
        return self.nominal.m

    @property
    def horizon(self) -> int:
        return self.nominal.horizon

    @property
    def disturbance_dim(self) -> int:
        return 0

    def input_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """The bounding box of ``U``."""
        return self.nominal.input_bounds()


@dataclasses.dataclass(frozen=True, eq=False)
class TubeSets:
    """Host-side sets of a :class:`TubeMPC`: constraints ``X, U``, disturbances ``W``, the mRPI bound ``S``,
    the tightened constraint polytope ``Y`` (in the nominal state, inputs through ``Kz``) and ``X_f``."""

    X: Polytope
    U: Polytope
    W: Polytope
    S: MRPIOuter
    Y: Polytope
    X_f: Polytope


class TubeState(eqx.Module):
    """Controller state: nominal ``z`` [n], ``age`` (steps since ``z`` was last set to the measured x; −1
    before the first step, which sets ``z = x``) and ``plan``, the last nominal solution (it starts one
    step before ``z``; :meth:`TubeMPC.fallback` follows it).

    The nominal QP is solved cold each step: near the origin the shifted warm start
    made ADMM's adaptive ρ diverge (status ``max_iterations_reached``), and cold solves there take
    a few dozen iterations.
    """

    z: Float[Array, " n"]
    age: Int[Array, ""]
    plan: MPCSolution


class TubeRollout(eqx.Module):
    """Closed-loop tube-MPC rollouts: ``x`` [S, T+1, n], ``u`` [S, T, m], nominal ``z`` [S, T+1, n], ``status`` [S, T]."""

    x: Float[Array, "S T+1 n"]
    u: Float[Array, "S T m"]
    z: Float[Array, "S T+1 n"]
    status: RESULTS


class TubeMPC(_OnNominal):
    """Tube MPC for ``x⁺ = Ax + Bu + w``, ``w ∈ W`` (module docstring).

    ``X`` [n], ``U`` [m], ``W`` [n]: polytopes; ``K`` [m, n] the ancillary gain in
    ``u = v + K(x − z)`` (default ``−K_lqr``); ``alpha, beta, c, rho`` the ℓ1 and hinge
    weights of the stage cost.  ``tighten=False`` builds the same controller without
    tightening (``W`` ignored) — the non-robust baseline.  ``mrpi_eps`` is the accuracy of
    the mRPI outer bound; ``reset`` enables the measured-state candidate ``z = x``.

    As a :class:`~jtwin.control.AbstractController` it acts on the belief's mean as its ``x``
    (the guarantee then needs ``W`` to cover the estimate's one-step changes, see
    :func:`jtwin.control.output_feedback_tube_sets`); its ``fallback`` follows the
    shifted nominal plan completed by ``v_N = Kz_N`` — the candidate of the recursive
    feasibility proof, so the fallback keeps the guarantees.
    """

    nominal: PolytopicMPC
    K: Float[Array, "m n"]
    state_table: Float[Array, "J rx"]
    input_table: Float[Array, "J ru"]
    sets: TubeSets = eqx.field(static=True)
    reset: bool = eqx.field(static=True)

    def __init__(
        self, A, B, horizon: int, Q, R, X: Polytope, U: Polytope, W: Polytope, K=None,
        alpha=0.0, beta=0.0, c=None, rho=0.0, *, tighten: bool = True, reset: bool = False,
        mrpi_eps: float = 1e-3, **solver_options,
    ):  # fmt: skip
        A_, B_ = np.asarray(A, float), np.asarray(B, float)
        n, m = B_.shape
        for name, P, d in (("X", X, n), ("U", U, m), ("W", W, n)):
            if not isinstance(P, Polytope) or P.dim != d:
                raise ValueError(f"{name}: expected a jtwin.uncertainty.Polytope of dimension {d}")
        K_ = -np.asarray(lqr(A_, B_, Q, R)[0]) if K is None else np.asarray(_checks.as_array("K", K, (m, n)))
        Phi = A_ + B_ @ K_
        S = mrpi_outer(Phi, W, mrpi_eps)
        dirs_x, dirs_u = X.H, U.H @ K_
        length = max(S.s, horizon) + 1
        if tighten:
            tx = reachable_support(Phi, W, dirs_x, length - 1)
            tu = reachable_support(Phi, W, dirs_u, length - 1)
            tx, tu = np.vstack([tx, S.support(dirs_x)]), np.vstack([tu, S.support(dirs_u)])
        else:
            tx, tu = np.zeros((length + 1, dirs_x.shape[0])), np.zeros((length + 1, dirs_u.shape[0]))
        Y = Polytope(np.vstack([X.H, dirs_u]), np.concatenate([X.h - tx[-1], U.h - tu[-1]]))
        X_f = maximal_admissible_set(Phi, Y)
        Vf = terminal_cost(A_, B_, K_, np.asarray(Q, float), np.asarray(R, float), alpha, beta, c, rho)
        self.nominal = PolytopicMPC(A, B, horizon, Q, R, X, U, Vf, X_f, None, None, alpha, beta, c, rho, **solver_options)
        self.K = jnp.asarray(K_)
        self.state_table, self.input_table = jnp.asarray(tx), jnp.asarray(tu)
        self.sets = TubeSets(X, U, W, S, Y, X_f)
        self.reset = bool(reset)

    def backoffs(self, age: Int[Array, ""]) -> tuple[Float[Array, "N rx"], Float[Array, "N ru"]]:
        """Tightening at ``age``: state rows ``h_{F_{age+t}}(H_x)``, t = 1..N; input rows ``h_{F_{age+t}}(H_uK)``, t = 0..N−1."""
        N, last = self.nominal.horizon, self.state_table.shape[0] - 1
        t = jnp.arange(N)
        return self.state_table[jnp.minimum(age + t + 1, last)], self.input_table[jnp.minimum(age + t, last)]

    def init(self, x0: Float[Array, " n"], cov=None, d=None) -> TubeState:
        """Initial controller state: ``z = x0``, age −1 (the first step restarts the tube at its ``x``: a twin's
        first estimate is not its prior mean), and the nominal plan from ``x0``."""
        x0 = _checks.as_array("x0", x0, (self.nominal.n,))
        plan = self.nominal.solve(x0, *self.backoffs(jnp.zeros((), jnp.int32)))
        return TubeState(z=x0, age=jnp.full((), -1, jnp.int32), plan=plan)

    def _plan(self, state: TubeState, x):
        """Nominal solution and its initial state/age (the carried ``z`` or, with ``reset``, possibly ``x``)."""
        fresh = state.age < 0  # the first step: the tube starts at x
        state = TubeState(z=jnp.where(fresh, x, state.z), age=jnp.maximum(state.age, 0), plan=state.plan)
        if not self.reset:
            return self.nominal._solve(state.z, *self.backoffs(state.age), None), state.z, state.age
        z0s, ages = jnp.stack([state.z, x]), jnp.stack([state.age, jnp.zeros_like(state.age)])
        sols = jax.vmap(lambda z, a: self.nominal._solve(z, *self.backoffs(a), None))(z0s, ages)
        ok = is_successful(sols.status)
        use_x = ok[1] & (~ok[0] | (sols.objective[1] <= sols.objective[0]))
        pick = lambda a: jnp.where(use_x, a[1], a[0])  # noqa: E731
        return jax.tree_util.tree_map(pick, sols), pick(z0s), pick(ages)

    def _step(self, state: TubeState, x):
        sol, z0, age = self._plan(state, x)
        u = sol.u[0] + self.K @ (x - z0)
        last = self.state_table.shape[0] - 1
        new = TubeState(z=sol.x[1], age=jnp.minimum(age + 1, last), plan=sol)
        return u, new, sol

    def step(self, state: TubeState, x: Float[Array, " n"], cov=None, d=None) -> tuple[Float[Array, " m"], TubeState, ControlInfo]:
        """One control step from the measured (or estimated) state ``x`` [n]: ``(u, next state, info)``. jit/vmap-able."""
        x = _checks.as_array("x", x, (self.nominal.n,))
        u, new, sol = _step_jit(self, state, x)
        return u, new, info_of(sol)

    def fallback(self, state: TubeState, x: Float[Array, " n"], cov=None, d=None) -> tuple[Float[Array, " m"], TubeState]:
        """``u = v + K(x − z)`` with ``v`` the next input of the last plan, whose tail is completed by
        ``v_N = K z_N``, ``z_{N+1} = Φ z_N``; the state moves one step along that plan."""
        plan, K = state.plan, self.K
        Phi = self.nominal.A + self.nominal.B @ K
        shifted = eqx.tree_at(
            lambda p: (p.u, p.x),
            self.nominal.shift(plan),
            (jnp.concatenate([plan.u[1:], (K @ plan.x[-1])[None]]), jnp.concatenate([plan.x[1:], (Phi @ plan.x[-1])[None]])),
        )
        u = shifted.u[0] + K @ (x - state.z)
        last = self.state_table.shape[0] - 1
        return u, TubeState(z=shifted.x[1], age=jnp.clip(state.age + 1, 0, last), plan=shifted)

    def simulate(self, x0: Float[Array, " n"], w: Float[Array, "S T n"]) -> TubeRollout:
        """Closed loop ``x⁺ = Ax + Bu + w`` from ``x0`` [n] for ``S`` disturbance sequences ``w`` [S, T, n].

        Without ``reset`` the nominal plan does not depend on the measurements, so it is
        computed once and shared by the ``S`` rollouts (vmapped plants); with ``reset``
        every rollout runs its own controller (vmapped closed loops).
        """
        x0 = _checks.as_array("x0", x0, (self.nominal.n,))
        w = _checks.as_array("w", w, (None, None, self.nominal.n))
        return _simulate_jit(self, x0, w)

    def _simulate(self, x0, w) -> TubeRollout:
        A, B = self.nominal.A, self.nominal.B
        S, T, _ = w.shape

        def loop(x0, ws):
            def body(carry, wk):
                x, st = carry
                u, st2, sol = self._step(st, x)
                return (A @ x + B @ u + wk, st2), (x, u, st.z, sol.status)

            (xT, stT), (xs, us, zs, status) = jax.lax.scan(body, (x0, self.init(x0)), ws)
            return jnp.concatenate([xs, xT[None]]), us, jnp.concatenate([zs, stT.z[None]]), status

        if self.reset:
            xs, us, zs, status = jax.vmap(loop, in_axes=(None, 0))(x0, w)
            return TubeRollout(x=xs, u=us, z=zs, status=status)

        def plan_body(st, _):
            v, st2, sol = self._step(st, st.z)  # x = z gives u = v: the nominal input
            return st2, (st.z, v, sol.status)

        stT, (zs, vs, status) = jax.lax.scan(plan_body, self.init(x0), None, length=T)
        zs = jnp.concatenate([zs, stT.z[None]])

        def plant(ws):
            def body(x, k):
                u = vs[k] + self.K @ (x - zs[k])
                return A @ x + B @ u + ws[k], (x, u)

            xT, (xs, us) = jax.lax.scan(body, x0, jnp.arange(T))
            return jnp.concatenate([xs, xT[None]]), us

        xs, us = jax.vmap(plant)(w)
        return TubeRollout(x=xs, u=us, z=jnp.broadcast_to(zs, (S, T + 1, zs.shape[-1])), status=jax.tree.map(lambda v: jnp.broadcast_to(v, (S, T)), status))


@eqx.filter_jit
def _step_jit(mpc: TubeMPC, state, x):
    return mpc._step(state, x)


@eqx.filter_jit
def _simulate_jit(mpc: TubeMPC, x0, w):
    return mpc._simulate(x0, w)


# ----------------------------------------------------------------------------- chance constraints


class ChanceMPC(_OnNominal):
    """Chance-constrained MPC: each row of ``X`` and ``U`` holds with probability ``≥ 1 − ε`` along the plan.

    The real system ``x⁺ = Ax + Bu + w``, ``w ~ N(0, noise_cov)``, ``x_0 ~ N(x̂, Σ_0)``
    is driven by ``u_t = v_t + K(x_t − z_t)`` around the plan ``(z, v)`` (``K`` default
    ``−K_lqr``; pass zeros for open-loop inputs).  ``joint=True`` makes all rows of a
    step hold jointly (Bonferroni).  ``solve(mean, cov)`` propagates the estimator's
    covariance over the horizon and tightens (pure JAX, jit/vmap-able).

    As a :class:`~jtwin.control.AbstractController` the state is the last plan and ``step``
    plans from the twin's belief — the filter's mean *and covariance* at every step — applying
    ``v_0`` (``z_0 = x̂``); ``fallback`` applies ``v_1 + K(x̂ − z_1)`` of the previous plan, the
    feedback policy its back-offs were computed for.
    """

    nominal: PolytopicMPC
    K: Float[Array, "m n"]
    noise_cov: Float[Array, "n n"]
    eps: float = eqx.field(static=True)
    joint: bool = eqx.field(static=True)

    def __init__(
        self, A, B, horizon: int, Q, R, X: Polytope | None, U: Polytope | None, noise_cov, eps: float = 0.05,
        K=None, *, joint: bool = False, xref=None, alpha=0.0, beta=0.0, c=None, rho=0.0, **solver_options,
    ):  # fmt: skip
        self.nominal = PolytopicMPC(A, B, horizon, Q, R, X, U, None, None, None, xref, alpha, beta, c, rho, **solver_options)
        n, m = self.nominal.n, self.nominal.m
        self.K = -lqr(self.nominal.A, self.nominal.B, self.nominal.Q, self.nominal.R)[0] if K is None else _checks.as_array("K", K, (m, n))
        self.noise_cov = _checks.check_covariance("noise_cov", noise_cov, n)
        rows = self.nominal.Hx.shape[0] + self.nominal.Hu.shape[0]
        if not 0.0 < eps <= 0.5:
            raise ValueError(f"eps: expected a violation probability in (0, 0.5], got {eps}")
        self.eps = float(eps) / (max(rows, 1) if joint else 1)
        self.joint = bool(joint)

    def backoffs(self, cov: Float[Array, "n n"]) -> tuple[Float[Array, "N rx"], Float[Array, "N ru"]]:
        """Back-offs from ``Σ_0 = cov``: state rows at t = 1..N, input rows (through ``K``) at t = 0..N−1."""
        N = self.nominal.horizon
        covs = propagate_covariance(self.nominal.A + self.nominal.B @ self.K, cov, self.noise_cov, N)
        bx = gaussian_backoff(self.nominal.Hx, covs[1:], self.eps)
        bu = gaussian_backoff(self.nominal.Hu @ self.K, covs[:-1], self.eps)
        return bx, bu

    def solve(self, mean: Float[Array, " n"], cov: Float[Array, "n n"], warm_start: MPCSolution | None = None) -> MPCSolution:
        """Plan from the belief ``N(mean, cov)`` (nominal ``z_0 = mean``); see :meth:`PolytopicMPC.solve`."""
        n = self.nominal.n
        mean = _checks.as_array("mean", mean, (n,))
        cov = _checks.check_covariance("cov", cov, n)
        return self.nominal.solve(mean, *self.backoffs(cov), warm_start)

    def init(self, mean: Float[Array, " n"], cov: Float[Array, "n n"], d=None) -> MPCSolution:
        """The plan from the initial belief ``N(mean, cov)``."""
        return self.solve(mean, cov)

    def step(self, state: MPCSolution, mean: Float[Array, " n"], cov: Float[Array, "n n"], d=None) -> tuple[Float[Array, " m"], MPCSolution, ControlInfo]:
        """``(plan.u[0], plan, info)`` with ``plan = solve(mean, cov)`` (a cold solve)."""
        plan = self.solve(mean, cov)
        return plan.u[0], plan, info_of(plan)

    def fallback(self, state: MPCSolution, mean: Float[Array, " n"], cov=None, d=None) -> tuple[Float[Array, " m"], MPCSolution]:
        """``v_1 + K(mean − z_1)`` of the previous plan, and that plan shifted."""
        plan = self.nominal.shift(state)
        return plan.u[0] + self.K @ (mean - plan.x[0]), plan
