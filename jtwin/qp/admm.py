"""OSQP's ADMM algorithm for dense convex QPs, in pure JAX.

Problem (``P`` symmetric positive semidefinite, bounds may be ``±inf``)::

    minimise  ½ xᵀP x + qᵀx    subject to  l ≤ A x ≤ u.

The iteration is OSQP's (Stellato et al., 2020) on the Ruiz-equilibrated data
(:mod:`jtwin.qp.scaling`).  With per-row step sizes ``R = diag(ρ)``::

    x̃ = (P + σI + AᵀRA)⁻¹ (σx − q + Aᵀ(Rz − y))      (one factorisation, reused)
    z̃ = A x̃
    x ← αx̃ + (1−α)x
    z ← Π_[l,u](αz̃ + (1−α)z + R⁻¹y)
    y ← y + R(αz̃ + (1−α)z − z_new)

``ρ_i`` is ``1e3·ρ`` on equality rows (``l_i = u_i``), ``1e-6`` on free rows and
``ρ`` otherwise.  Every ``check_interval`` iterations (a fixed, deterministic
schedule) the solver evaluates OSQP's unscaled termination test

    ‖Ax − z‖∞ ≤ ε_abs + ε_rel·max(‖Ax‖∞, ‖z‖∞)
    ‖Px + q + Aᵀy‖∞ ≤ ε_abs + ε_rel·max(‖Px‖∞, ‖Aᵀy‖∞, ‖q‖∞),

the infeasibility certificates of the last step ``δx``, ``δy``, and OSQP's
adaptive-ρ estimate ``ρ·√((r_prim/‖·‖)/(r_dual/‖·‖))``; when that differs from
``ρ`` by more than ``adaptive_rho_tolerance`` the KKT matrix is refactorised.

Batching: problems that share ``P`` and ``A`` (MPC, where only ``q, l, u``
move with the state) are solved together with **one** factorisation; under
``jax.vmap`` with unbatched ``P, A`` :func:`solve_qp` switches to that path
automatically (a ``custom_vmap`` rule).  Then ``ρ`` adapts from the batch's
geometric-mean residual ratio, termination and statuses stay per problem.
With batched ``P`` or ``A`` every problem gets its own factorisation.
"""

from __future__ import annotations

import dataclasses
import functools

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.custom_batching import custom_vmap
from jaxtyping import Array, Bool, Float, Int

from .. import _checks
from .implicit import attach_kkt_gradient
from .scaling import Scaling, ruiz_equilibrate
from .status import DUAL_INFEASIBLE, MAX_ITER, NUMERICAL_ERROR, PRIMAL_INFEASIBLE, SOLVED

_RHO_MIN = 1e-6
_RHO_MAX = 1e6
_RHO_EQ_OVER_INEQ = 1e3
_TINY = 1e-30


@dataclasses.dataclass(frozen=True)
class ADMMSettings:
    """Static settings of the ADMM solver (hashable; defaults are OSQP's).

    ``check_interval`` is the fixed number of iterations between termination,
    infeasibility and adaptive-ρ checks.  ``polish`` runs OSQP's active-set
    polishing (one dense KKT solve with ``polish_refine`` refinement steps).
    ``unrolled`` replaces the early-stopping ``while_loop`` by a fixed-length
    ``fori_loop`` so reverse-mode autodiff can run through the iterations.
    """

    eps_abs: float = 1e-4
    eps_rel: float = 1e-4
    eps_pinf: float = 1e-4
    eps_dinf: float = 1e-4
    max_iter: int = 4000
    rho: float = 0.1
    sigma: float = 1e-6
    alpha: float = 1.6
    scaling: int = 10
    adaptive_rho: bool = True
    adaptive_rho_tolerance: float = 5.0
    check_interval: int = 25
    polish: bool = False
    polish_delta: float = 1e-6
    polish_refine: int = 3
    unrolled: bool = False


