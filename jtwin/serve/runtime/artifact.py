"""The step-artifact file format and its loader (standard library, numpy and jax only).

An artifact is one file::

    b"JTWIN-STEP\\n"  | uint32 big-endian header length | header (UTF-8 JSON) | payload

The payload is ``jax.export.Exported.serialize()`` of a *flat* function: it takes the
leaves of the exported function's arguments as positional arrays and returns the
leaves of its results, so no Python pytree classes are needed to run it.  The header
names every leaf (``args``/``results``: a list of ``{"name", "leaves": [{"path",
"shape", "dtype"}]}``), records the example argument values (``example``: the
initial twin state for serving), the jax/jaxlib/jtwin versions and calling-convention
version of the export, the lowering platforms, a SHA-256 of the config the step was
built from and a SHA-256 of the payload (corruption check).

A leaf's *path* is its key path inside its argument (``"belief.mean"``; ``""`` for a
bare array), its *name* is ``arg`` or ``arg.path``.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import jax
import numpy as np
from jax import export as jax_export

MAGIC = b"JTWIN-STEP\n"
FORMAT_VERSION = 1
_LEN = struct.Struct(">I")


class ArtifactError(ValueError):
    """The artifact is corrupt, was written by an incompatible version, or cannot run here."""


@dataclass(frozen=True)
class LeafSpec:
    """One array of an argument or result: ``path`` inside it, ``shape`` and ``dtype``."""

    path: str
    shape: tuple[int, ...]
    dtype: np.dtype

    def name(self, group: str) -> str:
        return f"{group}.{self.path}" if self.path else group

    def to_json(self) -> dict:
        return {"path": self.path, "shape": list(self.shape), "dtype": self.dtype.name}

    @classmethod
    def from_json(cls, d: Mapping) -> "LeafSpec":
        return cls(str(d["path"]), tuple(int(s) for s in d["shape"]), np.dtype(d["dtype"]))


@dataclass(frozen=True)
class GroupSpec:
    """An argument or result of the exported function: its ``name`` and its leaves in flattening order."""

    name: str
    leaves: tuple[LeafSpec, ...]

    @property
    def is_array(self) -> bool:
        """True when the group is a single bare array (not a pytree)."""
        return len(self.leaves) == 1 and self.leaves[0].path == ""

    def to_json(self) -> dict:
        return {"name": self.name, "leaves": [leaf.to_json() for leaf in self.leaves]}

    @classmethod
    def from_json(cls, d: Mapping) -> "GroupSpec":
        return cls(str(d["name"]), tuple(LeafSpec.from_json(leaf) for leaf in d["leaves"]))


def pack(header: Mapping, payload: bytes) -> bytes:
    """Assemble an artifact from its JSON ``header`` and the serialised ``payload``."""
    head = json.dumps(dict(header), sort_keys=True).encode()
    return MAGIC + _LEN.pack(len(head)) + head + payload


def unpack(data: bytes) -> tuple[dict, bytes]:
    """Split an artifact into ``(header, payload)``, checking the magic, the header and the payload hash."""
    data = bytes(data)
    if not data.startswith(MAGIC):
        raise ArtifactError("artifact: not a jtwin step artifact (bad magic bytes)")
    start = len(MAGIC) + _LEN.size
    if len(data) < start:
        raise ArtifactError("artifact: truncated before the header length")
    (n,) = _LEN.unpack(data[len(MAGIC) : start])
    if len(data) < start + n:
        raise ArtifactError(f"artifact: truncated header ({len(data) - start} of {n} bytes)")
    try:
        header = json.loads(data[start : start + n])
    except ValueError as exc:
        raise ArtifactError(f"artifact: header is not valid JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise ArtifactError("artifact: header is not a JSON object")
    version = header.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"artifact: format_version {version!r} is not supported by this runtime "
            f"(supports {FORMAT_VERSION}); re-export with the matching jtwin or upgrade the runtime"
        )
    payload = data[start + n :]
    if hashlib.sha256(payload).hexdigest() != header.get("payload_sha256"):
        raise ArtifactError("artifact: payload_sha256 does not match the payload (corrupt or truncated file)")
    return header, payload


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def check_versions(header: Mapping) -> None:
    """Refuse artifacts this jax cannot promise to run, with an error that names both versions.

    jax guarantees that a serialised export loads for 6 months backward and only 3
    weeks forward: an artifact exported by a *newer* jax than this runtime's is
    refused, as is one whose calling-convention version this jax does not support.
    """
    exported_with = str(header.get("jax_version", "?"))
    ccv = header.get("calling_convention_version")
    lo = jax_export.minimum_supported_calling_convention_version
    hi = jax_export.maximum_supported_calling_convention_version
    if not isinstance(ccv, int) or not lo <= ccv <= hi:
        raise ArtifactError(
            f"artifact: calling_convention_version {ccv!r} (exported with jax {exported_with}) is outside "
            f"[{lo}, {hi}] supported by jax {jax.__version__}; re-export the step with this jax"
        )
    if _version_tuple(exported_with) > _version_tuple(jax.__version__):
        raise ArtifactError(
            f"artifact: exported with jax {exported_with}, newer than this runtime's jax {jax.__version__} "
            "(jax promises forward compatibility for 3 weeks only); upgrade jax here to "
            f">= {exported_with} or re-export with jax {jax.__version__}"
        )


def runtime_platform() -> str:
    """The lowering-platform name of jax's default backend (``cpu``, ``cuda``, ``rocm`` or ``tpu``)."""
    backend = jax.default_backend()
    if backend == "gpu":
        version = jax.devices()[0].client.platform_version.lower()
        return "rocm" if "rocm" in version else "cuda"
    return backend


