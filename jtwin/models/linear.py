"""Linear-Gaussian models ``x+ = A x + B u + E d + w``, ``y = H x + v`` and exact zero-order-hold discretisation."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import jax.scipy.linalg as jsl
from jaxtyping import Array, Float

from .._checks import as_array, covariance_factor
from .base import AbstractModel


def zoh_discretize(
    Ac: Float[Array, "n n"], Bc: Float[Array, "n m"], dt: float
) -> tuple[Float[Array, "n n"], Float[Array, "n m"]]:
    """Exact zero-order hold: ``A = e^{Ac dt}``, ``B = ∫₀^dt e^{Ac s} ds Bc``.

    Both come from one matrix exponential of the augmented matrix
    ``[[Ac, Bc], [0, 0]] dt`` (differentiable: ``jax.scipy.linalg.expm``).
    To discretise a disturbance input as well, pass ``hstack([Bc, Ec])`` and split.
    """
    n, m = Bc.shape
    aug = jnp.zeros((n + m, n + m), jnp.result_type(Ac, Bc))
    aug = aug.at[:n, :n].set(Ac).at[:n, n:].set(Bc)
    phi = jsl.expm(aug * dt)
    return phi[:n, :n], phi[:n, n:]


def van_loan_noise(Ac: Float[Array, "n n"], Qc: Float[Array, "n n"], dt: float) -> Float[Array, "n n"]:
    """Discrete process noise ``Q = ∫₀^dt e^{Ac s} Qc e^{Acᵀ s} ds`` of white noise with spectral density ``Qc``.

    Van Loan's method: ``expm([[-Ac, Qc], [0, Acᵀ]] dt) = [[·, M12], [0, M22]]`` and
    ``Q = M22ᵀ M12`` (symmetrised).
    """
    n = Ac.shape[0]
    aug = jnp.block([[-Ac, Qc], [jnp.zeros_like(Ac), Ac.T]]) * dt
    phi = jsl.expm(aug)
    q = phi[n:, n:].T @ phi[:n, n:]
    return 0.5 * (q + q.T)


class LinearModel(AbstractModel):
    """Discrete-time linear-Gaussian model.

    ``x[k+1] = A x[k] + B u[k] + E d[k] + w[k]``, ``w ~ N(0, Q)``;
    ``y[k] = H x[k] + v[k]``, ``v ~ N(0, R)``.

    Shapes: ``A`` [n, n], ``B`` [n, m] (``None`` for no input), ``H`` [ny, n],
    ``Q`` [n, n], ``R`` [ny, ny], ``E`` [n, p] (``None`` for no disturbance).
    ``dt`` is the sample period (used for time stamps and by delay analysis).
    """

    A: Float[Array, "n n"]
    B: Float[Array, "n m"]
    H: Float[Array, "ny n"]
    E: Float[Array, "n p"]
    Q_factor: Float[Array, "n n"]
    R_factor: Float[Array, "ny ny"]
    dt: float = eqx.field(static=True)

    def __init__(self, A, B, H, Q, R, E=None, *, dt: float = 1.0):
        self.A = as_array("A", A, (None, None))
        n = self.A.shape[0]
        if self.A.shape != (n, n):
            raise ValueError(f"A: expected a square matrix (n, n), got {tuple(self.A.shape)}")
        self.B = jnp.zeros((n, 0), self.A.dtype) if B is None else as_array("B", B, (n, None))
        self.H = as_array("H", H, (None, n))
        ny = self.H.shape[0]
        self.E = jnp.zeros((n, 0), self.A.dtype) if E is None else as_array("E", E, (n, None))
        self.Q_factor = covariance_factor("Q", Q, n)
        self.R_factor = covariance_factor("R", R, ny)
        if not dt > 0:
            raise ValueError(f"dt: expected a positive sample period, got {dt}")
        self.dt = float(dt)

    @classmethod
    def from_continuous(
        cls, Ac, Bc, H, Q, R, dt: float, Ec=None, *, continuous_noise: bool = False
    ) -> "LinearModel":
        """Exact ZOH discretisation of ``dx/dt = Ac x + Bc u + Ec d`` (inputs held over ``dt``).

        ``A``, ``B`` and ``E`` come from a single augmented matrix exponential.  ``Q`` is
        the discrete process-noise covariance, or with ``continuous_noise=True`` the
        spectral density ``Qc`` of continuous white noise, discretised by Van Loan's method.
        """
        if not dt > 0:
            raise ValueError(f"dt: expected a positive sample period, got {dt}")
        Ac = as_array("Ac", Ac, (None, None))
        n = Ac.shape[0]
        Bc = jnp.zeros((n, 0), Ac.dtype) if Bc is None else as_array("Bc", Bc, (n, None))
        Ec = jnp.zeros((n, 0), Ac.dtype) if Ec is None else as_array("Ec", Ec, (n, None))
        m = Bc.shape[1]
        A, BE = zoh_discretize(Ac, jnp.hstack([Bc, Ec]), dt)
        if continuous_noise:
            Q = van_loan_noise(Ac, as_array("Q", Q, (n, n)), dt)
        return cls(A, BE[:, :m], H, Q, R, E=BE[:, m:], dt=dt)

    @property
    def state_dim(self) -> int:
        return self.A.shape[0]

    @property
    def input_dim(self) -> int:
        return self.B.shape[1]

    @property
    def output_dim(self) -> int:
        return self.H.shape[0]

    @property
    def disturbance_dim(self) -> int:
        return self.E.shape[1]

    def transition(self, x, u, t=0.0, d=None):
        x_next = self.A @ x + self.B @ u
        return x_next if d is None else x_next + self.E @ d

    def observe(self, x, u=None, t=0.0):
        return self.H @ x
