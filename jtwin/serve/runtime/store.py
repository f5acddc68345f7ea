"""Durable twin records: one ``.npz`` file per twin, replaced atomically on every acknowledged step.

A record holds the twin's state arrays (bit-exact, any dtype), the number of steps
taken, the time of the last step and the digest and response of the last step
request (so a client that retries a step whose answer it never received gets the
same answer instead of a second step).  :meth:`StateStore.save` writes a temporary
file in the same directory, ``fsync``s it, ``os.replace``s it over the record and
``fsync``s the directory: a reader (or a restart after ``kill -9``) sees the old
record or the new one, never a mix.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TWIN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_SUFFIX = ".twin.npz"


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
        """Every persisted record, by twin id; leftover temporary files of interrupted writes are removed."""
        for tmp in self.directory.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        records = {}
        for file in sorted(self.directory.glob(f"*{_SUFFIX}")):
            with np.load(file, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                state = {p: z[f"a{i}"] for i, p in enumerate(meta["paths"])}
            records[meta["id"]] = TwinRecord(
                meta["id"], state, meta["steps"], meta["t"], meta["last_digest"], meta["last_response"]
            )
        return records
