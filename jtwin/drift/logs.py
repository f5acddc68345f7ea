"""Reading drift logs (CSV / NPZ) and the text report behind ``jtwin drift CONFIG --ref LOG --new LOG``.

Log formats
-----------
**CSV**: one header row of column names, then one row per sample (comma
separated, numeric and finite; an error names the file line and column).  Columns named ``t``, ``time`` or ``timestamp`` are
ignored; columns whose name starts with ``r_`` or ``residual`` are model
residuals ``r = y − f(x)``; every other column is an input feature.  Pass
``residual_columns`` to name the residual columns explicitly instead.

**NPZ** (``numpy.savez``): array ``x`` ``[n, dx]`` (inputs) and ``r`` ``[n, dr]``
(residuals), optional string arrays ``x_names`` and ``r_names``.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .detect import detect

TIME_COLUMNS = ("t", "time", "timestamp")
RESIDUAL_PREFIXES = ("r_", "residual")


@dataclass(frozen=True)
class DriftLog:
    """Inputs ``x`` ``[n, dx]`` and residuals ``r`` ``[n, dr]`` of one log, with column names."""

    x: np.ndarray
    r: np.ndarray
    x_names: tuple[str, ...]
    r_names: tuple[str, ...]


def load_log(path: str | Path, residual_columns: Sequence[str] | None = None) -> DriftLog:
    """Read a CSV or NPZ drift log (format in the module docstring).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the
    file and column for unknown formats, non-numeric entries, or a log without
    inputs or residuals.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"drift log not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        log = _load_npz(path)
    elif suffix == ".csv":
        log = _load_csv(path, residual_columns)
    else:
        raise ValueError(f"{path}: expected a .csv or .npz drift log, got {suffix or 'no extension'}")
    for name, arr in (("inputs", log.x), ("residuals", log.r)):
        if arr.shape[0] == 0 or arr.shape[1] == 0:
            raise ValueError(f"{path}: no {name} found (shape {arr.shape}); see jtwin.drift.logs for the format")
    return log


def _load_npz(path: Path) -> DriftLog:
    with np.load(path, allow_pickle=False) as data:
        missing = [key for key in ("x", "r") if key not in data]
        if missing:
            raise ValueError(f"{path}: missing array(s) {missing}; expected 'x' [n, dx] and 'r' [n, dr]")
        x, r = (np.asarray(data[key], dtype=np.float64) for key in ("x", "r"))
        x, r = (a[:, None] if a.ndim == 1 else a for a in (x, r))
        x_names = tuple(str(s) for s in data["x_names"]) if "x_names" in data else tuple(f"x{i}" for i in range(x.shape[1]))
        r_names = tuple(str(s) for s in data["r_names"]) if "r_names" in data else tuple(f"r{i}" for i in range(r.shape[1]))
    for key, arr, names in (("x", x, x_names), ("r", r, r_names)):
        bad = np.argwhere(~np.isfinite(arr))
        if bad.size:
            k, j = bad[0]
            raise ValueError(
                f"{path}: array '{key}', sample {k}, column '{names[j]}': value {arr[k, j]}; KS tests need every value finite"
            )
    return DriftLog(x, r, x_names, r_names)


def _load_csv(path: Path, residual_columns: Sequence[str] | None) -> DriftLog:
    with path.open(newline="") as fh:
        lines = [(i + 1, row) for i, row in enumerate(csv.reader(fh)) if any(c.strip() for c in row)]
    if not lines:
        raise ValueError(f"{path}: empty drift log; expected a header row and numeric rows")
    header = [h.strip() for h in lines[0][1]]
    data = np.empty((len(lines) - 1, len(header)))
    for r, (line_no, cells) in enumerate(lines[1:]):
        if len(cells) != len(header):
            raise ValueError(f"{path}:{line_no}: row has {len(cells)} values, the header has {len(header)} columns")
        for j, text in enumerate(cells):
            try:
                data[r, j] = float(text)
            except ValueError:
                raise ValueError(f"{path}:{line_no}: column '{header[j]}': non-numeric value {text.strip()!r}") from None
            if not np.isfinite(data[r, j]):
                raise ValueError(
                    f"{path}:{line_no}: column '{header[j]}': value {text.strip()!r}; KS tests need every value finite "
                    "(drop the row)"
                )
    if residual_columns is not None:
        unknown = sorted(set(residual_columns) - set(header))
        if unknown:
            raise ValueError(f"residual_columns: {unknown} not in the columns of {path}: {header}")
        is_residual = [h in residual_columns for h in header]
    else:
        is_residual = [h.lower().startswith(RESIDUAL_PREFIXES) for h in header]
    keep = [h.lower() not in TIME_COLUMNS for h in header]
    x_idx = [i for i, h in enumerate(header) if keep[i] and not is_residual[i]]
    r_idx = [i for i, h in enumerate(header) if keep[i] and is_residual[i]]
    return DriftLog(
        data[:, x_idx], data[:, r_idx], tuple(header[i] for i in x_idx), tuple(header[i] for i in r_idx)
    )


def cli_report(
    ref_path: str | Path,
    new_path: str | Path,
    *,
    alpha: float = 0.05,
    correction: str = "bonferroni",
    min_effect: float = 0.0,
    residual_columns: Sequence[str] | None = None,
) -> str:
    """Text report for ``jtwin drift``: KS tests of the new log against the reference log, and the decision."""
    ref = load_log(ref_path, residual_columns)
    new = load_log(new_path, residual_columns)
    if (ref.x_names, ref.r_names) != (new.x_names, new.r_names):
        raise ValueError(
            f"{new_path}: columns {new.x_names + new.r_names} differ from the reference log's {ref.x_names + ref.r_names}"
        )
    report = detect(
        ref.x, new.x, ref.r, new.r, alpha, correction,
        min_effect=min_effect, input_names=ref.x_names, residual_names=ref.r_names,
    )
    return f"reference: {ref_path}\nnew:       {new_path}\n{report.table()}"