class QPSolution(eqx.Module):
    """Result of :func:`solve_qp` (unscaled).

    ``x`` [n] primal point, ``y`` [m] constraint multipliers (``y > 0`` on an
    active upper bound, ``< 0`` on an active lower bound), ``z`` [m] the
    projection of ``Ax`` onto ``[l, u]``; ``status`` an integer code from
    :mod:`jtwin.qp.status`; ``iterations`` the ADMM iterations run;
    ``primal_residual`` ``‖Ax − z‖∞`` and ``dual_residual`` ``‖Px + q + Aᵀy‖∞``;
    ``objective`` ``½xᵀPx + qᵀx``; ``rho`` the final (scalar) step size;
    ``polished`` whether active-set polishing was accepted.
    For infeasible problems ``x, y`` hold the last iterate (not a solution).
    """

    x: Float[Array, " n"]
    y: Float[Array, " m"]
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
    """Scaled data shared by a batch: ``P̄, Ā``, per-row ρ pattern and the scaling."""

    P: Array
    A: Array
    scaling: Scaling
    eq_rows: Array
    free_rows: Array

    def rho_vec(self, rho: Array) -> Array:
        return jnp.where(self.free_rows, _RHO_MIN, jnp.where(self.eq_rows, _RHO_EQ_OVER_INEQ * rho, rho))

    def kkt_inverse(self, rho: Array, sigma: float) -> Array:
        """``(P̄ + σI + ĀᵀRĀ)⁻¹`` from one Cholesky factorisation (dense, tiny systems)."""
        n = self.P.shape[0]
        K = self.P + sigma * jnp.eye(n, dtype=self.P.dtype) + (self.A.T * self.rho_vec(rho)) @ self.A
        factor = jax.scipy.linalg.cho_factor(K, lower=True)
        return jax.scipy.linalg.cho_solve(factor, jnp.eye(n, dtype=self.P.dtype))


def _setup(P, A, q, l, u, settings: ADMMSettings) -> _Scaled:
    sc = ruiz_equilibrate(P, A, q, settings.scaling)
    Ps = sc.c * sc.D[:, None] * P * sc.D[None, :]
    As = sc.E[:, None] * A * sc.D[None, :]
    eq_rows = jnp.all(l == u, axis=0) & jnp.all(jnp.isfinite(l), axis=0)
    free_rows = jnp.all(jnp.isneginf(l) & jnp.isposinf(u), axis=0)
    return _Scaled(P=Ps, A=As, scaling=sc, eq_rows=eq_rows, free_rows=free_rows)


# --------------------------------------------------------------------------- residuals


class _Residuals(eqx.Module):
    prim: Array
    dual: Array
    eps_prim: Array
    eps_dual: Array
    ratio: Array  # OSQP's normalised prim/dual ratio for the ρ estimate


def _residuals(sd: _Scaled, qs, X, Z, Y, settings: ADMMSettings) -> _Residuals:
    """Unscaled OSQP residuals of a batch of scaled iterates (rows of X, Z, Y)."""
    D, E, c = sd.scaling.D, sd.scaling.E, sd.scaling.c
    inf = lambda v: jnp.max(jnp.abs(v), axis=-1, initial=0.0)  # noqa: E731
    AX = (X @ sd.A.T) / E
    Zu = Z / E
    PX = (X @ sd.P) / (c * D)
    ATY = (Y @ sd.A) / (c * D)
    Qu = qs / (c * D)
    prim, norm_prim = inf(AX - Zu), jnp.maximum(inf(AX), inf(Zu))
    dual, norm_dual = inf(PX + Qu + ATY), jnp.maximum(jnp.maximum(inf(PX), inf(ATY)), inf(Qu))
    ratio = jnp.sqrt((prim / (norm_prim + _TINY)) / (dual / (norm_dual + _TINY) + _TINY) + _TINY)
    return _Residuals(
        prim=prim,
        dual=dual,
        eps_prim=settings.eps_abs + settings.eps_rel * norm_prim,
        eps_dual=settings.eps_abs + settings.eps_rel * norm_dual,
        ratio=ratio,
    )


