"""OSQP's ADMM algorithm for dense convex QPs, in pure JAX.

Problem (``P`` symmetric positive semidefinite, bounds may be ``±inf``)::

    minimise  ½ xᵀP x + qᵀx    subject to  l ≤ A x ≤ u,   lb ≤ x ≤ ub  (optional).

The variable bounds ``lb ≤ x ≤ ub`` are constraint rows with an identity
matrix; they are kept as a diagonal (``C = [A; I]`` without forming ``I``), so
every product with ``C`` costs one dense product with ``A`` plus an elementwise
one.  The iteration is OSQP's (Stellato et al., 2020) on the Ruiz-equilibrated
data (:mod:`jtwin.qp.scaling`).  With per-row step sizes ``R = diag(ρ)``::

    x̃ = (P + σI + CᵀRC)⁻¹ (σx − q + Cᵀ(Rz − y))      (one factorisation, reused)
    z̃ = C x̃
    x ← αx̃ + (1−α)x
    z ← Π_[l,u](αz̃ + (1−α)z + R⁻¹y)
    y ← y + R(αz̃ + (1−α)z − z_new)

``ρ_i`` is ``1e3·ρ`` on equality rows (``l_i = u_i``), ``1e-6`` on free rows and
``ρ`` otherwise.  The KKT matrix is small and dense, so its inverse is formed
explicitly from a Cholesky factorisation (``K ⪰ σI``; it is rebuilt whenever ρ
changes) and the x-update is a matrix product — for a batch, one GEMM.

Every ``check_interval`` iterations (a fixed, deterministic schedule) the
solver evaluates OSQP 1.x's unscaled termination test at the iterate with its
bounded variables projected onto ``[lb, ub]`` (so returned variables always lie
in their bounds)

    ‖Ax − z‖∞ ≤ ε_abs + ε_rel·max(‖Ax‖∞, ‖z‖∞)
    ‖Px + q + Aᵀy‖∞ ≤ ε_abs + ε_rel·max(‖Px‖∞, ‖Aᵀy‖∞, ‖q‖∞)
    |xᵀPx + qᵀx + S(y)| ≤ ε_abs + ε_rel·max(|xᵀPx|, |qᵀx|, |S(y)|)

(``S(y) = uᵀy⁺ + lᵀy⁻`` the support function of the row bounds: the duality gap)

and the infeasibility certificates of the last step ``δx``, ``δy``.  Every
``adaptive_rho_interval`` iterations it forms OSQP's estimate
``ρ·√((r_prim/‖·‖)/(r_dual/‖·‖))``; when that differs from ``ρ`` by more than
``adaptive_rho_tolerance`` the KKT matrix is refactorised.

Batching: problems that share ``P`` and ``A`` (MPC, where only ``q, l, u``
move with the state) are solved together with **one** factorisation per ρ;
under ``jax.vmap`` with unbatched ``P, A`` :func:`solve_qp` switches to that
path automatically (a ``custom_vmap`` rule).  The batch is cut into chunks of
``batch_chunk`` problems, run one after the other: each chunk's loop stops when
its own problems are done, and ρ adapts per chunk from the median of its
running problems' residual ratios (robust to one far-off problem: a geometric
mean let a diverged estimate in one scenario stall a whole batch).  The default chunk holds about 16,384
problem-variables (256 problems of 40 variables, 64 of 168, at least 32): large
enough for efficient GEMMs, small enough that a chunk rarely waits for one slow
problem (measured: quadcopter n = 40 equal at 128–256 and 8% slower at 64;
building n = 168 13% faster at 64 than at 256).  Termination, statuses and the returned
iterates stay per problem (a problem's solution is frozen at its check).
With batched ``P`` or ``A`` every problem gets its own factorisation.
"""

from __future__ import annotations

import dataclasses
import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_batching import custom_vmap
from jaxtyping import Array, Float

from .base import AbstractQPSolver, check_options
from .implicit import refined_solve
from .problem import QPProblem, support
from .results import DUAL_INF, MAX_ITER, NUMERICAL, PRIMAL_INF, RUNNING, SOLVED, from_loop_code
from .scaling import Scaling, ruiz_equilibrate
from .solution import QPSolution, WarmStart

_RHO_MIN = 1e-6
_RHO_MAX = 1e6
_RHO_EQ_OVER_INEQ = 1e3
ADAPTIVE_RHO_RULES = ("osqp", "residual")  # ρ estimate: OSQP's normalised residual ratio, or the plain one
_TINY = 1e-30
_POLISH_NEAR = 1e3  # polishing starts once every residual is within this factor of its threshold


class ADMMState(eqx.Module):
    """ADMM's warm-start state: the final step size ``rho`` (OSQP's solver object keeps ρ between
    solves; passing a previous solution's state restarts from it) and whether polishing was accepted."""

    rho: Float[Array, ""]
    polished: Array


@dataclasses.dataclass(frozen=True)
class _Settings:
    """Hashable settings of one solve: the :class:`ADMM` options plus what the problem fixes
    (``bounds``: variable bounds present; ``batch_chunk`` resolved from ``n``)."""

    eps_abs: float
    eps_rel: float
    eps_pinf: float
    eps_dinf: float
    max_iter: int
    sigma: float
    alpha: float
    scaling: int
    adaptive_rho: bool
    adaptive_rho_tolerance: float
    adaptive_rho_rule: str
    check_interval: int
    adaptive_rho_interval: int
    polish: bool
    polish_delta: float
    polish_refine: int
    unrolled: bool
    bounds: bool
    batch_chunk: int


