"""Verification helpers ("built the model right"): integrator convergence order and JAX-transformation checks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np


@dataclass(frozen=True)
class ConvergenceOrder:
    """``order``: fitted slope ``p`` of ``log err = p log h + c``; ``errors[i]`` = ‖step(hs[i]) − reference‖∞."""

    order: float
    hs: np.ndarray
    errors: np.ndarray


def convergence_order(step: Callable[[float], jax.Array], reference, hs: Sequence[float]) -> ConvergenceOrder:
    """Measured convergence order of a numerical method.

    ``step(h)`` returns the method's result with step size ``h`` (e.g. the state
    after integrating over a fixed horizon with steps ``h``), ``reference`` the
    exact (or a much finer) result.  The order is the least-squares slope of
    ``log ‖step(h) − reference‖∞`` against ``log h``.  Choose ``hs`` in the
    asymptotic range: large enough that errors are above round-off (a zero or
    non-finite error raises ``ValueError``), small enough for the leading term
    to dominate.
    """
    hs = np.asarray(hs, dtype=np.float64)
    if hs.ndim != 1 or hs.size < 2 or np.any(~(hs > 0)):
        raise ValueError(f"hs: expected at least two positive step sizes, got {hs}")
    ref = jnp.asarray(reference)
    errors = np.array([float(jnp.max(jnp.abs(jnp.asarray(step(float(h))) - ref))) for h in hs])
    if np.any(~np.isfinite(errors)) or np.any(errors <= 0):
        raise ValueError(f"step: errors {errors} must be finite and positive (above round-off) for every h in hs")
    slope, _ = np.polyfit(np.log(hs), np.log(errors), 1)
    return ConvergenceOrder(float(slope), hs, errors)


@dataclass(frozen=True)
class TransformationCheck:
    """Outcome of :func:`check_transformations`: per transformation, ``True`` when it ran and agreed with eager.

    ``errors``: max deviation per check (``jit``/``vmap``: outputs; ``grad``:
    directional derivative vs central finite difference); ``messages``: why a
    check failed.
    """

    jit: bool
    vmap: bool
    grad: bool
    errors: dict = field(default_factory=dict)
    messages: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.jit and self.vmap and self.grad


def _is_float(x) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jnp.floating)


def _float_leaves(tree) -> list:
    return [x for x in jax.tree_util.tree_leaves(tree) if _is_float(x)]


def _max_deviation(a, b) -> float:
    """Max relative deviation ``|a − b| / (1 + |b|)`` over the floating leaves (inf if the structures differ)."""
    leaves_a, leaves_b = _float_leaves(a), _float_leaves(b)
    if len(leaves_a) != len(leaves_b) or any(jnp.shape(x) != jnp.shape(y) for x, y in zip(leaves_a, leaves_b)):
        return np.inf
    return max((float(jnp.max(jnp.abs(x - y) / (1.0 + jnp.abs(y)), initial=0.0)) for x, y in zip(leaves_a, leaves_b)), default=0.0)


def _split_floats(tree):
    """``(floats, rebuild)``: the floating leaves of ``tree`` and a function putting new ones back in their place."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    index = [i for i, x in enumerate(leaves) if _is_float(x)]

    def rebuild(floats):
        new = list(leaves)
        for i, x in zip(index, floats):
            new[i] = x
        return jax.tree_util.tree_unflatten(treedef, new)

    return [jnp.asarray(leaves[i]) for i in index], rebuild


def _normal_like(arrays, key) -> list:
    keys = jax.random.split(key, max(len(arrays), 1))
    return [jax.random.normal(k, x.shape, x.dtype) for x, k in zip(arrays, keys)]


def check_transformations(
    fn: Callable, *args, rtol: float = 1e-6, fd_step: float = 1e-6, perturbation: float = 1e-3, seed: int = 0
) -> TransformationCheck:
    """Check that ``jit``, ``vmap`` and ``grad`` of ``fn`` run and agree with eager evaluation.

    * ``jit``: ``jax.jit(fn)(*args)`` equals ``fn(*args)`` run op by op
      (``jax.disable_jit``), relative error ≤ ``rtol``.
    * ``vmap``: on a batch of ``args`` and a randomly perturbed copy (every
      leaf stacked along a new axis 0), ``vmap(fn)`` equals the two eager calls.
    * ``grad``: for ``s = Σ w ⊙ fn(args)`` (fixed random weights ``w`` over all
      floating output leaves), ``⟨∇s, v⟩`` along a random direction ``v`` of the
      floating input leaves equals the central difference
      ``(s(x + εv) − s(x − εv)) / 2ε`` to ``sqrt(rtol)`` relative.

    ``args`` may be pytrees (e.g. equinox models); non-floating leaves are held fixed.
    Exceptions are caught and reported in ``messages`` (the check fails).
    """
    key_w, key_v, key_p = jax.random.split(jax.random.key(seed), 3)
    floats, rebuild = _split_floats(args)
    perturbed = rebuild([x + perturbation * n for x, n in zip(floats, _normal_like(floats, key_p))])
    errors, messages, passed = {}, {}, {}
    with jax.disable_jit():
        eager = fn(*args)
        eager_perturbed = fn(*perturbed)

    def run(name, compute, tol):
        try:
            errors[name] = compute()
            passed[name] = bool(errors[name] <= tol)
            if not passed[name]:
                messages[name] = f"deviation {errors[name]:.3g} exceeds {tol:.3g}"
        except Exception as exc:  # report any failure of the transformation, do not raise
            passed[name], messages[name] = False, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"

    run("jit", lambda: _max_deviation(jax.jit(fn)(*args), eager), rtol)

    def vmapped():
        batch = jax.tree_util.tree_map(lambda a, b: jnp.stack([jnp.asarray(a), jnp.asarray(b)]), args, perturbed)
        out = jax.vmap(fn)(*batch)
        first, second = (jax.tree_util.tree_map(lambda x, i=i: x[i], out) for i in (0, 1))
        return max(_max_deviation(first, eager), _max_deviation(second, eager_perturbed))

    run("vmap", vmapped, rtol)

    def gradient():
        weights = _normal_like([jnp.asarray(y) for y in _float_leaves(eager)], key_w)
        direction = _normal_like(floats, key_v)

        def scalar(xs):
            return sum(jnp.sum(w * y) for w, y in zip(weights, _float_leaves(fn(*rebuild(xs)))))

        analytic = sum(float(jnp.sum(g * v)) for g, v in zip(jax.grad(scalar)(floats), direction))
        with jax.disable_jit():
            plus = scalar([x + fd_step * v for x, v in zip(floats, direction)])
            minus = scalar([x - fd_step * v for x, v in zip(floats, direction)])
        numeric = float(plus - minus) / (2 * fd_step)
        return abs(analytic - numeric) / (1.0 + abs(numeric))

    run("grad", gradient, float(np.sqrt(rtol)))
    return TransformationCheck(passed["jit"], passed["vmap"], passed["grad"], errors, messages)
