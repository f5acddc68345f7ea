"""A small twin-like step (Kalman filter + LQR) to export and serve: examples, tests, benchmarks.

For a ``LinearModel`` ``x⁺ = A x + B u + E d + w``, ``y = H x + v``, one step at time ``t``
with prior ``N(m, P)`` of the current state and measurement ``y`` (NaN = missing entry):

    S = H̃ P H̃ᵀ + R̃,   K = P H̃ᵀ S⁻¹,   r = ỹ − H̃ m                 (missing rows of H zeroed,
    m⁺ = m + K r,      P⁺ = (I − K H̃) P (I − K H̃)ᵀ + K R̃ Kᵀ        their R rows set to identity)
    u  = clip(u_ref − G (m⁺ − x_ref), u_min, u_max)                 (G: discrete LQR gain)
    m⁻ = A m⁺ + B u + E d(t),   P⁻ = A P⁺ Aᵀ + Q                    (next step's prior)

with the disturbance forecast ``d(t) = d_mean + d_amp · sin(2π t / period)`` (for the
building: a daily outdoor-temperature swing).  The state is a nested pytree of arrays
(:class:`DemoState`), like the twin's, so it exercises the export's flattening.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from ..control import lqr
from ..models import LinearModel


class Gaussian(eqx.Module):
    """Belief ``N(mean, cov)``: mean [n], covariance [n, n]."""

    mean: Float[Array, " n"]
    cov: Float[Array, "n n"]


class DemoState(eqx.Module):
    """Prior of the current state, the last input [m], the last normalised innovation² and the step count."""

    belief: Gaussian
    u: Float[Array, " m"]
    nis: Float[Array, ""]
    k: Int[Array, ""]


class KalmanLQRStep(eqx.Module):
    """``step(state, y, t) -> (u, state)``: Kalman update, clipped LQR law, Kalman predict (see module doc)."""

    model: LinearModel
    gain: Float[Array, "m n"]
    x_ref: Float[Array, " n"]
    u_ref: Float[Array, " m"]
    u_min: Float[Array, " m"]
    u_max: Float[Array, " m"]
    d_mean: Float[Array, " p"]
    d_amp: Float[Array, " p"]
    period: float = eqx.field(static=True)

    def __init__(self, model: LinearModel, x_ref, u_min, u_max, *, d_mean=None, d_amp=None, period=24.0,
                 state_weight=1.0, input_weight=0.1):
        """LQR weights ``state_weight·I``, ``input_weight·I``; the feed-forward ``u_ref`` solves
        ``(I−A) x_ref − E d_mean = B u_ref`` in the least-squares sense."""
        n, m, p = model.state_dim, model.input_dim, model.disturbance_dim
        self.model = model
        self.gain, _ = lqr(model.A, model.B, state_weight * jnp.eye(n), input_weight * jnp.eye(m))
        self.x_ref = jnp.broadcast_to(jnp.asarray(x_ref, model.A.dtype), (n,))
        self.d_mean = jnp.zeros(p) if d_mean is None else jnp.asarray(d_mean, model.A.dtype)
        self.d_amp = jnp.zeros(p) if d_amp is None else jnp.asarray(d_amp, model.A.dtype)
        rhs = self.x_ref - model.A @ self.x_ref - model.E @ self.d_mean
        self.u_ref = jnp.linalg.lstsq(model.B, rhs)[0]
        self.u_min = jnp.broadcast_to(jnp.asarray(u_min, model.A.dtype), (m,))
        self.u_max = jnp.broadcast_to(jnp.asarray(u_max, model.A.dtype), (m,))
        self.period = float(period)

    def init(self, mean0: Float[Array, " n"], cov0: Float[Array, "n n"]) -> DemoState:
        """Initial state: prior ``N(mean0, cov0)``, no input applied yet."""
        dtype = self.model.A.dtype
        return DemoState(
            Gaussian(jnp.asarray(mean0, dtype), jnp.asarray(cov0, dtype)),
            jnp.zeros(self.model.input_dim, dtype),
            jnp.asarray(jnp.nan, dtype),
            jnp.asarray(0, jnp.int32),
        )

    def disturbance(self, t: Float[Array, ""]) -> Float[Array, " p"]:
        return self.d_mean + self.d_amp * jnp.sin(2 * jnp.pi * t / self.period)

    def __call__(
        self, state: DemoState, y: Float[Array, " ny"], t: Float[Array, ""]
    ) -> tuple[Float[Array, " m"], DemoState]:
        model = self.model
        m, P = state.belief.mean, state.belief.cov
        seen = jnp.isfinite(y)
        H = jnp.where(seen[:, None], model.H, 0.0)
        R = jnp.where(seen[:, None] & seen[None, :], model.R, jnp.eye(y.shape[0], dtype=P.dtype))
        S = H @ P @ H.T + R
        r = jnp.where(seen, y, 0.0) - H @ m
        K = jnp.linalg.solve(S, H @ P).T
        I_KH = jnp.eye(m.shape[0], dtype=P.dtype) - K @ H
        m_post = m + K @ r
        P_post = I_KH @ P @ I_KH.T + K @ R @ K.T
        u = jnp.clip(self.u_ref - self.gain @ (m_post - self.x_ref), self.u_min, self.u_max)
        m_prior = model.transition(m_post, u, t, self.disturbance(t))
        P_prior = model.A @ P_post @ model.A.T + model.Q
        nis = r @ jnp.linalg.solve(S, r)
        return u, DemoState(Gaussian(m_prior, 0.5 * (P_prior + P_prior.T)), u, nis, state.k + 1)


def building_demo(zones: int = 3) -> tuple[KalmanLQRStep, DemoState]:
    """The building (``jtwin.models.library.building_model``) held at 21 °C, 0-10 kW heating per zone,
    outdoor temperature 5 ± 5 °C over a day, no sun; with an initial belief ``N(20 °C, I)``."""
    from ..models.library import building_model

    model = eqx.filter_jit(building_model)(zones)  # one compiled call instead of many eager ops (faster)
    step = KalmanLQRStep(model, 21.0, 0.0, 10.0, d_mean=[5.0, 0.0], d_amp=[5.0, 0.0])
    n = model.state_dim
    return step, step.init(jnp.full(n, 20.0), jnp.eye(n))
