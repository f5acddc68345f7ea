"""Manufacturing: a non-isothermal continuous stirred-tank reactor (CSTR), first-order exothermic A → B.

Units: minutes, litres, mol, kelvin, joules (Seborg et al., *Process Dynamics and Control*; Henson & Seborg)::

    dCa/dt = q/V (Caf + d1 - Ca) - k0 exp(-E/(R T)) Ca
    dT/dt  = q/V (Tf + d2 - T) + (-ΔH)/(ρ Cp) k0 exp(-E/(R T)) Ca + UA/(V ρ Cp) (Tc - T)

State ``x = (Ca [mol/L], T [K])``, input ``u = (Tc,)`` coolant temperature [K], disturbances
``d = (d1, d2)``: deviations of feed concentration [mol/L] and feed temperature [K].
Measured: the reactor temperature T (and Ca with ``measure_concentration=True``).
At Tc = 300 K the nominal steady state is about (Ca, T) = (0.5, 350).
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._positive import positive, unconstrained
from ..ode import ODEModel


class CSTRDynamics(eqx.Module):
    """The CSTR vector field ``(t, x, u, d) -> dx/dt``; positive parameters stored as logs (learnable)."""

    log_k0: Float[Array, ""]
    log_e_over_r: Float[Array, ""]
    log_ua: Float[Array, ""]
    log_neg_dh: Float[Array, ""]
    q: float = eqx.field(static=True)
    volume: float = eqx.field(static=True)
    caf: float = eqx.field(static=True)
    tf: float = eqx.field(static=True)
    rho: float = eqx.field(static=True)
    cp: float = eqx.field(static=True)

    def __init__(
        self,
        k0=7.2e10,
        e_over_r=8750.0,
        ua=5.0e4,
        neg_dh=5.0e4,
        q=100.0,
        volume=100.0,
        caf=1.0,
        tf=350.0,
        rho=1000.0,
        cp=0.239,
    ):
        self.log_k0 = unconstrained("k0", k0)
        self.log_e_over_r = unconstrained("e_over_r", e_over_r)
        self.log_ua = unconstrained("ua", ua)
        self.log_neg_dh = unconstrained("neg_dh", neg_dh)
        for name, v in dict(q=q, volume=volume, rho=rho, cp=cp, tf=tf).items():
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"{name}: expected a finite positive value, got {v!r}")
        self.q, self.volume, self.caf, self.tf, self.rho, self.cp = map(float, (q, volume, caf, tf, rho, cp))

    def __call__(self, t, x, u, d):
        ca, temp = x[0], x[1]
        rate = positive(self.log_k0) * jnp.exp(-positive(self.log_e_over_r) / temp) * ca
        dilution = self.q / self.volume
        dca = dilution * (self.caf + d[0] - ca) - rate
        dtemp = (
            dilution * (self.tf + d[1] - temp)
            + positive(self.log_neg_dh) / (self.rho * self.cp) * rate
            + positive(self.log_ua) / (self.volume * self.rho * self.cp) * (u[0] - temp)
        )
        return jnp.stack([dca, dtemp])


def cstr_model(
    dt: float = 0.05,
    q_std=(1e-3, 0.05),
    r_std=(0.01, 0.5),
    measure_concentration: bool = False,
    substeps: int | None = None,
    **params,
) -> ODEModel:
    """The CSTR as an ``ODEModel`` sampled every ``dt`` minutes (Tsit5; adaptive unless ``substeps``).

    ``q_std`` are per-step process-noise standard deviations of (Ca, T); ``r_std`` measurement
    standard deviations of (Ca, T) — only T's is used unless ``measure_concentration``.
    """
    rows = [0, 1] if measure_concentration else [1]
    r = np.asarray(r_std, float)[rows]
    return ODEModel(
        CSTRDynamics(**params),
        lambda x, u, t: x[jnp.asarray(rows)],
        dt,
        np.diag(np.asarray(q_std, float) ** 2),
        np.diag(r**2),
        input_dim=1,
        disturbance_dim=2,
        substeps=substeps,
    )