# --------------------------------------------------------------------------- setup


class _Scaled(eqx.Module):
    """Scaled data shared by a batch.

    Constraint rows are ``C̄ = [Ā; diag(box)]``: ``A`` [m, n] dense rows and,
    with variable bounds, ``box`` [n] the scaled diagonal of the bound rows
    (zero where a variable is unbounded); without bounds ``box`` has size 0.
    """

    P: Array
    A: Array
    box: Array
    scaling: Scaling
    eq_rows: Array
    free_rows: Array

    def rows(self, X: Array) -> Array:
        """``X C̄ᵀ`` for a batch of points ``X`` [B, n] → [B, m (+ n)]."""
        AX = X @ self.A.T
        return jnp.concatenate([AX, X * self.box], axis=-1) if self.box.size else AX

    def cols(self, W: Array) -> Array:
        """``W C̄`` for a batch of row vectors ``W`` [B, m (+ n)] → [B, n]."""
        m = self.A.shape[0]
        out = W[..., :m] @ self.A
        return out + W[..., m:] * self.box if self.box.size else out

    def dense_rows(self) -> Array:
        """``C̄`` as a dense matrix (polishing only)."""
        return jnp.concatenate([self.A, jnp.diag(self.box)]) if self.box.size else self.A

    def rho_vec(self, rho: Array) -> Array:
        return jnp.where(self.free_rows, _RHO_MIN, jnp.where(self.eq_rows, _RHO_EQ_OVER_INEQ * rho, rho))

    def kkt_inverse(self, rho: Array, sigma: float) -> Array:
        """``(P̄ + σI + C̄ᵀRC̄)⁻¹`` from one Cholesky factorisation (dense, small systems)."""
        n, m = self.P.shape[0], self.A.shape[0]
        R = self.rho_vec(rho)
        diag = sigma + (R[m:] * self.box**2 if self.box.size else 0.0)
        K = self.P + jnp.diag(jnp.broadcast_to(diag, (n,))).astype(self.P.dtype) + (self.A.T * R[:m]) @ self.A
        factor = jax.scipy.linalg.cho_factor(K, lower=True)
        return jax.scipy.linalg.cho_solve(factor, jnp.eye(n, dtype=self.P.dtype))


def _all_problems(mask: Array) -> Array:
    """Reduce a per-row mask [..., rows] over the batch axes (a shared [rows] mask passes through)."""
    return jnp.all(mask, axis=tuple(range(mask.ndim - 1)))


def _setup(P, A, q, l_rows, u_rows, settings: _Settings) -> _Scaled:
    """Ruiz-scale ``(P, C)``.  ``l_rows, u_rows``: the row bounds as parts, ``(l, lb)`` with variable
    bounds (``l`` [B, m] for the dense rows, ``lb`` [n] or [B, n] for the bound rows), else ``(l,)``."""
    free = [_all_problems(jnp.isneginf(a) & jnp.isposinf(b)) for a, b in zip(l_rows, u_rows)]
    if settings.bounds:
        bounded = (~free[1]).astype(P.dtype)
        C = jnp.concatenate([A, jnp.diag(bounded)])
    else:
        bounded, C = jnp.zeros(0, P.dtype), A
    sc = ruiz_equilibrate(P, C, q, settings.scaling)
    m = A.shape[0]
    Ps = sc.c * sc.D[:, None] * P * sc.D[None, :]
    As = sc.E[:m, None] * A * sc.D[None, :]
    box = sc.E[m:] * bounded * sc.D if settings.bounds else bounded
    eq_rows = jnp.concatenate([_all_problems((a == b) & jnp.isfinite(a)) for a, b in zip(l_rows, u_rows)])
    free_rows = jnp.concatenate(free)
    return _Scaled(P=Ps, A=As, box=box, scaling=sc, eq_rows=eq_rows, free_rows=free_rows)


# --------------------------------------------------------------------------- residuals


class _Residuals(eqx.Module):
    prim: Array
    dual: Array
    gap: Array
    eps_prim: Array
    eps_dual: Array
    eps_gap: Array
    ratio: Array  # the factor of the ρ estimate: √(prim/dual), normalised as OSQP does for adaptive_rho_rule="osqp"

    def converged(self) -> Array:
        return (self.prim <= self.eps_prim) & (self.dual <= self.eps_dual) & (self.gap <= self.eps_gap)