def _primal_infeasible(sd: _Scaled, l, u, dY, eps: float) -> Array:
    """OSQP's certificate on the unscaled step ``δy``: ``‖Aᵀδy‖ ≤ ε‖δy‖``, ``uᵀδy⁺ + lᵀδy⁻ ≤ −ε‖δy‖``."""
    dy = dY * sd.scaling.E  # unscaled direction (up to the positive factor 1/c)
    lo_fin, up_fin = jnp.isfinite(l), jnp.isfinite(u)
    # project onto the polar of the recession cone of [l, u]
    dy = jnp.where(up_fin, dy, jnp.minimum(dy, 0.0))
    dy = jnp.where(lo_fin, dy, jnp.maximum(dy, 0.0))
    norm = jnp.max(jnp.abs(dy), axis=-1)
    support = jnp.sum(jnp.where(up_fin, u, 0.0) * jnp.maximum(dy, 0.0), axis=-1) + jnp.sum(
        jnp.where(lo_fin, l, 0.0) * jnp.minimum(dy, 0.0), axis=-1
    )
    aty = jnp.max(jnp.abs((dY @ sd.A) / sd.scaling.D), axis=-1, initial=0.0)
    return (norm > _TINY) & (aty <= eps * norm) & (support <= -eps * norm)


def _dual_infeasible(sd: _Scaled, qs, l, u, dX, eps: float) -> Array:
    """OSQP's certificate on ``δx``: ``‖Pδx‖ ≤ ε‖δx‖``, ``qᵀδx ≤ −ε‖δx‖``, ``Aδx`` in the recession cone."""
    D, E, c = sd.scaling.D, sd.scaling.E, sd.scaling.c
    norm = jnp.max(jnp.abs(dX * D), axis=-1)
    pdx = jnp.max(jnp.abs((dX @ sd.P) / (c * D)), axis=-1)
    qdx = jnp.sum(qs * dX, axis=-1) / c
    adx = (dX @ sd.A.T) / E
    tol = eps * norm[..., None]
    cone = jnp.all(
        jnp.where(jnp.isfinite(u), adx <= tol, True) & jnp.where(jnp.isfinite(l), adx >= -tol, True), axis=-1
    )
    return (norm > _TINY) & (pdx <= eps * norm) & (qdx <= -eps * norm) & cone


# --------------------------------------------------------------------------- iteration


class _State(eqx.Module):
    X: Array
    Z: Array
    Y: Array
    rho: Array
    Kinv: Array
    done: Array
    status: Array
    iters: Array
    k: Array


def _admm_step(sd: _Scaled, qs, ls, us, Kinv, R, sigma: float, alpha: float, X, Z, Y):
    rhs = sigma * X - qs + (R * Z - Y) @ sd.A
    Xt = rhs @ Kinv
    Zt = Xt @ sd.A.T
    Xn = alpha * Xt + (1.0 - alpha) * X
    Zr = alpha * Zt + (1.0 - alpha) * Z
    Zn = jnp.clip(Zr + Y / R, ls, us)
    Yn = Y + R * (Zr - Zn)
    return Xn, Zn, Yn