def _device_for(platforms: Sequence[str]) -> jax.Device:
    here = runtime_platform()
    if here in platforms:
        return jax.devices()[0]
    if "cpu" in platforms:
        return jax.devices("cpu")[0]
    raise ArtifactError(
        f"artifact: exported for platforms {list(platforms)}, but this runtime has {here} and no "
        "usable one of those; re-export with platforms including " + repr(here)
    )


def decode_array(value, spec: LeafSpec, name: str) -> np.ndarray:
    """JSON value (nested lists; ``None`` = NaN) -> array of ``spec``'s shape and dtype.

    Raises ``ValueError`` naming ``name`` for strings, booleans, objects, ragged lists or a wrong shape.
    """
    if isinstance(value, (str, bytes, Mapping)) or _has(value, (str, bool, Mapping)):
        raise ValueError(f"{name}: expected numbers of shape {list(spec.shape)}, got {_kind(value)}")
    if spec.dtype.kind != "f" and _has(value, (type(None), float)):
        raise ValueError(f"{name}: expected integers of shape {list(spec.shape)} (dtype {spec.dtype.name})")
    try:
        arr = np.asarray(_nulls_to_nan(value) if spec.dtype.kind == "f" else value, dtype=spec.dtype)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ValueError(f"{name}: expected a rectangular array of shape {list(spec.shape)} ({exc})") from exc
    if arr.size == 0 and np.prod(spec.shape) == 0:
        arr = arr.reshape(spec.shape)  # JSON writes every empty array as [] (e.g. a [0, m] delay buffer)
    if arr.shape != spec.shape:
        raise ValueError(f"{name}: expected shape {list(spec.shape)}, got {list(arr.shape)}")
    return arr


def encode_array(arr) -> object:
    """Array -> JSON value (nested lists, exact float repr); NaN and ±inf become ``None``."""
    arr = np.asarray(arr)
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        return np.where(np.isfinite(arr), arr, None).astype(object).tolist()
    return arr.tolist()


def _has(value, types) -> bool:
    if isinstance(value, list):
        return any(_has(v, types) for v in value)
    return isinstance(value, types)


def _nulls_to_nan(value):
    if isinstance(value, list):
        return [_nulls_to_nan(v) for v in value]
    return np.nan if value is None else value


def _kind(value) -> str:
    return f"a {type(value).__name__}" if not isinstance(value, list) else "a list holding non-numbers"


