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
solver evaluates OSQP's unscaled termination test

    ‖Ax − z‖∞ ≤ ε_abs + ε_rel·max(‖Ax‖∞, ‖z‖∞)
    ‖Px + q + Aᵀy‖∞ ≤ ε_abs + ε_rel·max(‖Px‖∞, ‖Aᵀy‖∞, ‖q‖∞)

and the infeasibility certificates of the last step ``δx``, ``δy``.  Every
``adaptive_rho_interval`` iterations it forms OSQP's estimate
``ρ·√((r_prim/‖·‖)/(r_dual/‖·‖))``; when that differs from ``ρ`` by more than
``adaptive_rho_tolerance`` the KKT matrix is refactorised.

Batching: problems that share ``P`` and ``A`` (MPC, where only ``q, l, u``
move with the state) are solved together with **one** factorisation per ρ;
under ``jax.vmap`` with unbatched ``P, A`` :func:`solve_qp` switches to that
path automatically (a ``custom_vmap`` rule).  The batch is cut into chunks of
``batch_chunk`` problems, run one after the other: each chunk's loop stops when
its own problems are done, and ρ adapts per chunk from the chunk's
geometric-mean residual ratio.  The default chunk holds about 16,384
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
from jaxtyping import Array, Bool, Float, Int

from .. import _checks
from .implicit import attach_kkt_gradient, refined_solve
from .scaling import Scaling, ruiz_equilibrate
from .status import DUAL_INFEASIBLE, MAX_ITER, NUMERICAL_ERROR, PRIMAL_INFEASIBLE, SOLVED

_RHO_MIN = 1e-6
_RHO_MAX = 1e6
_RHO_EQ_OVER_INEQ = 1e3
ADAPTIVE_RHO_RULES = ("osqp", "residual")  # ρ estimate: OSQP's normalised residual ratio, or the plain one
_TINY = 1e-30


@dataclasses.dataclass(frozen=True)
class ADMMSettings:
    """Static settings of the ADMM solver (hashable; defaults are OSQP's unless noted).

    ``check_interval`` is the fixed number of iterations between termination
    and infeasibility checks; ``adaptive_rho_interval`` (a multiple of it) the
    number between ρ estimates.  ``polish`` runs OSQP's active-set polishing
    (one dense KKT solve with ``polish_refine`` refinement steps).
    ``unrolled`` replaces the early-stopping ``while_loop`` by a fixed-length
    ``fori_loop`` so reverse-mode autodiff can run through the iterations.
    ``bounds``: the problem has variable bounds ``lb ≤ x ≤ ub`` (diagonal rows).
    ``batch_chunk``: problems per chunk on the shared-matrix batch path.
    ``adaptive_rho_rule``: ``"osqp"`` (OSQP's normalised residual ratio) or ``"residual"``
    (the plain ratio ``√(‖r_prim‖∞/‖r_dual‖∞)`` of Boyd et al.'s residual balancing).
    """

    eps_abs: float = 1e-4
    eps_rel: float = 1e-4
    eps_pinf: float = 1e-4
    eps_dinf: float = 1e-4
    max_iter: int = 4000
    sigma: float = 1e-6
    alpha: float = 1.6
    scaling: int = 10
    adaptive_rho: bool = True
    adaptive_rho_tolerance: float = 5.0
    adaptive_rho_rule: str = "osqp"
    check_interval: int = 25
    adaptive_rho_interval: int = 25
    polish: bool = False
    polish_delta: float = 1e-6
    polish_refine: int = 3
    unrolled: bool = False
    bounds: bool = False
    batch_chunk: int = 256