def _block(sd: _Scaled, qs, l, u, ls, us, settings: ADMMSettings, st: _State) -> _State:
    """``check_interval`` ADMM iterations, then the checks (termination, infeasibility, ρ)."""
    R = sd.rho_vec(st.rho)
    live = lambda i: (~st.done & (st.k + i < settings.max_iter))[:, None]  # noqa: E731

    def body(i, carry):
        X, Z, Y, _, _ = carry
        Xn, Zn, Yn = _admm_step(sd, qs, ls, us, st.Kinv, R, settings.sigma, settings.alpha, X, Z, Y)
        on = live(i)
        return jnp.where(on, Xn, X), jnp.where(on, Zn, Z), jnp.where(on, Yn, Y), X, Y

    X, Z, Y, Xp, Yp = jax.lax.fori_loop(0, settings.check_interval, body, (st.X, st.Z, st.Y, st.X, st.Y))
    k = jnp.minimum(st.k + settings.check_interval, settings.max_iter)

    res = _residuals(sd, qs, X, Z, Y, settings)
    solved = (res.prim <= res.eps_prim) & (res.dual <= res.eps_dual)
    pinf = _primal_infeasible(sd, l, u, Y - Yp, settings.eps_pinf)
    dinf = _dual_infeasible(sd, qs, l, u, X - Xp, settings.eps_dinf)
    finite = jnp.all(jnp.isfinite(X), -1) & jnp.all(jnp.isfinite(Y), -1) & jnp.all(jnp.isfinite(Z), -1)
    code = jnp.where(
        ~finite,
        NUMERICAL_ERROR,
        jnp.where(solved, SOLVED, jnp.where(pinf, PRIMAL_INFEASIBLE, jnp.where(dinf, DUAL_INFEASIBLE, 0))),
    )
    newly = ~st.done & (code > 0)
    X, Z, Y = (jnp.where(finite[:, None], V, 0.0) for V in (X, Z, Y))
    done = st.done | newly
    status = jnp.where(newly, code, st.status)
    iters = jnp.where(st.done, st.iters, k)

    rho, Kinv = st.rho, st.Kinv
    if settings.adaptive_rho:
        active = ~done & finite
        logs = jnp.where(active, jnp.log(res.ratio), 0.0)
        mean_log = jnp.sum(logs) / jnp.maximum(jnp.sum(active), 1)
        rho_new = jax.lax.stop_gradient(jnp.clip(st.rho * jnp.exp(mean_log), _RHO_MIN, _RHO_MAX))
        tol = settings.adaptive_rho_tolerance
        change = jnp.any(active) & ((rho_new > tol * st.rho) | (rho_new < st.rho / tol))
        rho = jnp.where(change, rho_new, st.rho)
        Kinv = jax.lax.cond(change, lambda: sd.kkt_inverse(rho_new, settings.sigma), lambda: st.Kinv)
    return _State(X=X, Z=Z, Y=Y, rho=rho, Kinv=Kinv, done=done, status=status, iters=iters, k=k)


# --------------------------------------------------------------------------- polishing


def _polish_one(sd: _Scaled, qs, ls, us, x, z, y, settings: ADMMSettings):
    """OSQP polishing of one scaled solution: solve the KKT system of the guessed active set.

    Inactive rows are kept in a fixed-size system with the equation ``y_i = 0``,
    so the shapes are static.  Returns scaled ``(x, z, y)``.
    """
    n, m = x.shape[0], z.shape[0]
    lower = (z - ls < -y) & jnp.isfinite(ls)
    upper = (us - z < y) & jnp.isfinite(us)
    act = (lower | upper).astype(x.dtype)
    bound = jnp.where(lower, ls, jnp.where(upper, us, 0.0))
    delta = settings.polish_delta
    top = jnp.concatenate([sd.P, sd.A.T * act], axis=1)
    K_true = jnp.concatenate([top, jnp.concatenate([act[:, None] * sd.A, jnp.diag(act - 1.0)], axis=1)], axis=0)
    reg = jnp.concatenate([jnp.full(n, delta), -delta * act])
    K_reg = K_true + jnp.diag(reg).astype(x.dtype)
    rhs = jnp.concatenate([-qs, act * bound])
    lu = jax.scipy.linalg.lu_factor(K_reg)
    sol = jax.scipy.linalg.lu_solve(lu, rhs)
    for _ in range(settings.polish_refine):  # iterative refinement towards the unregularised system
        sol = sol + jax.scipy.linalg.lu_solve(lu, rhs - K_true @ sol)
    xp, yp = sol[:n], sol[n:] * act
    zp = jnp.clip(sd.A @ xp, ls, us)
    return xp, zp, yp


# --------------------------------------------------------------------------- driver


