"""Which leaves of a parameter pytree are trained, their names, and their physical values.

Parameters live in ``equinox.Module`` pytrees (a model, or a class of physical parameters
such as :class:`~jtwin.models.library.BuildingRC`).  Training acts on the *trainable* leaves
only, selected by a filter spec (a pytree of bools, as ``eqx.partition`` takes); the rest stay
frozen.  Constrained parameters are stored unconstrained, so any optimiser step keeps them
valid: ``log_*`` leaves hold logarithms of positive quantities, ``logit_*`` leaves logits of
fractions, ``Q_factor``/``R_factor`` Cholesky-like factors of covariances.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PyTree

Selection = Callable[[PyTree], object] | Sequence[str] | PyTree | None


def leaf_path(path) -> str:
    """A key path as a dotted name: ``vector_field.log_k0``."""
    return jax.tree_util.keystr(path).lstrip(".").replace("[", ".").replace("]", "")


def trainable_spec(params: PyTree, trainable: Selection = None) -> PyTree:
    """The filter spec (pytree of bools over ``params``) of the leaves to train.

    ``trainable`` is one of:

    * ``None``: every floating-point array leaf;
    * a callable ``where(params) -> leaf or tuple of leaves`` (as for ``eqx.tree_at``),
      e.g. ``lambda m: (m.vector_field.log_k0, m.vector_field.log_ua)``;
    * a sequence of names: a leaf is trained when its dotted path (``vector_field.log_k0``)
      equals a name or ends with ``"." + name`` (``log_k0``);
    * a filter spec already (a pytree of bools with the structure of ``params``).

    Raises ``ValueError`` when the selection is empty or a name matches no array leaf.
    """
    is_param = jax.tree.map(eqx.is_inexact_array, params)
    if trainable is None:
        spec = is_param
    elif callable(trainable):
        nothing = jax.tree.map(lambda _: False, params)
        selected = trainable(params)
        count = len(selected) if isinstance(selected, tuple) else 1
        spec = eqx.tree_at(trainable, nothing, (True,) * count if isinstance(selected, tuple) else True)
    elif isinstance(trainable, Sequence) and all(isinstance(s, str) for s in trainable):
        names = tuple(trainable)
        paths = jax.tree_util.tree_flatten_with_path(params)[0]
        chosen = {
            leaf_path(p)
            for p, leaf in paths
            if eqx.is_inexact_array(leaf) and any(leaf_path(p) == n or leaf_path(p).endswith("." + n) for n in names)
        }
        unmatched = [n for n in names if not any(c == n or c.endswith("." + n) for c in chosen)]
        if unmatched:
            available = [leaf_path(p) for p, leaf in paths if eqx.is_inexact_array(leaf)]
            raise ValueError(f"trainable: {unmatched} match no parameter; available: {available}")
        spec = jax.tree_util.tree_map_with_path(lambda p, _: leaf_path(p) in chosen, params)
    else:
        spec = trainable
        if jax.tree.structure(spec) != jax.tree.structure(params):
            raise ValueError("trainable: a filter spec must have the pytree structure of the parameters")
    spec = jax.tree.map(lambda s, ok: bool(s) and ok, spec, is_param)
    if not any(jax.tree.leaves(spec)):
        raise ValueError("trainable: selects no floating-point array leaf; nothing to train")
    return spec


def scalar_names(params: PyTree) -> list[str]:
    """One name per scalar of the flattened array leaves: ``log_c_air.0``, ``vector_field.log_k0``."""
    names = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        base = leaf_path(path)
        if np.ndim(leaf) == 0:
            names.append(base)
        else:
            names.extend(f"{base}.{'.'.join(map(str, idx))}" for idx in np.ndindex(np.shape(leaf)))
    return names


class Unflatten(eqx.Module):
    """Inverse of :func:`flatten`: a vector [P] back to the pytree (hashable, so jit caches on it)."""

    treedef: jax.tree_util.PyTreeDef = eqx.field(static=True)
    shapes: tuple[tuple[int, ...], ...] = eqx.field(static=True)

    def __call__(self, flat: Float[Array, " P"]) -> PyTree:
        sizes = [int(np.prod(s)) for s in self.shapes]
        parts = jnp.split(flat, np.cumsum(sizes)[:-1]) if sizes else []
        return jax.tree.unflatten(self.treedef, [p.reshape(s) for p, s in zip(parts, self.shapes)])


def flatten(params: PyTree) -> tuple[Float[Array, " P"], Unflatten]:
    """``(vector [P], unflatten)`` of the array leaves, in :func:`scalar_names` order."""
    leaves, treedef = jax.tree.flatten(params)
    flat = jnp.concatenate([jnp.ravel(leaf) for leaf in leaves])
    return flat, Unflatten(treedef, tuple(tuple(np.shape(leaf)) for leaf in leaves))


def physical(name: str, value, lower=None, upper=None) -> tuple[str, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The physical form of an unconstrained parameter and of an interval on it (monotone maps).

    ``log_x`` → ``x = exp(value)``; ``logit_x`` → ``x = sigmoid(value)``; other names unchanged.
    Returns ``(physical name, value, lower, upper)``.
    """
    last = name.split(".")
    for i, part in enumerate(last):
        for prefix, fn in (("log_", np.exp), ("logit_", lambda v: 1.0 / (1.0 + np.exp(-v)))):
            if part.startswith(prefix):
                last[i] = part[len(prefix):]
                mapped = [None if v is None else fn(np.asarray(v, float)) for v in (value, lower, upper)]
                return (".".join(last), *mapped)
    return name, np.asarray(value, float), lower, upper
