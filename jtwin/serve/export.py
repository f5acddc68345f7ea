"""Export a pure step function to a self-describing ``jax.export`` artifact.

``export_step(fn, *example_args)`` traces ``fn`` on the example arguments, exports (via
:func:`jax.export.export`, serialised StableHLO) the *flat* function on their leaves
and packs it with a JSON header that names every leaf; the artifact can then be run by
:func:`jtwin.serve.load_step` or the standalone serving runtime without any Python
pytree classes (see :mod:`jtwin.serve.runtime.artifact` for the format).

A twin step is ``step(state, y, t) -> (u, state)`` with ``state`` any pytree of arrays
(e.g. ``TwinState``): arguments are then named ``state, y, t`` and results ``u, state``;
further arguments (the twin's disturbance forecast ``d``) are named by ``arg_names``.
:func:`jtwin.serve.export_twin` exports a :class:`jtwin.Twin` this way.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
from jax import export as jax_export
from jaxtyping import Array, PyTree

from .. import __version__ as jtwin_version
from .runtime.artifact import FORMAT_VERSION, GroupSpec, LeafSpec, encode_array, pack

TWIN_ARGS = ("state", "y", "t")
TWIN_RESULTS = ("u", "state")


def jax_platforms() -> tuple[str, ...]:
    """The platform names jax knows (``cpu``, ``cuda``, ``rocm``, ``tpu``, …), for ``jax.export``'s ``platforms``."""
    from jax._src import xla_bridge  # jax has no public list; this is the one its backend selection uses

    return tuple(sorted(xla_bridge.known_platforms()))


def check_platforms(platforms: Sequence[str]) -> tuple[str, ...]:
    """``platforms`` as a tuple, or ``ValueError`` naming the first that jax does not know (jax.export itself
    accepts any string and the artifact is then refused only when served)."""
    platforms = tuple(platforms)
    known = jax_platforms()
    if not platforms:
        raise ValueError(f"platforms: expected at least one of {list(known)}")
    for name in platforms:
        if name not in known:
            raise ValueError(f"platforms: {name!r} is not a jax platform; expected some of {list(known)}")
    return platforms


def leaf_paths(tree: PyTree) -> list[str]:
    """Key paths of ``tree``'s leaves in flattening order (``"belief.mean"``; ``""`` for a bare array)."""
    keystr = jax.tree_util.keystr
    return [keystr(path, simple=True, separator=".") for path, _ in jax.tree_util.tree_leaves_with_path(tree)]


def tree_to_arrays(tree: PyTree) -> dict[str, Array]:
    """``{path: leaf}`` of a pytree: the named-array form the serving side uses for a twin state."""
    return dict(zip(leaf_paths(tree), jax.tree.leaves(tree)))


def arrays_to_tree(arrays: Mapping[str, Array], like: PyTree) -> PyTree:
    """Inverse of :func:`tree_to_arrays`: rebuild ``like``'s pytree type from named arrays."""
    paths = leaf_paths(like)
    missing = [p for p in paths if p not in arrays]
    if missing or len(arrays) != len(paths):
        raise ValueError(f"arrays: expected exactly the paths {paths}, missing {missing}")
    return jax.tree.unflatten(jax.tree.structure(like), [jnp.asarray(arrays[p]) for p in paths])


def config_hash(config: bytes | str | Mapping | None) -> str | None:
    """SHA-256 of the config a step was built from (file bytes, text, or a JSON-able mapping)."""
    if config is None:
        return None
    if isinstance(config, Mapping):
        config = json.dumps(config, sort_keys=True, default=str)
    if isinstance(config, str):
        config = config.encode()
    return hashlib.sha256(config).hexdigest()


def _group(name: str, tree: PyTree) -> GroupSpec:
    leaves = jax.tree.leaves(tree)
    return GroupSpec(
        name, tuple(LeafSpec(p, tuple(x.shape), np.dtype(x.dtype)) for p, x in zip(leaf_paths(tree), leaves))
    )


def _as_arrays(name: str, tree: PyTree) -> PyTree:
    def convert(path, leaf):
        try:
            return jnp.asarray(leaf)
        except TypeError as exc:
            where = jax.tree_util.keystr(path, simple=True, separator=".")
            field = f"{name}.{where}" if where else name
            raise ValueError(f"{field}: expected an array leaf, got {type(leaf).__name__}") from exc

    return jax.tree_util.tree_map_with_path(convert, tree)


def adopt_weak_dtypes(state: PyTree, returned: PyTree) -> PyTree:
    """Weakly typed leaves of ``state`` (e.g. ``jnp.asarray(0)`` counters) made strongly typed with the
    dtype ``returned`` (the step's new state, e.g. from ``jax.eval_shape``) has for them, as
    ``lax.scan`` does for its carry: the state is then a fixed point of the step's types, so
    one jit compilation serves every step.  Returns ``state`` itself when nothing changes."""
    if jax.tree.structure(state) != jax.tree.structure(returned):
        return state
    leaves, new = jax.tree.leaves(state), jax.tree.leaves(returned)
    cast = [
        x.astype(r.dtype) if getattr(x, "weak_type", False) and x.shape == r.shape else x
        for x, r in zip(leaves, new)
    ]
    if all(a is b for a, b in zip(cast, leaves)):
        return state
    return jax.tree.unflatten(jax.tree.structure(state), cast)