def _residuals(sd: _Scaled, qs, X, Z, Y, l, u, settings: _Settings) -> _Residuals:
    """Unscaled OSQP 1.x residuals and duality gap of a batch of scaled iterates (rows of X, Z, Y);
    ``l, u`` [B, rows] the unscaled row bounds."""
    D, E, c = sd.scaling.D, sd.scaling.E, sd.scaling.c
    inf = lambda v: jnp.max(jnp.abs(v), axis=-1, initial=0.0)  # noqa: E731
    CX = sd.rows(X) / E
    Zu = Z / E
    PX = (X @ sd.P) / (c * D)
    CTY = sd.cols(Y) / (c * D)
    Qu = qs / (c * D)
    prim, norm_prim = inf(CX - Zu), jnp.maximum(inf(CX), inf(Zu))
    dual, norm_dual = inf(PX + Qu + CTY), jnp.maximum(jnp.maximum(inf(PX), inf(CTY)), inf(Qu))
    xPx, qx = jnp.sum(X * (X @ sd.P), -1) / c, jnp.sum(qs * X, -1) / c  # x = DX, P = P̄/(cDD), q = q̄/(cD)
    sup = support(l, u, Y * E / c)
    gap, norm_gap = jnp.abs(xPx + qx + sup), jnp.maximum(jnp.maximum(jnp.abs(xPx), jnp.abs(qx)), jnp.abs(sup))
    if settings.adaptive_rho_rule == "osqp":
        ratio = jnp.sqrt((prim / (norm_prim + _TINY)) / (dual / (norm_dual + _TINY) + _TINY) + _TINY)
    else:  # "residual": balance the residuals themselves
        ratio = jnp.sqrt(prim / (dual + _TINY) + _TINY)
    return _Residuals(
        prim=prim,
        dual=dual,
        eps_prim=settings.eps_abs + settings.eps_rel * norm_prim,
        eps_dual=settings.eps_abs + settings.eps_rel * norm_dual,
        gap=gap,
        eps_gap=settings.eps_abs + settings.eps_rel * norm_gap,
        ratio=ratio,
    )


def _primal_infeasible(sd: _Scaled, l, u, dY, eps: float) -> Array:
    """OSQP's certificate on the unscaled step ``δy``: ``‖Cᵀδy‖ ≤ ε‖δy‖``, ``uᵀδy⁺ + lᵀδy⁻ ≤ −ε‖δy‖``."""
    dy = dY * sd.scaling.E  # unscaled direction (up to the positive factor 1/c)
    lo_fin, up_fin = jnp.isfinite(l), jnp.isfinite(u)
    # project onto the polar of the recession cone of [l, u]
    dy = jnp.where(up_fin, dy, jnp.minimum(dy, 0.0))
    dy = jnp.where(lo_fin, dy, jnp.maximum(dy, 0.0))
    norm = jnp.max(jnp.abs(dy), axis=-1)
    cty = jnp.max(jnp.abs(sd.cols(dY) / sd.scaling.D), axis=-1, initial=0.0)
    return (norm > _TINY) & (cty <= eps * norm) & (support(l, u, dy) <= -eps * norm)


def _dual_infeasible(sd: _Scaled, qs, l, u, dX, eps: float) -> Array:
    """OSQP's certificate on ``δx``: ``‖Pδx‖ ≤ ε‖δx‖``, ``qᵀδx ≤ −ε‖δx‖``, ``Cδx`` in the recession cone."""
    D, E, c = sd.scaling.D, sd.scaling.E, sd.scaling.c
    norm = jnp.max(jnp.abs(dX * D), axis=-1)
    pdx = jnp.max(jnp.abs((dX @ sd.P) / (c * D)), axis=-1)
    qdx = jnp.sum(qs * dX, axis=-1) / c
    cdx = sd.rows(dX) / E
    tol = eps * norm[..., None]
    cone = jnp.all(
        jnp.where(jnp.isfinite(u), cdx <= tol, True) & jnp.where(jnp.isfinite(l), cdx >= -tol, True), axis=-1
    )
    return (norm > _TINY) & (pdx <= eps * norm) & (qdx <= -eps * norm) & cone


# --------------------------------------------------------------------------- iteration
#
# The loop carries ``v = z + R⁻¹y`` instead of ``(z, y)``: with ``c = Π_[l,u](v)``
# one has ``z = c``, ``y = R(v − c)``, and OSQP's step becomes
#
#     x̃ = (σx − q + Cᵀ R(2c − v)) K⁻¹,   x ← αx̃ + (1−α)x,   v ← v + α(Cx̃ − c),
#
# the same iterates with fewer passes over the [B, rows] arrays.  Rows are kept
# as parts (dense rows, bound rows) so the bound rows never enter a matrix product.


class _Data(eqx.Module):
    """One batch (or chunk) of scaled problems: shared ``sd``, per-problem ``qs`` [B, n].

    Row bounds are kept as parts, (dense rows [B, m], bound rows) or (dense
    rows,): unscaled ``l, u`` and scaled ``ls, us``.  The bound-row part is
    [n] when the batch shares its variable bounds (MPC input boxes), so the
    loop broadcasts one vector instead of streaming a [B, n] array; it is
    [B, n] otherwise.
    """

    sd: _Scaled
    qs: Array
    l: tuple[Array, ...]
    u: tuple[Array, ...]
    ls: tuple[Array, ...]
    us: tuple[Array, ...]

    def in_bounds(self, X: Array) -> Array:
        """``X`` [B, n] with its bounded variables projected onto their (scaled) bounds ``lb ≤ x ≤ ub``."""
        if not self.sd.box.size:
            return X
        box = self.sd.box
        safe = jnp.where(box > 0, box, 1.0)
        return jnp.where(box > 0, jnp.clip(X * box, self.ls[1], self.us[1]) / safe, X)

    def full(self, parts: tuple[Array, ...]) -> Array:
        """Row bounds as one [B, m (+ n)] array (termination checks and polishing only)."""
        B = self.qs.shape[0]
        return jnp.concatenate([jnp.broadcast_to(p, (B, p.shape[-1])) for p in parts], axis=-1)


