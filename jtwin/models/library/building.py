"""Energy: a multi-zone building thermal RC network (linear, exact ZOH to a LinearModel).

Units: temperatures °C, powers kW, thermal capacitances kWh/K, resistances K/kW, time hours,
irradiance kW/m².  Zones form a chain (zone i exchanges heat with zone i±1).

For zone i with air temperature Ta_i and wall temperature Tw_i::

    C_air  dTa_i/dt = (Tw_i - Ta_i)/R_aw + (To - Ta_i)/R_win + Σ_j (Ta_j - Ta_i)/R_zz + u_i + f_air  A_sol G
    C_wall dTw_i/dt = (Ta_i - Tw_i)/R_aw + (To - Tw_i)/R_wo  + (1 - f_air) A_sol G

with heating power u_i (kW, negative = cooling), outdoor temperature To (°C) and global
horizontal irradiance G (kW/m²) as disturbances ``d = (To, G)``.  State order:
``x = (Ta_1..Ta_z, Tw_1..Tw_z)``; measured: the zone air temperatures.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._positive import positive, unconstrained
from ..linear import LinearModel


class BuildingRC(eqx.Module):
    """Physical parameters of the building (learnable; positive ones stored as logs).

    Per-zone arrays have shape [zones]; ``frac_air`` in (0, 1) is stored as a logit.
    """

    log_c_air: Float[Array, " z"]
    log_c_wall: Float[Array, " z"]
    log_r_aw: Float[Array, " z"]
    log_r_wo: Float[Array, " z"]
    log_r_win: Float[Array, " z"]
    log_r_zz: Float[Array, ""]
    log_solar_area: Float[Array, " z"]
    logit_frac_air: Float[Array, ""]

    def __init__(
        self,
        zones: int = 3,
        c_air=1.0,
        c_wall=10.0,
        r_aw=0.5,
        r_wo=4.0,
        r_win=10.0,
        r_zz=2.0,
        solar_area=5.0,
        frac_air=0.5,
    ):
        if int(zones) != zones or zones < 1:
            raise ValueError(f"zones: expected a positive integer, got {zones}")

        def per_zone(name, value):
            v = np.asarray(value, float)
            if v.shape not in ((), (zones,)):
                raise ValueError(f"{name}: expected a scalar or shape ({zones},) (one per zone), got {v.shape}")
            return unconstrained(name, np.broadcast_to(v, (zones,)))

        self.log_c_air = per_zone("c_air", c_air)
        self.log_c_wall = per_zone("c_wall", c_wall)
        self.log_r_aw = per_zone("r_aw", r_aw)
        self.log_r_wo = per_zone("r_wo", r_wo)
        self.log_r_win = per_zone("r_win", r_win)
        self.log_r_zz = unconstrained("r_zz", np.asarray(r_zz, float))
        self.log_solar_area = per_zone("solar_area", solar_area)
        if not 0.0 < frac_air < 1.0:
            raise ValueError(f"frac_air: expected a fraction in (0, 1), got {frac_air}")
        self.logit_frac_air = jnp.asarray(np.log(frac_air / (1.0 - frac_air)))

    @property
    def zones(self) -> int:
        return self.log_c_air.shape[0]

    def continuous(self) -> tuple[Float[Array, "n n"], Float[Array, "n m"], Float[Array, "n 2"]]:
        """Continuous-time ``(Ac, Bc, Ec)`` of ``dx/dt = Ac x + Bc u + Ec d``; n = 2·zones, m = zones."""
        z = self.zones
        c_a, c_w = positive(self.log_c_air), positive(self.log_c_wall)
        g_aw, g_wo, g_win = 1 / positive(self.log_r_aw), 1 / positive(self.log_r_wo), 1 / positive(self.log_r_win)
        g_zz = 1 / positive(self.log_r_zz)
        frac = jax.nn.sigmoid(self.logit_frac_air)
        area = positive(self.log_solar_area)
        chain = jnp.diag(jnp.ones(z - 1), 1) + jnp.diag(jnp.ones(z - 1), -1)  # zone adjacency
        lap = g_zz * (chain - jnp.diag(chain.sum(1)))  # heat exchange between neighbouring zones
        a_aa = jnp.diag(-(g_aw + g_win)) + lap
        Ac = jnp.block([[a_aa / c_a[:, None], jnp.diag(g_aw / c_a)], [jnp.diag(g_aw / c_w), jnp.diag(-(g_aw + g_wo) / c_w)]])
        Bc = jnp.vstack([jnp.diag(1 / c_a), jnp.zeros((z, z))])
        Ec = jnp.vstack(
            [jnp.stack([g_win / c_a, frac * area / c_a], 1), jnp.stack([g_wo / c_w, (1 - frac) * area / c_w], 1)]
        )
        return Ac, Bc, Ec

    def to_linear(self, dt: float = 1.0, q_std: float = 0.05, r_std: float = 0.2) -> LinearModel:
        """Exact ZOH ``LinearModel`` with sample period ``dt`` hours, measuring the air temperatures.

        Process noise ``Q = q_std² I`` [°C²] per step, measurement noise ``R = r_std² I`` [°C²].
        Differentiable in the physical parameters (``jax.grad`` through ``expm``).
        """
        Ac, Bc, Ec = self.continuous()
        z = self.zones
        H = jnp.hstack([jnp.eye(z), jnp.zeros((z, z))])
        return LinearModel.from_continuous(Ac, Bc, H, q_std**2 * jnp.eye(2 * z), r_std**2 * jnp.eye(z), dt, Ec=Ec)


def building_model(zones: int = 3, dt: float = 1.0, q_std: float = 0.05, r_std: float = 0.2, **params) -> LinearModel:
    """The building as a ``LinearModel`` (see :class:`BuildingRC` for ``params`` and units)."""
    return BuildingRC(zones, **params).to_linear(dt, q_std, r_std)
