"""Validation at the edge: shapes, finiteness and covariance checks with errors that name the field.

These run outside ``jit`` (in constructors, loaders and servers).  When a value is
a JAX tracer (the object is being built inside a transformed function) only the
static shape checks run, since the values are not known.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(value) -> bool:
    """True when ``value`` holds data (not a tracer inside jit/grad/vmap)."""
    return not isinstance(value, jax.core.Tracer)


def _fmt(shape: Sequence[int | str | None]) -> str:
    return "(" + ", ".join("?" if s is None else str(s) for s in shape) + (",)" if len(shape) == 1 else ")")


def as_array(name: str, value, shape: Sequence[int | None], *, finite: bool = True) -> jax.Array:
    """Convert ``value`` to a floating JAX array and check its shape (``None`` = any size).

    Raises ``ValueError`` naming ``name`` and the expected shape when the shape is
    wrong, and when ``finite`` and the value holds NaN or inf.
    """
    if value is None:
        raise ValueError(f"{name}: expected an array of shape {_fmt(shape)}, got None")
    try:
        arr = jnp.asarray(value)
    except TypeError as exc:
        raise ValueError(f"{name}: expected a numeric array of shape {_fmt(shape)}, got {type(value).__name__}") from exc
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        if not (jnp.issubdtype(arr.dtype, jnp.integer) or arr.dtype == bool):
            raise ValueError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
        arr = arr.astype(jnp.result_type(float))
    if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
        raise ValueError(f"{name}: expected shape {_fmt(shape)}, got {tuple(arr.shape)}")
    # numpy, not jnp: under jit a jnp op on a captured constant would be staged (a tracer)
    if finite and is_concrete(arr) and not np.all(np.isfinite(np.asarray(arr))):
        raise ValueError(f"{name}: contains NaN or inf entries; expected finite values")
    return arr


def covariance_factor(name: str, value, n: int) -> jax.Array:
    """Validate a covariance matrix (symmetric PSD, shape ``(n, n)``) and return a lower-triangular factor ``L``.

    ``L @ L.T`` reproduces the matrix to round-off.  Singular PSD matrices are
    allowed (e.g. a noise-free state): the factor comes from an eigendecomposition
    followed by a QR step, so it is lower triangular with a zero column where the
    matrix is rank deficient.  A factor stored this way keeps the matrix PSD under
    any gradient step on its entries.
    """
    cov = as_array(name, value, (n, n))
    if not is_concrete(cov):
        return jnp.linalg.cholesky(cov)
    c = np.asarray(cov, dtype=np.float64)
    scale = max(float(np.max(np.abs(c))), 1e-300)
    if not np.allclose(c, c.T, rtol=1e-9, atol=1e-12 * scale):
        raise ValueError(f"{name}: covariance must be symmetric; max |{name} - {name}.T| = {np.max(np.abs(c - c.T)):.3g}")
    c = 0.5 * (c + c.T)
    eig, vec = np.linalg.eigh(c)
    if eig.min() < -1e-10 * scale:
        raise ValueError(
            f"{name}: covariance must be positive semi-definite; smallest eigenvalue is {eig.min():.3g}"
        )
    try:
        factor = np.linalg.cholesky(c)
    except np.linalg.LinAlgError:
        root = vec * np.sqrt(np.clip(eig, 0.0, None))  # root @ root.T == c
        r = np.linalg.qr(root.T, mode="r")  # root.T = Q r  =>  c = r.T r
        factor = r.T * np.where(np.diag(r) < 0, -1.0, 1.0)  # flip columns to a non-negative diagonal
    return jnp.asarray(factor, dtype=cov.dtype)


def check_covariance(name: str, value, n: int) -> jax.Array:
    """Validate a covariance matrix (shape ``(n, n)``, finite, symmetric PSD) and return it as an array.

    Under a transformation (tracer) only the shape is checked.
    """
    cov = as_array(name, value, (n, n))
    if is_concrete(cov):
        covariance_factor(name, cov, n)  # raises on asymmetric / indefinite input
    return cov


def covariance_from_factor(factor: jax.Array) -> jax.Array:
    """``tril(L) @ tril(L).T``: the PSD matrix held by a (possibly updated) factor."""
    low = jnp.tril(factor)
    return low @ low.T
