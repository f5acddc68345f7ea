"""Durable twin records: one ``.npz`` file per twin, replaced atomically on every acknowledged step.

A record holds the twin's state arrays (bit-exact, any dtype), the number of steps
taken, the time of the last step and the digest and response of the last step
request (so a client that retries a step whose answer it never received gets the
same answer instead of a second step).  :meth:`StateStore.save` writes a temporary
file in the same directory, ``fsync``s it, ``os.replace``s it over the record and
``fsync``s the directory: a reader (or a restart after ``kill -9``) sees the old
record or the new one, never a mix.  A record that cannot be read (truncated, not a
record) is skipped by :meth:`StateStore.load_all` and reported in :attr:`StateStore.unreadable`.

Fault injection for tests: with ``JTWIN_SERVE_CRASH=point:n`` in the environment the process
kills itself (SIGKILL) the ``n``-th time it reaches ``point`` (:func:`crash_point`; the points are
``after-fsync`` — the new record written and fsynced, not yet renamed — and the server's
``after-persist`` — the record in place, the answer not yet sent).
"""

from __future__ import annotations

import json
import os
import re
import signal
import tempfile
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TWIN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_SUFFIX = ".twin.npz"
_CRASH = os.environ.get("JTWIN_SERVE_CRASH", "")
_crash_counts: dict[str, int] = {}
_crash_lock = threading.Lock()


def crash_point(name: str) -> None:
    """SIGKILL this process the ``n``-th time ``name`` is reached when ``JTWIN_SERVE_CRASH=name:n`` (tests only)."""
    point, _, count = _CRASH.partition(":")
    if point != name:
        return
    with _crash_lock:
        _crash_counts[name] = _crash_counts.get(name, 0) + 1
        if _crash_counts[name] >= int(count or 1):
            os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class TwinRecord:
    """A twin's state (``{path: array}``) and its step bookkeeping."""

    twin_id: str
    state: dict[str, np.ndarray]
    steps: int = 0
    t: float | None = None
    last_digest: str | None = None
    last_response: dict | None = field(default=None, repr=False)

    def meta(self) -> dict:
        return {
            "id": self.twin_id,
            "paths": list(self.state),
            "steps": self.steps,
            "t": self.t,
            "last_digest": self.last_digest,
            "last_response": self.last_response,
        }


class StateStore:
    """Twin records under ``directory`` (created if missing)."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.unreadable: dict[str, str] = {}  # twin id -> why its record could not be read (load_all)

    def path(self, twin_id: str) -> Path:
        return self.directory / f"{twin_id}{_SUFFIX}"

    def save(self, record: TwinRecord) -> None:
        """Persist ``record`` atomically and durably (temp file + fsync + rename + directory fsync)."""
        arrays = {f"a{i}": np.asarray(v) for i, v in enumerate(record.state.values())}
        arrays["meta"] = np.array(json.dumps(record.meta()))
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{record.twin_id}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            crash_point("after-fsync")
            os.replace(tmp, self.path(record.twin_id))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def load_all(self) -> dict[str, TwinRecord]:
        """Every readable persisted record, by twin id; leftover temporary files of interrupted writes are
        removed, and records that cannot be read go to :attr:`unreadable` (``{id: "FILE: reason"}``)."""
        for tmp in self.directory.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        records, self.unreadable = {}, {}
        for file in sorted(self.directory.glob(f"*{_SUFFIX}")):
            twin_id = file.name.removesuffix(_SUFFIX)
            try:
                records[twin_id] = self._read(file, twin_id)
            except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, EOFError) as exc:
                self.unreadable[twin_id] = f"{file}: {type(exc).__name__}: {exc}"
        return records

    @staticmethod
    def _read(file: Path, twin_id: str) -> TwinRecord:
        with np.load(file, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            state = {p: z[f"a{i}"] for i, p in enumerate(meta["paths"])}
        if meta["id"] != twin_id:
            raise ValueError(f"the record is of twin {meta['id']!r}")
        return TwinRecord(meta["id"], state, meta["steps"], meta["t"], meta["last_digest"], meta["last_response"])