def _solve_batch(settings: ADMMSettings, P, A, q, l, u, x0, y0):
    """Solve a batch (leading axis) of QPs that share ``P`` and ``A`` with one factorisation."""
    dtype = P.dtype
    sd = _setup(P, A, q, l, u, settings)
    D, E, c = sd.scaling.D, sd.scaling.E, sd.scaling.c
    qs, ls, us = c * D * q, E * l, E * u
    Xs = x0 / D
    Ys = c * y0 / E
    Zs = jnp.clip(Xs @ sd.A.T, ls, us)
    rho0 = jnp.asarray(settings.rho, dtype)
    B = q.shape[0]
    st = _State(
        X=Xs,
        Z=Zs,
        Y=Ys,
        rho=rho0,
        Kinv=sd.kkt_inverse(rho0, settings.sigma),
        done=jnp.zeros(B, bool),
        status=jnp.zeros(B, jnp.int32),
        iters=jnp.zeros(B, jnp.int32),
        k=jnp.zeros((), jnp.int32),
    )
    step = functools.partial(_block, sd, qs, l, u, ls, us, settings)
    if settings.unrolled:
        n_blocks = -(-settings.max_iter // settings.check_interval)
        st = jax.lax.fori_loop(0, n_blocks, lambda _, s: step(s), st)
    else:
        st = jax.lax.while_loop(lambda s: (s.k < settings.max_iter) & ~jnp.all(s.done), step, st)
    status = jnp.where(st.done, st.status, MAX_ITER)
    X, Z, Y = st.X, st.Z, st.Y

    polished = jnp.zeros(B, bool)
    if settings.polish:
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
    x = X * D
    y = Y * E / c
    z = Z / E
    objective = 0.5 * jnp.sum(x * (x @ P.T), -1) + jnp.sum(q * x, -1)
    return QPSolution(
        x=x,
        y=y,
        z=z,
        status=status,
        iterations=st.iters,
        primal_residual=res.prim,
        dual_residual=res.dual,
        objective=objective,
        rho=jnp.broadcast_to(st.rho, (B,)),
        polished=polished,
    )


def _solve_single(settings, P, A, q, l, u, x0, y0) -> QPSolution:
    batch = _solve_batch(settings, P, A, q[None], l[None], u[None], x0[None], y0[None])
    return jax.tree.map(lambda v: v[0], batch)


@functools.lru_cache(maxsize=None)
def _batching_solver(settings: ADMMSettings):
    """``_solve_single`` whose ``vmap`` shares one factorisation when ``P`` and ``A`` are unbatched."""

    @custom_vmap
    def solver(P, A, q, l, u, x0, y0):
        return _solve_single(settings, P, A, q, l, u, x0, y0)

    @solver.def_vmap
    def _rule(axis_size, in_batched, P, A, q, l, u, x0, y0):
        P_b, A_b, *rest_b = in_batched
        if not (P_b or A_b):
            vecs = [v if b else jnp.broadcast_to(v, (axis_size,) + v.shape) for v, b in zip((q, l, u, x0, y0), rest_b)]
            out = _solve_batch(settings, P, A, *vecs)
        else:
            axes = tuple(0 if b else None for b in in_batched)
            out = jax.vmap(functools.partial(_solve_single, settings), in_axes=axes)(P, A, q, l, u, x0, y0)
        return out, jax.tree.map(lambda _: True, out)

    return solver


# --------------------------------------------------------------------------- public entry point


@functools.partial(jax.jit, static_argnames=("settings",))
def _solve(P, q, A, l, u, x0, y0, settings: ADMMSettings) -> QPSolution:
    if settings.unrolled:
        return _solve_single(settings, P, A, q, l, u, x0, y0)
    sg = jax.lax.stop_gradient
    sol = _batching_solver(settings)(*(sg(v) for v in (P, A, q, l, u, x0, y0)))
    x, y = attach_kkt_gradient(P, q, A, l, u, sol.x, sol.y, sol.status == SOLVED)
    objective = 0.5 * x @ (P @ x) + q @ x
    return eqx.tree_at(lambda s: (s.x, s.y, s.objective), sol, (x, y, objective))


def _validate(P, q, A, l, u, warm_start):
    P = _checks.as_array("P", P, (None, None))
    n = P.shape[0]
    P = _checks.as_array("P", P, (n, n))
    q = _checks.as_array("q", q, (n,))
    A = _checks.as_array("A", A, (None, n))
    m = A.shape[0]
    l = _checks.as_array("l", l, (m,), finite=False)
    u = _checks.as_array("u", u, (m,), finite=False)
    if _checks.is_concrete(l) and _checks.is_concrete(u):
        if bool(jnp.any(jnp.isnan(l)) | jnp.any(jnp.isnan(u))):
            raise ValueError("l, u: bounds contain NaN; use ±inf for absent bounds")
        if bool(jnp.any(l > u)):
            raise ValueError(f"l, u: need l <= u elementwise; violated at rows {jnp.nonzero(l > u)[0].tolist()}")
    dtype = jnp.result_type(P, q, A, l, u)
    P, q, A, l, u = (v.astype(dtype) for v in (P, q, A, l, u))
    if warm_start is None:
        x0, y0 = jnp.zeros(n, dtype), jnp.zeros(m, dtype)
    else:
        x0, y0 = (warm_start.x, warm_start.y) if isinstance(warm_start, QPSolution) else warm_start
        x0 = _checks.as_array("warm_start.x", x0, (n,)).astype(dtype)
        y0 = _checks.as_array("warm_start.y", y0, (m,)).astype(dtype)
    return P, q, A, l, u, x0, y0


def solve_qp(
    P: Float[Array, "n n"],
    q: Float[Array, " n"],
    A: Float[Array, "m n"],
    l: Float[Array, " m"],
    u: Float[Array, " m"],
    *,
    eps_abs: float = 1e-4,
    eps_rel: float = 1e-4,
    max_iter: int = 4000,
    warm_start: QPSolution | tuple[Array, Array] | None = None,
    polish: bool = False,
    differentiation: str = "implicit",
    rho: float = 0.1,
    sigma: float = 1e-6,
    alpha: float = 1.6,
    adaptive_rho: bool = True,
    check_interval: int = 25,
    scaling: int = 10,
    eps_pinf: float = 1e-4,
    eps_dinf: float = 1e-4,
) -> QPSolution:
    """Solve ``min ½xᵀPx + qᵀx  s.t.  l ≤ Ax ≤ u`` with OSQP's ADMM on dense arrays.

    Shapes: ``P`` [n, n] symmetric PSD, ``q`` [n], ``A`` [m, n], ``l, u`` [m]
    (``±inf`` for absent bounds, ``l_i = u_i`` for equalities).  Defaults match
    OSQP (ρ=0.1, σ=1e-6, α=1.6, 10 Ruiz passes, adaptive ρ with tolerance 5),
    except that ρ adapts and termination is checked on a fixed schedule of
    ``check_interval`` iterations (deterministic; OSQP's default is time based).

    ``warm_start``: a previous :class:`QPSolution` or a pair ``(x, y)``.
    ``differentiation``: ``"implicit"`` (default; the forward solve stops
    early and reverse-mode gradients w.r.t. ``P, q, A, l, u`` come from the
    KKT conditions at the active set, :mod:`jtwin.qp.implicit`) or
    ``"unrolled"`` (always runs ``max_iter`` iterations, rounded up to a
    multiple of ``check_interval``, frozen after convergence, and autodiff
    runs through them; keep ``max_iter`` modest).

    jit- and vmap-able.  Under ``jax.vmap`` with unbatched ``P`` and ``A``
    (only ``q, l, u`` or the warm start batched) the batch shares one KKT
    factorisation and ρ adapts batch-wide; statuses stay per problem.
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
    if max_iter < 1 or check_interval < 1:
        raise ValueError(f"max_iter, check_interval: expected positive integers, got {max_iter}, {check_interval}")
    settings = ADMMSettings(
        eps_abs=float(eps_abs),
        eps_rel=float(eps_rel),
        eps_pinf=float(eps_pinf),
        eps_dinf=float(eps_dinf),
        max_iter=int(max_iter),
        rho=float(rho),
        sigma=float(sigma),
        alpha=float(alpha),
        scaling=int(scaling),
        adaptive_rho=bool(adaptive_rho),
        check_interval=int(check_interval),
        polish=bool(polish),
        unrolled=differentiation == "unrolled",
    )
    return _solve(*_validate(P, q, A, l, u, warm_start), settings=settings)