class LoadedStep:
    """A deserialised step: call it like the exported function, get its results back as named arrays.

    ``step(*args)`` accepts each argument either as a mapping ``{path: array}`` with exactly
    the recorded paths, or as any pytree with the recorded leaves in flattening order
    (e.g. the original ``TwinState``).  It returns a tuple with one entry per result:
    the array itself for a bare-array result, else a dict ``{path: array}``; a twin step
    therefore gives ``u, state = step(state, y, t)`` and the dict ``state`` can be passed
    straight back in.  :meth:`call_flat` is the unchecked fast path on leaf lists.
    """

    def __init__(self, header: Mapping, exported: jax_export.Exported):
        self.header = dict(header)
        self.exported = exported
        self.args = tuple(GroupSpec.from_json(g) for g in header["args"])
        self.results = tuple(GroupSpec.from_json(g) for g in header["results"])
        self.device = _device_for(exported.platforms)
        # pinned to one device: fresh (numpy) and returned (device) arrays share one compilation
        self._call = jax.jit(exported.call, in_shardings=jax.sharding.SingleDeviceSharding(self.device))

    @property
    def platforms(self) -> tuple[str, ...]:
        return tuple(self.exported.platforms)

    def arg(self, name: str) -> GroupSpec:
        """The argument called ``name`` (``KeyError`` if there is none)."""
        for group in self.args:
            if group.name == name:
                return group
        raise KeyError(name)

    def example(self, name: str) -> dict[str, np.ndarray]:
        """Example value of argument ``name`` as ``{path: array}`` (the twin's initial state for ``"state"``)."""
        group = self.arg(name)
        values = self.header["example"][name]
        return {leaf.path: decode_array(values[leaf.path], leaf, leaf.name(name)) for leaf in group.leaves}

    def call_flat(self, leaves: Sequence) -> list[jax.Array]:
        """Run the step on the flat list of argument leaves (no checks); returns the flat result leaves."""
        return list(self._call(*leaves))

    def __call__(self, *args):
        if len(args) != len(self.args):
            names = ", ".join(g.name for g in self.args)
            raise ValueError(f"step: expected {len(self.args)} arguments ({names}), got {len(args)}")
        leaves = [leaf for group, value in zip(self.args, args) for leaf in _group_leaves(group, value)]
        out = iter(self.call_flat(leaves))
        return tuple(
            next(out) if group.is_array else {leaf.path: next(out) for leaf in group.leaves} for group in self.results
        )


def _group_leaves(group: GroupSpec, value) -> list:
    if isinstance(value, Mapping) and set(value) == {leaf.path for leaf in group.leaves}:
        leaves = [value[leaf.path] for leaf in group.leaves]
    else:
        leaves = jax.tree.leaves(value)
        if len(leaves) != len(group.leaves):
            raise ValueError(f"{group.name}: expected {len(group.leaves)} arrays, got {len(leaves)}")
    checked = []
    for spec, leaf in zip(group.leaves, leaves):
        if not isinstance(leaf, (np.ndarray, jax.Array)) or leaf.dtype != spec.dtype:  # Python scalars, lists
            leaf = np.asarray(leaf, spec.dtype)
        if leaf.shape != spec.shape:
            raise ValueError(f"{spec.name(group.name)}: expected shape {list(spec.shape)}, got {list(leaf.shape)}")
        checked.append(leaf)
    return checked


def needs_x64(header: Mapping) -> bool:
    """True when an argument or result of the artifact is a 64-bit type (jax must run with x64 enabled)."""
    groups = list(header["args"]) + list(header["results"])
    return any(np.dtype(leaf["dtype"]).itemsize == 8 for g in groups for leaf in g["leaves"])


def load_step(data: bytes, *, strict: bool = True) -> LoadedStep:
    """Deserialise an artifact written by ``jtwin.serve.export_step`` into a callable :class:`LoadedStep`.

    Raises :class:`ArtifactError` for a corrupt file, an unsupported format or jax
    version (unless ``strict`` is false), a platform this runtime lacks, or
    64-bit arrays while ``jax_enable_x64`` is off.
    """
    header, payload = unpack(data)
    if strict:
        check_versions(header)
    if needs_x64(header) and not jax.config.jax_enable_x64:
        raise ArtifactError(
            "artifact: the step uses 64-bit arrays but jax_enable_x64 is off; call "
            'jax.config.update("jax_enable_x64", True) before loading'
        )
    try:
        exported = jax_export.deserialize(bytearray(payload))
    except Exception as exc:  # jax raises assorted errors for payloads it cannot read
        raise ArtifactError(
            f"artifact: jax {jax.__version__} cannot deserialise the step exported with jax "
            f"{header.get('jax_version')}: {exc}"
        ) from exc
    return LoadedStep(header, exported)