def _parts(sd: _Scaled, V: Array) -> tuple[Array, ...]:
    """Row-space array [B, m (+ n)] → (dense rows, bound rows) or (dense rows,)."""
    m = sd.A.shape[0]
    return (V[..., :m], V[..., m:]) if sd.box.size else (V,)


def _join(parts: tuple[Array, ...]) -> Array:
    return jnp.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]


def _project(data: _Data, V: Array) -> Array:
    """``Π_[l,u](V)`` for row-space arrays [B, m (+ n)], part by part."""
    return _join(tuple(jnp.clip(v, a, b) for v, a, b in zip(_parts(data.sd, V), data.ls, data.us)))


def _iterate(data: _Data, Kinv, R, settings: _Settings, count: int, X, V):
    """``count`` ADMM steps; returns the final ``(X, V)`` and the previous ``(X, V)`` (for ``δx, δy``)."""
    sd = data.sd
    lo, hi, Rp = data.ls, data.us, _parts(sd, R)
    alpha, sigma = settings.alpha, settings.sigma

    def step(X, Vp):
        c = tuple(jnp.clip(v, a, b) for v, a, b in zip(Vp, lo, hi))
        W = tuple(r * (2.0 * ci - v) for r, ci, v in zip(Rp, c, Vp))
        rhs = sigma * X - data.qs + W[0] @ sd.A
        if sd.box.size:
            rhs = rhs + W[1] * sd.box
        Xt = rhs @ Kinv
        Zt = (Xt @ sd.A.T, Xt * sd.box) if sd.box.size else (Xt @ sd.A.T,)
        return alpha * Xt + (1.0 - alpha) * X, tuple(v + alpha * (zt - ci) for v, zt, ci in zip(Vp, Zt, c))

    Xp, Vp = jax.lax.fori_loop(0, count - 1, lambda _, s: step(*s), (X, _parts(sd, V)))
    X, Vn = step(Xp, Vp)
    return X, _join(Vn), Xp, _join(Vp)


def _zy(data: _Data, R, V):
    Z = _project(data, V)
    return Z, R * (V - Z)


class _State(eqx.Module):
    """Running iterates ``X, V`` (all problems keep iterating, so the loop body
    has no per-problem masks) and the results ``Xr, Zr, Yr`` frozen at each
    problem's successful check."""

    X: Array
    V: Array
    Xr: Array
    Zr: Array
    Yr: Array
    rho: Array
    Kinv: Array
    done: Array
    status: Array
    iters: Array
    polished: Array
    k: Array


def _infeasibility_and_rho(data: _Data, settings: _Settings, st: _State, ratio, active, X, Y, Xp, Yp):
    """Every ``adaptive_rho_interval`` iterations: infeasibility codes [B] and, if warranted, a new ρ."""
    sd = data.sd
    l, u = data.full(data.l), data.full(data.u)
    pinf = _primal_infeasible(sd, l, u, Y - Yp, settings.eps_pinf)
    dinf = _dual_infeasible(sd, data.qs, l, u, X - Xp, settings.eps_dinf)
    code = jnp.where(pinf, PRIMAL_INF, jnp.where(dinf, DUAL_INF, RUNNING)).astype(jnp.int32)
    if not settings.adaptive_rho:
        return code, st.rho, st.Kinv
    active = active & (code == RUNNING)
    # the median over the chunk's running problems: one far-off problem cannot drag everyone's ρ
    step = jnp.nanmedian(jnp.where(active, jnp.log(ratio), jnp.nan))
    step = jnp.where(jnp.isfinite(step), step, 0.0)
    rho_new = jax.lax.stop_gradient(jnp.clip(st.rho * jnp.exp(step), _RHO_MIN, _RHO_MAX))
    tol = settings.adaptive_rho_tolerance
    change = jnp.any(active) & ((rho_new > tol * st.rho) | (rho_new < st.rho / tol))
    rho = jnp.where(change, rho_new, st.rho)
    Kinv = jax.lax.cond(change, lambda: sd.kkt_inverse(rho_new, settings.sigma), lambda: st.Kinv)
    return code, rho, Kinv