class QPSolution(eqx.Module):
    """Result of :func:`solve_qp` (unscaled).

    ``x`` [n] primal point, ``y`` [m] constraint multipliers (``y > 0`` on an
    active upper bound, ``< 0`` on an active lower bound), ``y_bound`` [n] the
    multipliers of the variable bounds ``lb ≤ x ≤ ub`` (zero without bounds),
    ``z`` [m] the projection of ``Ax`` onto ``[l, u]``; ``status`` an integer
    code from :mod:`jtwin.qp.status`; ``iterations`` the ADMM iterations run;
    ``primal_residual`` ``‖Cx − z‖∞`` and ``dual_residual``
    ``‖Px + q + Cᵀ[y; y_bound]‖∞``; ``objective`` ``½xᵀPx + qᵀx``; ``rho`` the
    final (scalar) step size; ``polished`` whether
    active-set polishing was accepted.
    For infeasible problems ``x, y`` hold the last iterate (not a solution).
    """

    x: Float[Array, " n"]
    y: Float[Array, " m"]
    y_bound: Float[Array, " n"]
    z: Float[Array, " m"]
    status: Int[Array, ""]
    iterations: Int[Array, ""]
    primal_residual: Float[Array, ""]
    dual_residual: Float[Array, ""]
    objective: Float[Array, ""]
    rho: Float[Array, ""]
    polished: Bool[Array, ""]


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


def _setup(P, A, q, l_rows, u_rows, settings: ADMMSettings) -> _Scaled:
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
    eps_prim: Array
    eps_dual: Array
    ratio: Array  # the factor of the ρ estimate: √(prim/dual), normalised as OSQP does for adaptive_rho_rule="osqp"