def export_step(
    fn: Callable,
    *example_args: PyTree,
    platforms: Sequence[str] = ("cpu",),
    arg_names: Sequence[str] | None = None,
    result_names: Sequence[str] | None = None,
    time_arg: str | None = "t",
    missing_ok: Sequence[str] = ("y",),
    config: bytes | str | Mapping | None = None,
    covariances: Sequence[str] = (),
    events: Sequence[str] = (),
    period: float | None = None,
) -> bytes:
    """Export ``fn(*example_args)`` for ``platforms`` and return the artifact bytes.

    ``example_args``: pytrees of arrays (shapes and dtypes are fixed by them; their values
    are stored too, the first one being the serving side's initial twin state).
    ``arg_names``/``result_names``: names of the arguments and of the results (``fn``
    must return a tuple of that length); default ``("state", "y", "t")`` and
    ``("u", "state")`` for three arguments and two results.  ``time_arg`` names the
    timestamp argument and ``missing_ok`` the arguments whose NaN entries are missing data
    (what the server accepts as JSON ``null``).  ``config`` is hashed into the header.
    ``platforms`` may list several (e.g. ``("cpu", "cuda")``): one artifact then runs on each;
    each must be a name jax knows (:func:`jax_platforms`).  For the server, ``covariances``
    names state paths that must stay symmetric PSD (checked when a twin is created),
    ``events`` scalar integer state paths reported with every step (and counted), and
    ``period`` the model time one step advances (the spacing of consecutive ``t``).

    Weakly typed leaves of ``state`` (Python-scalar counters) take the dtype the step
    returns for them, as ``lax.scan`` does for its carry.

    Raises ``ValueError`` naming the argument for non-array leaves, mismatched names, a
    returned ``state`` whose arrays differ from the argument's, or a function jax cannot
    export (e.g. one with Python callbacks).
    """
    if arg_names is None:
        if len(example_args) != len(TWIN_ARGS):
            raise ValueError(f"arg_names: required for {len(example_args)} arguments (default names {TWIN_ARGS})")
        arg_names = TWIN_ARGS
    arg_names = tuple(arg_names)
    if len(arg_names) != len(example_args) or len(set(arg_names)) != len(arg_names):
        raise ValueError(f"arg_names: expected {len(example_args)} distinct names, got {arg_names}")
    if time_arg is not None and time_arg not in arg_names:
        raise ValueError(f"time_arg: {time_arg!r} is not one of arg_names {arg_names}")
    platforms = check_platforms(platforms)
    args = tuple(_as_arrays(n, a) for n, a in zip(arg_names, example_args))
    out = jax.eval_shape(fn, *args)
    result_names = tuple(TWIN_RESULTS if result_names is None else result_names)
    if not isinstance(out, tuple) or len(out) != len(result_names):
        raise ValueError(
            f"result_names: fn must return a tuple of {len(result_names)} ({result_names}), got {type(out).__name__}"
        )
    if "state" in arg_names and "state" in result_names:
        i, j = arg_names.index("state"), result_names.index("state")
        state = adopt_weak_dtypes(args[i], out[j])
        if state is not args[i]:
            args = args[:i] + (state,) + args[i + 1 :]
            out = jax.eval_shape(fn, *args)
    arg_groups = [_group(n, a) for n, a in zip(arg_names, args)]
    result_groups = [_group(n, r) for n, r in zip(result_names, out)]
    if "state" in arg_names and "state" in result_names:
        a, r = arg_groups[arg_names.index("state")], result_groups[result_names.index("state")]
        if a.leaves != r.leaves:
            raise ValueError(
                "fn: the returned state must have the same arrays (paths, shapes, dtypes) as the state argument"
            )

    treedef = jax.tree.structure(args)

    def flat(*leaves):
        return tuple(jax.tree.leaves(fn(*jax.tree.unflatten(treedef, leaves))))

    specs = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in jax.tree.leaves(args)]
    try:
        exported = jax_export.export(jax.jit(flat), platforms=tuple(platforms))(*specs)
    except Exception as exc:  # jax refuses e.g. Python callbacks or non-allow-listed custom calls
        raise ValueError(f"fn: jax.export cannot export this step for platforms {tuple(platforms)}: {exc}") from exc
    payload = bytes(exported.serialize())
    header = {
        "format": "jtwin-step",
        "format_version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "jtwin_version": jtwin_version,
        "jax_version": jax.__version__,
        "jaxlib_version": jaxlib.__version__,
        "calling_convention_version": exported.calling_convention_version,
        "platforms": list(exported.platforms),
        "config_sha256": config_hash(config),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
        "args": [g.to_json() for g in arg_groups],
        "results": [g.to_json() for g in result_groups],
        "time_arg": time_arg,
        "missing_ok": [n for n in missing_ok if n in arg_names],
        "covariances": list(covariances),
        "events": list(events),
        "period": None if period is None else float(period),
        "example": {n: {p: encode_array(x) for p, x in tree_to_arrays(a).items()} for n, a in zip(arg_names, args)},
    }
    return pack(header, payload)


def write_runtime(directory: str | Path, package: str = "jtwin_runtime") -> Path:
    """Copy the standalone serving runtime to ``directory/package`` (run it with ``python -m package``).

    The copy needs only jax and numpy: deploy it with the artifact on a host without jtwin.
    """
    if not package.isidentifier():
        raise ValueError(f"package: expected a Python identifier, got {package!r}")
    dest = Path(directory) / package
    src = Path(__file__).with_name("runtime")
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    return dest