def _block(data: _Data, settings: _Settings, count: int, st: _State) -> _State:
    """``count`` ADMM iterations, then the termination check; on the ρ schedule also the
    infeasibility certificates and the ρ update (skipped by a ``cond`` otherwise)."""
    sd = data.sd
    R = sd.rho_vec(st.rho)
    X, V, Xp, Vp = _iterate(data, st.Kinv, R, settings, count, st.X, st.V)
    k = st.k + count
    Z, Y = _zy(data, R, V)
    Xb = data.in_bounds(X)  # the point a solve returns: tested, and frozen, with its bounds exact
    l_full, u_full = data.full(data.l), data.full(data.u)
    res = _residuals(sd, data.qs, Xb, Z, Y, l_full, u_full, settings)
    solved = res.converged()
    finite = jnp.all(jnp.isfinite(X), -1) & jnp.all(jnp.isfinite(V), -1)
    active = ~st.done & finite & ~solved
    Xb, Z, Y, by_polish = _polish_early(data, settings, res, active, Xb, Z, Y, l_full, u_full)
    solved, active = solved | by_polish, active & ~by_polish

    def heavy():
        # ρ follows the residuals of the iterate itself, as in OSQP (those of the projected point
        # mix in P·(projection step) and mislead the estimate)
        ratio = _residuals(sd, data.qs, X, Z, Y, l_full, u_full, settings).ratio if sd.box.size else res.ratio
        return _infeasibility_and_rho(data, settings, st, ratio, active, X, Y, Xp, _zy(data, R, Vp)[1])

    def light():
        return jnp.zeros_like(st.status), st.rho, st.Kinv

    due = (k % settings.adaptive_rho_interval == 0) | (k >= settings.max_iter)
    infeasible, rho, Kinv = jax.lax.cond(due, heavy, light)
    code = jnp.where(~finite, NUMERICAL, jnp.where(solved, SOLVED, infeasible))
    X, Xb, V, Z, Y = (jnp.where(finite[:, None], A_, 0.0) for A_ in (X, Xb, V, Z, Y))
    newly = (~st.done & (code != RUNNING))[:, None]
    Xr, Zr, Yr = (jnp.where(newly, A_, Ar) for A_, Ar in ((Xb, st.Xr), (Z, st.Zr), (Y, st.Yr)))
    R_new = sd.rho_vec(rho)
    V = jnp.where(rho != st.rho, Z + Y / R_new, V)  # keep (z, y) when ρ changes
    return _State(
        X=X, V=V, Xr=Xr, Zr=Zr, Yr=Yr, rho=rho, Kinv=Kinv, done=st.done | (code != RUNNING),
        status=jnp.where(st.done, st.status, code), iters=jnp.where(st.done, st.iters, k),
        polished=st.polished | (~st.done & by_polish), k=k,
    )  # fmt: skip


class _Result(eqx.Module):
    """Per-problem outcome of the loop (scaled iterates; ``rho`` [B] the final ρ of each problem's chunk)."""

    X: Array
    Z: Array
    Y: Array
    done: Array
    status: Array
    iters: Array
    rho: Array
    polished: Array


def _run(data: _Data, settings: _Settings, X, Z, Y, rho) -> _Result:
    """The ADMM loop on one batch/chunk: full check blocks, then the remainder up to ``max_iter``."""
    B = X.shape[0]
    R = data.sd.rho_vec(rho)
    st = _State(
        X=X, V=Z + Y / R, Xr=X, Zr=Z, Yr=Y, rho=rho, Kinv=data.sd.kkt_inverse(rho, settings.sigma),
        done=jnp.zeros(B, bool), status=jnp.zeros(B, jnp.int32), iters=jnp.zeros(B, jnp.int32),
        polished=jnp.zeros(B, bool), k=jnp.zeros((), jnp.int32),
    )  # fmt: skip
    ci = settings.check_interval
    n_full, rest = divmod(settings.max_iter, ci)
    block = functools.partial(_block, data, settings, ci)
    if settings.unrolled:
        st = jax.lax.fori_loop(0, n_full, lambda _, s: block(s), st)
    else:
        st = jax.lax.while_loop(lambda s: (s.k < n_full * ci) & ~jnp.all(s.done), block, st)
    if rest:
        last = functools.partial(_block, data, settings, rest)
        st = last(st) if settings.unrolled else jax.lax.cond(jnp.all(st.done), lambda s: s, last, st)
    Z, Y = _zy(data, data.sd.rho_vec(st.rho), st.V)
    keep = lambda Vr, V: jnp.where(st.done[:, None], Vr, V)  # noqa: E731
    return _Result(
        X=keep(st.Xr, st.X), Z=keep(st.Zr, Z), Y=keep(st.Yr, Y), done=st.done, status=st.status,
        iters=st.iters, rho=jnp.broadcast_to(st.rho, (B,)), polished=st.polished,
    )  # fmt: skip


