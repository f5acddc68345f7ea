"""The controller interface U of the twin: :class:`AbstractController` and a plain LQR controller.

A controller is a pure function of its own state and the twin's belief::

    state₀            = controller.init(x̂₀, P₀, d̂)
    u_k, state, info  = controller.step(state, x̂_k, P_k, d̂_k)      (u_k [m], info: ControlInfo)
    u_k, state        = controller.fallback(state, x̂_k, P_k, d̂_k)  (the previous plan, shifted)

with ``x̂`` [n] and ``P`` [n, n] the mean and covariance of the belief of the current state,
``d̂`` [N, p] the disturbance forecast (``p = disturbance_dim``; ``N = horizon``), all in the
controller's coordinates (the twin shifts them to deviation variables when it controls a
linearisation).  ``info.status`` is a :class:`jtwin.qp.RESULTS` item: the twin uses ``u`` only
when :func:`jtwin.qp.is_successful` holds and ``u`` and the new state are finite, and otherwise
``fallback`` — which never solves anything.  Either input is then projected onto
:meth:`AbstractController.input_bounds`.  :class:`jtwin.Twin` uses nothing else, so a user's
controller plugs in by subclassing and implementing these methods and the ``n, m, horizon,
disturbance_dim`` properties.
"""


import abc

import equinox as eqx
from equinox import AbstractVar
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PyTree

from .. import _checks
from ..qp import RESULTS
from .lqr import lqr


class ControlInfo(eqx.Module):
    """What a controller step reports: ``status`` (a :class:`jtwin.qp.RESULTS` item), solver ``iterations``
    and the ``objective`` of the plan it acted on (0 for a control law without a plan)."""

    status: RESULTS
    iterations: Int[Array, ""]
    objective: Float[Array, ""]


class AbstractController(eqx.Module):
    """A controller the twin can run (module docstring): ``init``, ``step``, ``fallback``, ``input_bounds``.

    Implementations must be pure (jit/vmap-able) and keep their state a pytree of arrays.
    ``horizon``: the length ``N`` of the disturbance forecast ``step`` takes (a field or a property).
    """

    horizon: AbstractVar[int]

    @property
    @abc.abstractmethod
    def n(self) -> int:
        """State dimension."""

    @property
    @abc.abstractmethod
    def m(self) -> int:
        """Input dimension."""

    @property
    @abc.abstractmethod
    def disturbance_dim(self) -> int:
        """Columns ``p`` of the disturbance forecast (0: the controller takes no forecast)."""

    @abc.abstractmethod
    def input_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """``(lo, hi)`` [m] each: the box every returned input is projected onto (``±inf`` where unbounded)."""

    @abc.abstractmethod
    def init(self, mean: Float[Array, " n"], cov: Float[Array, "n n"], d: Float[Array, "N p"]) -> PyTree:
        """The controller's state before the first step, from the initial belief ``N(mean, cov)``."""

    @abc.abstractmethod
    def step(
        self, state: PyTree, mean: Float[Array, " n"], cov: Float[Array, "n n"], d: Float[Array, "N p"]
    ) -> tuple[Float[Array, " m"], PyTree, ControlInfo]:
        """``(u [m], next state, info)`` from the belief ``N(mean, cov)`` of the current state and forecast ``d``."""

    @abc.abstractmethod
    def fallback(
        self, state: PyTree, mean: Float[Array, " n"], cov: Float[Array, "n n"], d: Float[Array, "N p"]
    ) -> tuple[Float[Array, " m"], PyTree]:
        """``(u [m], next state)`` following the previous plan one step on, without solving (the twin's fallback)."""


def info_of(solution) -> ControlInfo:
    """The :class:`ControlInfo` of an :class:`~jtwin.control.MPCSolution`."""
    return ControlInfo(solution.status, solution.iterations, solution.objective)


class LQR(AbstractController):
    """Saturated LQR ``u = clip(u_ref + K(x̂ − x_ref), umin, umax)``, ``K = −K_lqr(A, B, Q, R)`` [m, n].

    ``x_ref`` [n], ``u_ref`` [m] a steady pair (default zeros); the box is applied by the twin's
    projection (:meth:`input_bounds`).  Stateless: its state is the last input [m]; it never
    fails (``status`` successful), and its fallback is the same law.
    """

    K: Float[Array, "m n"]
    xref: Float[Array, " n"]
    uref: Float[Array, " m"]
    umin: tuple[float, ...] = eqx.field(static=True)
    umax: tuple[float, ...] = eqx.field(static=True)

    def __init__(self, A, B, Q, R, xref=None, uref=None, umin=None, umax=None, *, K=None):
        A = _checks.as_array("A", A, (None, None))
        n = A.shape[0]
        B = _checks.as_array("B", B, (n, None))
        m = B.shape[1]
        self.K = -lqr(A, B, _checks.as_array("Q", Q, (n, n)), _checks.as_array("R", R, (m, m)))[0] if K is None else _checks.as_array("K", K, (m, n))
        self.xref = jnp.zeros(n, A.dtype) if xref is None else _checks.as_array("xref", xref, (n,)).astype(A.dtype)
        self.uref = jnp.zeros(m, A.dtype) if uref is None else _checks.as_array("uref", uref, (m,)).astype(A.dtype)
        lo = np.broadcast_to(np.asarray(-np.inf if umin is None else umin, float), (m,))
        hi = np.broadcast_to(np.asarray(np.inf if umax is None else umax, float), (m,))
        if np.any(np.isnan(lo)) or np.any(np.isnan(hi)) or np.any(lo > hi):
            raise ValueError("umin, umax: expected umin <= umax elementwise without NaN")
        self.umin, self.umax = tuple(map(float, lo)), tuple(map(float, hi))

    @property
    def n(self) -> int:
        return self.K.shape[1]

    @property
    def m(self) -> int:
        return self.K.shape[0]

    @property
    def horizon(self) -> int:
        return 1

    @property
    def disturbance_dim(self) -> int:
        return 0

    def input_bounds(self):
        return np.asarray(self.umin), np.asarray(self.umax)

    def law(self, x: Float[Array, " n"]) -> Float[Array, " m"]:
        """``u_ref + K(x − x_ref)`` (unsaturated)."""
        return self.uref + self.K @ (x - self.xref)

    def init(self, mean, cov, d):
        return jnp.zeros(self.m, mean.dtype)

    def step(self, state, mean, cov, d):
        u = self.law(mean)
        zero = jnp.zeros((), jnp.int32)
        return u, u, ControlInfo(RESULTS.successful, zero, jnp.zeros((), u.dtype))

    def fallback(self, state, mean, cov, d):
        u = self.law(mean)
        return u, u
