"""Parameter uncertainty from the Laplace approximation / observed Fisher information.

At the maximum-likelihood estimate θ̂ the posterior (flat prior) is approximated by
``N(θ̂, H⁻¹)`` with ``H = ∇²_θ [−log p(y | θ)]`` at θ̂, the observed Fisher information.
Asymptotically ``θ̂ ~ N(θ, H⁻¹)``, so ``θ̂_i ± z_{(1+c)/2} √(H⁻¹)_ii`` is a confidence-``c``
interval for θ_i — the epistemic set ``Θ_δ`` the robust controller uses.  Intervals are on
the stored (unconstrained) parameters; for ``log_x`` leaves ``exp`` maps them to intervals on ``x``.

``H`` comes from automatic differentiation: ``"autodiff"`` is ``jax.hessian`` (forward over
reverse); ``"gradient"`` differentiates the autodiff gradient by central differences (O(h²),
for models with reverse-only derivative rules such as diffrax's checkpointed adjoint, and it
reuses the compiled gradient); ``"auto"`` chooses ``"gradient"`` exactly when the model holds
such an adjoint.  When ``H`` is not positive definite the data do not identify every trained
parameter: the covariance is NaN and :attr:`Laplace.weakest` names the least-determined direction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats
from jaxtyping import PyTree

from .params import flatten, scalar_names
from .problem import Problem

HessianMode = Literal["auto", "autodiff", "gradient"]


@dataclass(frozen=True)
class Laplace:
    """Gaussian approximation ``N(estimate, covariance)`` of the trained parameters (flattened).

    ``names`` [P], ``estimate`` [P], ``hessian`` [P, P] of the total negative log-likelihood,
    ``covariance`` [P, P] = ``hessian⁻¹`` (NaN when not positive definite), ``eigenvalues`` [P]
    of the Hessian (ascending).
    """

    names: tuple[str, ...]
    estimate: np.ndarray
    hessian: np.ndarray
    covariance: np.ndarray
    eigenvalues: np.ndarray

    @property
    def identified(self) -> bool:
        """True when the Hessian is finite and positive definite (every trained direction is determined)."""
        return bool(self.eigenvalues[0] > 0)  # NaN (non-finite Hessian) compares False

    @property
    def stderr(self) -> np.ndarray:
        """Standard errors ``√diag(H⁻¹)`` [P]."""
        return np.sqrt(np.diag(self.covariance))

    def interval(self, confidence: float = 0.95) -> np.ndarray:
        """Two-sided ``confidence`` intervals ``[P, 2]`` (normal quantile from scipy)."""
        if not 0.0 < confidence < 1.0:
            raise ValueError(f"confidence: expected a level in (0, 1), got {confidence}")
        z = scipy.stats.norm.ppf(0.5 + confidence / 2)
        half = z * self.stderr
        return np.stack([self.estimate - half, self.estimate + half], axis=1)

    @property
    def weakest(self) -> str:
        """The least-determined direction: the eigenvector of the smallest Hessian eigenvalue, as text."""
        if not np.all(np.isfinite(self.hessian)):
            return "the Hessian is not finite"
        vals, vecs = np.linalg.eigh(self.hessian)
        v = vecs[:, 0]
        order = np.argsort(-np.abs(v))[:3]
        terms = " ".join(f"{v[i]:+.2f}·{self.names[i]}" for i in order if abs(v[i]) > 0.01)
        return f"eigenvalue {vals[0]:.3g} along {terms}"


def _reverse_only(tree: PyTree) -> bool:
    """True when ``tree`` holds a diffrax adjoint that does not support forward-mode differentiation."""
    adjoints = jax.tree.leaves(tree, is_leaf=lambda x: isinstance(x, diffrax.AbstractAdjoint))
    forward_ok = (diffrax.ForwardMode, diffrax.DirectAdjoint)
    return any(isinstance(a, diffrax.AbstractAdjoint) and not isinstance(a, forward_ok) for a in adjoints)


def _flat_nll(flat, problem: Problem, unflatten):
    return problem.negative_log_likelihood(unflatten(flat))


_hessian = eqx.filter_jit(jax.hessian(_flat_nll))
_gradients = eqx.filter_jit(jax.vmap(jax.grad(_flat_nll), in_axes=(0, None, None)))


def nll_hessian(problem: Problem, theta: PyTree, mode: HessianMode = "auto") -> np.ndarray:
    """``∇²_θ`` of ``problem.negative_log_likelihood`` at ``theta`` over the flattened trainable leaves [P, P]."""
    if mode not in ("auto", "autodiff", "gradient"):
        raise ValueError(f"hessian: expected 'auto', 'autodiff' or 'gradient', got {mode!r}")
    flat, unflatten = flatten(theta)
    if mode == "auto":
        mode = "gradient" if _reverse_only(problem.params(theta)) else "autodiff"
    if mode == "autodiff":
        return np.asarray(_hessian(flat, problem, unflatten))
    steps = 1e-5 * jnp.maximum(1.0, jnp.abs(flat))
    shifts = jnp.diag(steps)
    grads = _gradients(jnp.concatenate([flat + shifts, flat - shifts]), problem, unflatten)
    P = flat.shape[0]
    h = np.asarray((grads[:P] - grads[P:]) / (2 * steps[:, None]))  # row i: ∂g/∂θ_i
    return 0.5 * (h + h.T)


def laplace(problem: Problem, theta: PyTree, hessian: HessianMode = "auto") -> Laplace:
    """The Laplace approximation at ``theta`` (call it at the maximum-likelihood estimate)."""
    H = nll_hessian(problem, theta, hessian)
    finite = bool(np.all(np.isfinite(H)))
    eig = np.linalg.eigvalsh(H) if finite else np.full(H.shape[0], np.nan)
    cov = np.linalg.inv(H) if finite and eig[0] > 0 else np.full_like(H, np.nan)
    flat, _ = flatten(theta)
    return Laplace(tuple(scalar_names(theta)), np.asarray(flat), H, 0.5 * (cov + cov.T), eig)