def _run_chunked(data: _Data, settings: _Settings, X, Z, Y, rho0) -> _Result:
    """:func:`_run` over chunks of ``batch_chunk`` problems (padded with copies of the last one).

    Each chunk starts from the geometric mean of its problems' initial ρ.
    """
    B = X.shape[0]
    C = settings.batch_chunk
    if settings.unrolled or B <= C:
        return _run(data, settings, X, Z, Y, jnp.exp(jnp.mean(jnp.log(rho0))))
    n_chunks = -(-B // C)
    pad = n_chunks * C - B
    split = lambda V: jnp.concatenate([V, jnp.repeat(V[-1:], pad, axis=0)]).reshape((n_chunks, C) + V.shape[1:])  # noqa: E731
    # per-problem leaves are [B, ·]; shared row bounds ([n]) stay whole in every chunk
    per_problem, shared = eqx.partition(data, lambda leaf: eqx.is_array(leaf) and leaf.ndim == 2)
    per_problem = eqx.tree_at(lambda d: d.sd, per_problem, None)
    shared = eqx.tree_at(lambda d: d.sd, shared, data.sd)

    def one(chunk):
        part, Xc, Zc, Yc, rc = chunk
        return _run(eqx.combine(part, shared), settings, Xc, Zc, Yc, jnp.exp(jnp.mean(jnp.log(rc))))

    out = jax.lax.map(one, (jax.tree.map(split, per_problem), split(X), split(Z), split(Y), split(rho0)))
    return jax.tree.map(lambda V: V.reshape((n_chunks * C,) + V.shape[2:])[:B], out)


# --------------------------------------------------------------------------- polishing


def _polish_one(sd: _Scaled, qs, ls, us, x, z, y, settings: _Settings):
    """OSQP polishing of one scaled solution: solve the KKT system of the guessed active set.

    Inactive rows are kept in a fixed-size system with the equation ``y_i = 0``,
    so the shapes are static.  Returns scaled ``(x, z, y)``.
    """
    n = x.shape[0]
    C = sd.dense_rows()
    lower = (z - ls < -y) & jnp.isfinite(ls)
    upper = (us - z < y) & jnp.isfinite(us)
    act = (lower | upper).astype(x.dtype)
    bound = jnp.where(lower, ls, jnp.where(upper, us, 0.0))
    delta = settings.polish_delta
    top = jnp.concatenate([sd.P, C.T * act], axis=1)
    K_true = jnp.concatenate([top, jnp.concatenate([act[:, None] * C, jnp.diag(act - 1.0)], axis=1)], axis=0)
    reg = jnp.concatenate([jnp.full(n, delta), -delta * act])
    rhs = jnp.concatenate([-qs, act * bound])
    sol = refined_solve(K_true, rhs, reg, settings.polish_refine)
    xp, yp = sol[:n], sol[n:] * act
    zp = jnp.clip(C @ xp, ls, us)
    return xp, zp, yp


def _polish_batch(data: _Data, settings: _Settings, X, Z, Y, l_full, u_full):
    """:func:`_polish_one` for every problem of a batch: the polished ``(X, Z, Y)`` (variables in their
    bounds) and their :class:`_Residuals` (non-finite polished points get infinite residuals)."""
    ls, us = data.full(data.ls), data.full(data.us)
    Xp, Zp, Yp = jax.vmap(lambda *a: _polish_one(data.sd, *a, settings))(data.qs, ls, us, X, Z, Y)
    Xp = data.in_bounds(Xp)
    res = _residuals(data.sd, data.qs, Xp, Zp, Yp, l_full, u_full, settings)
    finite = jnp.all(jnp.isfinite(Xp), -1) & jnp.all(jnp.isfinite(Yp), -1)
    res = jax.tree.map(lambda r: jnp.where(finite, r, jnp.inf), res)
    return (Xp, Zp, Yp), res


def _pick(mask, new, old):
    """Rows of the arrays in ``new`` where ``mask`` [B], else those of ``old``."""
    return tuple(jnp.where(mask[:, None], a, b) for a, b in zip(new, old))


def _polish_early(data: _Data, settings: _Settings, res: _Residuals, active, X, Z, Y, l_full, u_full):
    """Polishing during the loop: problems within ``_POLISH_NEAR`` of every threshold get a polishing
    step; where the polished point meets all three tests it is the solution (``by_polish`` [B]).

    ADMM identifies the active set long before its iterates resolve a tight tolerance (and the
    duality gap, on degenerate problems, may not close within ``max_iter``); polishing then
    finishes the job, and its acceptance is the same termination test, at the polished point.
    """
    B = X.shape[0]
    if not settings.polish:
        return X, Z, Y, jnp.zeros(B, bool)
    near = active & (res.prim <= _POLISH_NEAR * res.eps_prim) & (res.dual <= _POLISH_NEAR * res.eps_dual)
    near = near & (res.gap <= _POLISH_NEAR * res.eps_gap)

    def attempt():
        polished, res_p = _polish_batch(data, settings, X, Z, Y, l_full, u_full)
        ok = near & res_p.converged()
        return _pick(ok, polished, (X, Z, Y)) + (ok,)

    return jax.lax.cond(jnp.any(near), attempt, lambda: (X, Z, Y, jnp.zeros(B, bool)))


# --------------------------------------------------------------------------- driver


def _solve_batch(settings: _Settings, P, A, q, l, u, lb, ub, x0, y0, rho0):
    """Solve a batch (leading axis) of QPs that share ``P`` and ``A`` with one factorisation per ρ.

    ``l, u`` [B, m] bound the dense rows; with bounds, ``lb, ub`` ([n], shared
    by the batch, or [B, n]) the variables.  ``y0`` [B, m (+ n)] covers the
    dense rows and then the bound rows; ``rho0`` [B] the initial step sizes.
    """
    l_rows, u_rows = ((l, lb), (u, ub)) if settings.bounds else ((l,), (u,))
    sd = _setup(P, A, q, l_rows, u_rows, settings)
    D, E, c = sd.scaling.D, sd.scaling.E, sd.scaling.c
    E_rows = _parts(sd, E)
    data = _Data(
        sd=sd, qs=c * D * q, l=l_rows, u=u_rows,
        ls=tuple(e * v for e, v in zip(E_rows, l_rows)), us=tuple(e * v for e, v in zip(E_rows, u_rows)),
    )  # fmt: skip
    qs = data.qs
    Xs = x0 / D
    Ys = c * y0 / E
    Zs = _project(data, sd.rows(Xs))
    st = _run_chunked(data, settings, Xs, Zs, Ys, jax.lax.stop_gradient(rho0))
    code = jnp.where(st.done, st.status, MAX_ITER)
    X, Z, Y = st.X, st.Z, st.Y
    l_full, u_full = data.full(data.l), data.full(data.u)

    polished = st.polished
    if settings.polish:  # OSQP's polishing of the solved problems: kept where no measure gets worse
        r_admm = _residuals(sd, qs, X, Z, Y, l_full, u_full, settings)
        candidate, r_pol = _polish_batch(data, settings, X, Z, Y, l_full, u_full)
        better = (
            (code == SOLVED)
            & ~polished
            & (r_pol.prim <= jnp.maximum(r_admm.prim, r_admm.eps_prim))
            & (r_pol.dual <= jnp.maximum(r_admm.dual, r_admm.eps_dual))
            & (r_pol.gap <= jnp.maximum(r_admm.gap, r_admm.eps_gap))
        )
        X, Z, Y = _pick(better, candidate, (X, Z, Y))
        polished = polished | better

    X = data.in_bounds(X)
    res = _residuals(sd, qs, X, Z, Y, l_full, u_full, settings)
    m = A.shape[0]
    x = X * D
    y_all = Y * E / c
    y_bound = y_all[:, m:] if settings.bounds else jnp.zeros_like(x)
    return QPSolution(
        x=x,
        y=y_all[:, :m],
        y_bound=y_bound,
        z=Z[:, :m] / E[:m],
        status=from_loop_code(code),
        iterations=st.iters,
        primal_residual=res.prim,
        dual_residual=res.dual,
        duality_gap=res.gap,
        objective=0.5 * jnp.sum(x * (x @ P.T), -1) + jnp.sum(q * x, -1),
        state=ADMMState(rho=st.rho, polished=polished),
    )


def _solve_single(settings, P, A, q, l, u, lb, ub, x0, y0, rho0) -> QPSolution:
    batch = _solve_batch(settings, P, A, *(v[None] for v in (q, l, u, lb, ub, x0, y0, rho0)))
    return jax.tree.map(lambda v: v[0], batch)


@functools.lru_cache(maxsize=None)
def _batching_solver(settings: _Settings):
    """``_solve_single`` whose ``vmap`` shares one factorisation when ``P`` and ``A`` are unbatched
    (and keeps unbatched variable bounds ``lb, ub`` shared by the batch)."""

    @custom_vmap
    def solver(P, A, q, l, u, lb, ub, x0, y0, rho0):
        return _solve_single(settings, P, A, q, l, u, lb, ub, x0, y0, rho0)

    @solver.def_vmap
    def _rule(axis_size, in_batched, P, A, q, l, u, lb, ub, x0, y0, rho0):
        P_b, A_b, q_b, l_b, u_b, lb_b, ub_b, *rest_b = in_batched
        args = (P, A, q, l, u, lb, ub, x0, y0, rho0)
        if not (P_b or A_b):
            batch = lambda v, b: v if b else jnp.broadcast_to(v, (axis_size,) + v.shape)  # noqa: E731
            shared = not (lb_b or ub_b)
            bounds = (lb, ub) if shared else (batch(lb, lb_b), batch(ub, ub_b))
            vecs = [batch(v, b) for v, b in zip((q, l, u), (q_b, l_b, u_b))]
            rest = [batch(v, b) for v, b in zip((x0, y0, rho0), rest_b)]
            out = _solve_batch(settings, P, A, *vecs, *bounds, *rest)
        else:
            axes = tuple(0 if b else None for b in in_batched)
            out = jax.vmap(functools.partial(_solve_single, settings), in_axes=axes)(*args)
        return out, jax.tree.map(lambda _: True, out)

    return solver


# --------------------------------------------------------------------------- the solver


def _default_batch_chunk(n: int) -> int:
    """Problems per chunk of a shared-matrix batch with ``n`` variables: the power of two
    nearest below ``16384 / n``, clipped to [32, 256] (see the module docstring)."""
    return int(np.clip(2 ** int(np.floor(np.log2(16384 / max(n, 1)))), 32, 256))


class ADMM(AbstractQPSolver):
    """OSQP's ADMM on dense arrays (see the module docstring for the iteration and its batching).

    Arguments (defaults are OSQP's, except the deterministic check schedule):

    - ``eps_abs, eps_rel``: termination tolerances of the primal residual, dual residual and
      duality gap (all three must pass for ``RESULTS.successful``).
    - ``max_iter``: iteration limit (``RESULTS.max_iterations_reached`` after it).
    - ``rho``: initial step size (a warm start's ``state.rho`` overrides it); ``sigma``: the
      primal regularisation; ``alpha``: over-relaxation in (0, 2); ``scaling``: Ruiz passes.
    - ``adaptive_rho``, ``adaptive_rho_interval`` (a multiple of ``check_interval``),
      ``adaptive_rho_tolerance`` (≥ 1: refactorise when the estimate moves by more than this
      factor), ``adaptive_rho_rule``: ``"osqp"`` (OSQP's normalised residual ratio) or
      ``"residual"`` (the plain ratio ``√(‖r_prim‖∞/‖r_dual‖∞)``, Boyd et al.'s residual balancing).
    - ``check_interval``: iterations between termination checks.
    - ``eps_pinf, eps_dinf``: infeasibility-certificate tolerances.
    - ``polish``: OSQP's active-set polishing, after convergence (kept when it worsens none of the
      three measures) and during the loop once every measure is within 1e3 of its threshold (the
      polished point is the solution when it passes the termination test: degenerate problems
      whose duality gap closes slowly finish there); ``polish_delta``, ``polish_refine``: the
      regularisation of its KKT solve (on the scaled problem; OSQP's 1e-6 is as large as the
      smallest eigenvalue of some scaled Hessians, where 3 refinement steps leave x wrong in the
      second digit) and its iterative-refinement steps.
    - ``differentiation``: ``"implicit"`` (KKT gradient) or ``"unrolled"`` (a fixed-length loop of
      ``max_iter`` iterations that autodiff runs through; keep ``max_iter`` modest).
    - ``batch_chunk``: problems per chunk when a batch shares ``P`` and ``A`` (``None``: about
      16,384 problem-variables per chunk, between 32 and 256 problems).
    """

    eps_abs: float = eqx.field(static=True, default=1e-4)
    eps_rel: float = eqx.field(static=True, default=1e-4)
    max_iter: int = eqx.field(static=True, default=4000)
    differentiation: str = eqx.field(static=True, default="implicit")
    rho: float = eqx.field(static=True, default=0.1)
    sigma: float = eqx.field(static=True, default=1e-6)
    alpha: float = eqx.field(static=True, default=1.6)
    scaling: int = eqx.field(static=True, default=10)
    adaptive_rho: bool = eqx.field(static=True, default=True)
    adaptive_rho_interval: int = eqx.field(static=True, default=25)
    adaptive_rho_tolerance: float = eqx.field(static=True, default=5.0)
    adaptive_rho_rule: str = eqx.field(static=True, default="osqp")
    check_interval: int = eqx.field(static=True, default=25)
    eps_pinf: float = eqx.field(static=True, default=1e-4)
    eps_dinf: float = eqx.field(static=True, default=1e-4)
    polish: bool = eqx.field(static=True, default=False)
    polish_delta: float = eqx.field(static=True, default=1e-9)
    polish_refine: int = eqx.field(static=True, default=5)
    batch_chunk: int | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        check_options(self.eps_abs, self.eps_rel, self.max_iter, self.differentiation)
        for name in ("rho", "sigma", "polish_delta"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected a positive number, got {getattr(self, name)}")
        for name in ("eps_pinf", "eps_dinf"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}: expected a non-negative number, got {getattr(self, name)}")
        if not 0.0 < self.alpha < 2.0:
            raise ValueError(f"alpha: over-relaxation must lie in (0, 2), got {self.alpha}")
        for name in ("check_interval", "adaptive_rho_interval", "polish_refine", "scaling", "batch_chunk"):
            value = getattr(self, name)
            low = 0 if name in ("polish_refine", "scaling") else 1
            if value is not None and not (isinstance(value, (int, np.integer)) and value >= low):
                raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
        if self.adaptive_rho_rule not in ADAPTIVE_RHO_RULES:
            raise ValueError(f"adaptive_rho_rule: expected one of {list(ADAPTIVE_RHO_RULES)}, got {self.adaptive_rho_rule!r}")
        if not self.adaptive_rho_tolerance >= 1.0:
            raise ValueError(f"adaptive_rho_tolerance: expected a number >= 1, got {self.adaptive_rho_tolerance}")
        if self.adaptive_rho_interval % self.check_interval:
            raise ValueError(
                f"adaptive_rho_interval: must be a multiple of check_interval={self.check_interval}, "
                f"got {self.adaptive_rho_interval}"
            )

    def _settings(self, problem: QPProblem) -> _Settings:
        n = problem.n
        return _Settings(
            eps_abs=float(self.eps_abs), eps_rel=float(self.eps_rel), eps_pinf=float(self.eps_pinf),
            eps_dinf=float(self.eps_dinf), max_iter=int(self.max_iter), sigma=float(self.sigma),
            alpha=float(self.alpha), scaling=int(self.scaling), adaptive_rho=bool(self.adaptive_rho),
            adaptive_rho_tolerance=float(self.adaptive_rho_tolerance), adaptive_rho_rule=self.adaptive_rho_rule,
            check_interval=int(self.check_interval), adaptive_rho_interval=int(self.adaptive_rho_interval),
            polish=bool(self.polish), polish_delta=float(self.polish_delta), polish_refine=int(self.polish_refine),
            unrolled=self.differentiation == "unrolled", bounds=problem.has_bounds,
            batch_chunk=_default_batch_chunk(n) if self.batch_chunk is None else int(self.batch_chunk),
        )  # fmt: skip

    def run(self, problem: QPProblem, warm_start: WarmStart | None) -> QPSolution:
        settings = self._settings(problem)
        n, m, dtype = problem.n, problem.m, problem.q.dtype
        lb = problem.lb if problem.has_bounds else jnp.full(n, -jnp.inf, dtype)
        ub = problem.ub if problem.has_bounds else jnp.full(n, jnp.inf, dtype)
        rho0 = jnp.asarray(self.rho, dtype)
        if warm_start is None:
            x0, y0, yb0 = jnp.zeros(n, dtype), jnp.zeros(m, dtype), jnp.zeros(n, dtype)
        else:
            x0, y0, yb0 = warm_start.x, warm_start.y, warm_start.y_bound
            if isinstance(warm_start.state, ADMMState):
                rho0 = jnp.asarray(warm_start.state.rho, dtype)
        y0 = jnp.concatenate([y0, yb0]) if settings.bounds else y0
        args = (problem.P, problem.A, problem.q, problem.l, problem.u, lb, ub, x0, y0, rho0)
        if settings.unrolled:
            return _solve_single(settings, *args)
        return _batching_solver(settings)(*args)