def _residuals(sd: _Scaled, qs, X, Z, Y, settings: ADMMSettings) -> _Residuals:
    """Unscaled OSQP residuals of a batch of scaled iterates (rows of X, Z, Y)."""
    D, E, c = sd.scaling.D, sd.scaling.E, sd.scaling.c
    inf = lambda v: jnp.max(jnp.abs(v), axis=-1, initial=0.0)  # noqa: E731
    CX = sd.rows(X) / E
    Zu = Z / E
    PX = (X @ sd.P) / (c * D)
    CTY = sd.cols(Y) / (c * D)
    Qu = qs / (c * D)
    prim, norm_prim = inf(CX - Zu), jnp.maximum(inf(CX), inf(Zu))
    dual, norm_dual = inf(PX + Qu + CTY), jnp.maximum(jnp.maximum(inf(PX), inf(CTY)), inf(Qu))
    if settings.adaptive_rho_rule == "osqp":
        ratio = jnp.sqrt((prim / (norm_prim + _TINY)) / (dual / (norm_dual + _TINY) + _TINY) + _TINY)
    else:  # "residual": balance the residuals themselves
        ratio = jnp.sqrt(prim / (dual + _TINY) + _TINY)
    return _Residuals(
        prim=prim,
        dual=dual,
        eps_prim=settings.eps_abs + settings.eps_rel * norm_prim,
        eps_dual=settings.eps_abs + settings.eps_rel * norm_dual,
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
    support = jnp.sum(jnp.where(up_fin, u, 0.0) * jnp.maximum(dy, 0.0), axis=-1) + jnp.sum(
        jnp.where(lo_fin, l, 0.0) * jnp.minimum(dy, 0.0), axis=-1
    )
    cty = jnp.max(jnp.abs(sd.cols(dY) / sd.scaling.D), axis=-1, initial=0.0)
    return (norm > _TINY) & (cty <= eps * norm) & (support <= -eps * norm)


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


def _iterate(data: _Data, Kinv, R, settings: ADMMSettings, count: int, X, V):
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
    k: Array


def _infeasibility_and_rho(data: _Data, settings: ADMMSettings, st: _State, res, active, X, Y, Xp, Yp):
    """Every ``adaptive_rho_interval`` iterations: infeasibility codes [B] and, if warranted, a new ρ."""
    sd = data.sd
    l, u = data.full(data.l), data.full(data.u)
    pinf = _primal_infeasible(sd, l, u, Y - Yp, settings.eps_pinf)
    dinf = _dual_infeasible(sd, data.qs, l, u, X - Xp, settings.eps_dinf)
    code = jnp.where(pinf, PRIMAL_INFEASIBLE, jnp.where(dinf, DUAL_INFEASIBLE, 0)).astype(jnp.int32)
    if not settings.adaptive_rho:
        return code, st.rho, st.Kinv
    active = active & (code == 0)
    logs = jnp.where(active, jnp.log(res.ratio), 0.0)
    mean_log = jnp.sum(logs) / jnp.maximum(jnp.sum(active), 1)
    rho_new = jax.lax.stop_gradient(jnp.clip(st.rho * jnp.exp(mean_log), _RHO_MIN, _RHO_MAX))
    tol = settings.adaptive_rho_tolerance
    change = jnp.any(active) & ((rho_new > tol * st.rho) | (rho_new < st.rho / tol))
    rho = jnp.where(change, rho_new, st.rho)
    Kinv = jax.lax.cond(change, lambda: sd.kkt_inverse(rho_new, settings.sigma), lambda: st.Kinv)
    return code, rho, Kinv


def _block(data: _Data, settings: ADMMSettings, count: int, st: _State) -> _State:
    """``count`` ADMM iterations, then the termination check; on the ρ schedule also the
    infeasibility certificates and the ρ update (skipped by a ``cond`` otherwise)."""
    sd = data.sd
    R = sd.rho_vec(st.rho)
    X, V, Xp, Vp = _iterate(data, st.Kinv, R, settings, count, st.X, st.V)
    k = st.k + count
    Z, Y = _zy(data, R, V)
    res = _residuals(sd, data.qs, X, Z, Y, settings)
    solved = (res.prim <= res.eps_prim) & (res.dual <= res.eps_dual)
    finite = jnp.all(jnp.isfinite(X), -1) & jnp.all(jnp.isfinite(V), -1)
    active = ~st.done & finite & ~solved

    def heavy():
        return _infeasibility_and_rho(data, settings, st, res, active, X, Y, Xp, _zy(data, R, Vp)[1])

    def light():
        return jnp.zeros_like(st.status), st.rho, st.Kinv

    due = (k % settings.adaptive_rho_interval == 0) | (k >= settings.max_iter)
    infeasible, rho, Kinv = jax.lax.cond(due, heavy, light)
    code = jnp.where(~finite, NUMERICAL_ERROR, jnp.where(solved, SOLVED, infeasible))
    X, V, Z, Y = (jnp.where(finite[:, None], A_, 0.0) for A_ in (X, V, Z, Y))
    newly = (~st.done & (code > 0))[:, None]
    Xr, Zr, Yr = (jnp.where(newly, A_, Ar) for A_, Ar in ((X, st.Xr), (Z, st.Zr), (Y, st.Yr)))
    R_new = sd.rho_vec(rho)
    V = jnp.where(rho != st.rho, Z + Y / R_new, V)  # keep (z, y) when ρ changes
    return _State(
        X=X, V=V, Xr=Xr, Zr=Zr, Yr=Yr, rho=rho, Kinv=Kinv, done=st.done | (code > 0),
        status=jnp.where(st.done, st.status, code), iters=jnp.where(st.done, st.iters, k), k=k,
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


def _run(data: _Data, settings: ADMMSettings, X, Z, Y, rho) -> _Result:
    """The ADMM loop on one batch/chunk: full check blocks, then the remainder up to ``max_iter``."""
    B = X.shape[0]
    R = data.sd.rho_vec(rho)
    st = _State(
        X=X, V=Z + Y / R, Xr=X, Zr=Z, Yr=Y, rho=rho, Kinv=data.sd.kkt_inverse(rho, settings.sigma),
        done=jnp.zeros(B, bool), status=jnp.zeros(B, jnp.int32), iters=jnp.zeros(B, jnp.int32),
        k=jnp.zeros((), jnp.int32),
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
        iters=st.iters, rho=jnp.broadcast_to(st.rho, (B,)),
    )  # fmt: skip


def _run_chunked(data: _Data, settings: ADMMSettings, X, Z, Y, rho0) -> _Result:
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


def _polish_one(sd: _Scaled, qs, ls, us, x, z, y, settings: ADMMSettings):
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


# --------------------------------------------------------------------------- driver


def _solve_batch(settings: ADMMSettings, P, A, q, l, u, lb, ub, x0, y0, rho0):
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
    B = q.shape[0]
    status = jnp.where(st.done, st.status, MAX_ITER)
    X, Z, Y = st.X, st.Z, st.Y

    polished = jnp.zeros(B, bool)
    if settings.polish:
        ls, us = data.full(data.ls), data.full(data.us)
        Xp, Zp, Yp = jax.vmap(lambda *a: _polish_one(sd, *a, settings))(qs, ls, us, X, Z, Y)
        r_admm = _residuals(sd, qs, X, Z, Y, settings)
        r_pol = _residuals(sd, qs, Xp, Zp, Yp, settings)
        polished = (
            (status == SOLVED)
            & jnp.all(jnp.isfinite(Xp), -1)
            & (r_pol.prim <= jnp.maximum(r_admm.prim, r_admm.eps_prim))
            & (r_pol.dual <= jnp.maximum(r_admm.dual, r_admm.eps_dual))
        )
        X, Z, Y = (jnp.where(polished[:, None], new, old) for new, old in ((Xp, X), (Zp, Z), (Yp, Y)))

    res = _residuals(sd, qs, X, Z, Y, settings)
    m = A.shape[0]
    x = X * D
    y_all = Y * E / c
    z = Z[:, :m] / E[:m]
    y_bound = y_all[:, m:] if settings.bounds else jnp.zeros_like(x)
    objective = 0.5 * jnp.sum(x * (x @ P.T), -1) + jnp.sum(q * x, -1)
    return QPSolution(
        x=x,
        y=y_all[:, :m],
        y_bound=y_bound,
        z=z,
        status=status,
        iterations=st.iters,
        primal_residual=res.prim,
        dual_residual=res.dual,
        objective=objective,
        rho=st.rho,
        polished=polished,
    )


def _solve_single(settings, P, A, q, l, u, lb, ub, x0, y0, rho0) -> QPSolution:
    batch = _solve_batch(settings, P, A, *(v[None] for v in (q, l, u, lb, ub, x0, y0, rho0)))
    return jax.tree.map(lambda v: v[0], batch)


@functools.lru_cache(maxsize=None)
def _batching_solver(settings: ADMMSettings):
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


# --------------------------------------------------------------------------- public entry point


@functools.partial(jax.jit, static_argnames=("settings",))
def _solve(P, q, A, l, u, lb, ub, x0, y0, rho0, settings: ADMMSettings) -> QPSolution:
    sg = jax.lax.stop_gradient
    m = A.shape[0]
    if settings.unrolled:
        return _solve_single(settings, P, A, q, l, u, lb, ub, x0, y0, rho0)
    sol = _batching_solver(settings)(*(sg(v) for v in (P, A, q, l, u, lb, ub, x0, y0, rho0)))
    if settings.bounds:  # bound rows follow the dense rows
        l_all, u_all = jnp.concatenate([l, lb]), jnp.concatenate([u, ub])
        C = jnp.concatenate([A, jnp.eye(A.shape[1], dtype=A.dtype)])
        x, y_all = attach_kkt_gradient(P, q, C, l_all, u_all, sol.x, jnp.concatenate([sol.y, sol.y_bound]), sol.status == SOLVED)
        y, y_bound = y_all[:m], y_all[m:]
    else:
        x, y = attach_kkt_gradient(P, q, A, l, u, sol.x, sol.y, sol.status == SOLVED)
        y_bound = sol.y_bound
    objective = 0.5 * x @ (P @ x) + q @ x
    return eqx.tree_at(lambda s: (s.x, s.y, s.y_bound, s.objective), sol, (x, y, y_bound, objective))


def _default_batch_chunk(n: int) -> int:
    """Problems per chunk of a shared-matrix batch with ``n`` variables: the power of two
    nearest below ``16384 / n``, clipped to [32, 256] (see the module docstring)."""
    return int(np.clip(2 ** int(np.floor(np.log2(16384 / max(n, 1)))), 32, 256))


def _check_bounds(lo_name, hi_name, lo, hi):
    if _checks.is_concrete(lo) and _checks.is_concrete(hi):  # numpy: jnp ops on constants are staged under jit
        lo, hi = np.asarray(lo), np.asarray(hi)
        if np.isnan(lo).any() or np.isnan(hi).any():
            raise ValueError(f"{lo_name}, {hi_name}: bounds contain NaN; use ±inf for absent bounds")
        if np.any(lo > hi):
            bad = np.nonzero(lo > hi)[0].tolist()
            raise ValueError(f"{lo_name}, {hi_name}: need {lo_name} <= {hi_name} elementwise; violated at rows {bad}")


def _validate(P, q, A, l, u, lb, ub, warm_start, rho):
    P = _checks.as_array("P", P, (None, None))
    n = P.shape[0]
    P = _checks.as_array("P", P, (n, n))
    q = _checks.as_array("q", q, (n,))
    A = _checks.as_array("A", A, (None, n))
    m = A.shape[0]
    l = _checks.as_array("l", l, (m,), finite=False)
    u = _checks.as_array("u", u, (m,), finite=False)
    _check_bounds("l", "u", l, u)
    bounds = lb is not None or ub is not None
    lb = jnp.full(n, -jnp.inf) if lb is None else _checks.as_array("lb", lb, (n,), finite=False)
    ub = jnp.full(n, jnp.inf) if ub is None else _checks.as_array("ub", ub, (n,), finite=False)
    _check_bounds("lb", "ub", lb, ub)
    dtype = jnp.result_type(P, q, A, l, u, lb, ub)
    P, q, A, l, u, lb, ub = (v.astype(dtype) for v in (P, q, A, l, u, lb, ub))
    rho0 = jnp.asarray(rho, dtype)
    y_bound = jnp.zeros(n, dtype)
    if warm_start is None:
        x0, y0 = jnp.zeros(n, dtype), jnp.zeros(m, dtype)
    elif isinstance(warm_start, QPSolution):
        x0, y0, y_bound = warm_start.x, warm_start.y, warm_start.y_bound
    elif len(warm_start) in (2, 3, 4):
        x0, y0, *rest = warm_start
        y_bound = _checks.as_array("warm_start.y_bound", rest[0], (n,)) if rest else y_bound
        rho0 = _checks.as_array("warm_start.rho", rest[1], ()).astype(dtype) if len(rest) == 2 else rho0
    else:
        raise ValueError("warm_start: expected a QPSolution or a tuple (x, y), (x, y, y_bound) or (x, y, y_bound, rho)")
    x0 = _checks.as_array("warm_start.x", x0, (n,)).astype(dtype)
    y0 = _checks.as_array("warm_start.y", y0, (m,)).astype(dtype)
    y0 = jnp.concatenate([y0, y_bound.astype(dtype)]) if bounds else y0
    return (P, q, A, l, u, lb, ub, x0, y0, rho0), bounds


def solve_qp(
    P: Float[Array, "n n"],
    q: Float[Array, " n"],
    A: Float[Array, "m n"],
    l: Float[Array, " m"],
    u: Float[Array, " m"],
    *,
    lb: Float[Array, " n"] | None = None,
    ub: Float[Array, " n"] | None = None,
    eps_abs: float = 1e-4,
    eps_rel: float = 1e-4,
    max_iter: int = 4000,
    warm_start: QPSolution | tuple[Array, ...] | None = None,
    polish: bool = False,
    differentiation: str = "implicit",
    rho: float = 0.1,
    sigma: float = 1e-6,
    alpha: float = 1.6,
    adaptive_rho: bool = True,
    check_interval: int = 25,
    adaptive_rho_interval: int = 25,
    adaptive_rho_tolerance: float = 5.0,
    adaptive_rho_rule: str = "osqp",
    scaling: int = 10,
    eps_pinf: float = 1e-4,
    eps_dinf: float = 1e-4,
    batch_chunk: int | None = None,
) -> QPSolution:
    """Solve ``min ½xᵀPx + qᵀx  s.t.  l ≤ Ax ≤ u, lb ≤ x ≤ ub`` with OSQP's ADMM on dense arrays.

    Shapes: ``P`` [n, n] symmetric PSD, ``q`` [n], ``A`` [m, n], ``l, u`` [m]
    (``±inf`` for absent bounds, ``l_i = u_i`` for equalities), optional
    variable bounds ``lb, ub`` [n] (handled elementwise: cheaper than identity
    rows in ``A``; their multipliers are ``QPSolution.y_bound``).  Defaults
    match OSQP (ρ=0.1, σ=1e-6, α=1.6, 10 Ruiz passes, adaptive ρ with
    tolerance 5), except that termination is checked every
    ``check_interval`` iterations and ρ re-estimated every
    ``adaptive_rho_interval`` iterations (a deterministic schedule; OSQP's
    default is time based); the KKT matrix is refactorised when the new
    estimate differs from ρ by more than a factor ``adaptive_rho_tolerance``
    (OSQP's 5; smaller values follow the estimate more closely, which helps
    problems whose estimate settles within that factor of a poor ρ).
    ``adaptive_rho_rule``: the estimate ``ρ·√(r_prim/r_dual)`` with OSQP's normalised
    residuals (``"osqp"``, default) or the plain ones (``"residual"``, classic
    residual balancing; much faster on MPC QPs with large linear penalties such
    as the building twin's, see the README).

    ``warm_start``: a previous :class:`QPSolution` (its ``x, y, y_bound``) or a
    tuple ``(x, y)``, ``(x, y, y_bound)`` or ``(x, y, y_bound, rho)``; the last
    also restarts from step size ``rho`` (e.g. a previous solve's final
    ``QPSolution.rho``, as OSQP's solver object keeps ρ between solves).
    ``differentiation``: ``"implicit"`` (default; the forward solve stops
    early and reverse-mode gradients w.r.t. ``P, q, A, l, u, lb, ub`` come from
    the KKT conditions at the active set, :mod:`jtwin.qp.implicit`) or
    ``"unrolled"`` (always runs ``max_iter`` iterations, frozen after
    convergence, and autodiff runs through them; keep ``max_iter`` modest).

    jit- and vmap-able.  Under ``jax.vmap`` with unbatched ``P`` and ``A``
    (only ``q, l, u, lb, ub`` or the warm start batched) the batch shares one
    KKT factorisation per ρ, in chunks of ``batch_chunk`` problems whose ρ
    adapts chunk-wide (default: about 16,384 problem-variables per chunk,
    between 32 and 256 problems); statuses stay per problem.
    Inputs are validated here (ValueError naming the argument); inside the
    solve, failures are reported through ``status`` (:mod:`jtwin.qp.status`).
    """
    if differentiation not in ("implicit", "unrolled"):
        raise ValueError(f"differentiation: expected 'implicit' or 'unrolled', got {differentiation!r}")
    for name, value in (("eps_abs", eps_abs), ("eps_rel", eps_rel), ("rho", rho), ("sigma", sigma)):
        if not value >= 0 or (name in ("rho", "sigma") and not value > 0):
            raise ValueError(f"{name}: expected a {'positive' if name in ('rho', 'sigma') else 'non-negative'} number, got {value}")
    if not 0.0 < alpha < 2.0:
        raise ValueError(f"alpha: over-relaxation must lie in (0, 2), got {alpha}")
    if min(max_iter, check_interval, adaptive_rho_interval, 1 if batch_chunk is None else batch_chunk) < 1:
        raise ValueError(
            "max_iter, check_interval, adaptive_rho_interval, batch_chunk: expected positive integers, got "
            f"{max_iter}, {check_interval}, {adaptive_rho_interval}, {batch_chunk}"
        )
    if adaptive_rho_rule not in ADAPTIVE_RHO_RULES:
        raise ValueError(f"adaptive_rho_rule: expected one of {list(ADAPTIVE_RHO_RULES)}, got {adaptive_rho_rule!r}")
    if not adaptive_rho_tolerance >= 1.0:
        raise ValueError(f"adaptive_rho_tolerance: expected a number >= 1, got {adaptive_rho_tolerance}")
    if adaptive_rho_interval % check_interval:
        raise ValueError(
            f"adaptive_rho_interval: must be a multiple of check_interval={check_interval}, got {adaptive_rho_interval}"
        )
    args, bounds = _validate(P, q, A, l, u, lb, ub, warm_start, rho)
    settings = ADMMSettings(
        eps_abs=float(eps_abs),
        eps_rel=float(eps_rel),
        eps_pinf=float(eps_pinf),
        eps_dinf=float(eps_dinf),
        max_iter=int(max_iter),
        sigma=float(sigma),
        alpha=float(alpha),
        scaling=int(scaling),
        adaptive_rho=bool(adaptive_rho),
        check_interval=int(check_interval),
        adaptive_rho_interval=int(adaptive_rho_interval),
        adaptive_rho_tolerance=float(adaptive_rho_tolerance),
        adaptive_rho_rule=adaptive_rho_rule,
        polish=bool(polish),
        unrolled=differentiation == "unrolled",
        bounds=bounds,
        batch_chunk=_default_batch_chunk(args[0].shape[0]) if batch_chunk is None else int(batch_chunk),
    )
    return _solve(*args, settings=settings)
