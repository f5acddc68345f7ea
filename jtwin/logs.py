"""Plant logs: timestamps, inputs, measurements and optional disturbances, read from CSV or NPZ.

A log is what a plant historian records: at each timestamp ``t[k]`` the input ``u[k]`` that
was applied over ``[t[k], t[k+1])``, the measurement ``y[k]`` of the state ``x[k]`` and, when
known, the disturbance ``d[k]`` — the convention of :meth:`jtwin.models.AbstractModel.simulate`
and :func:`jtwin.estimation.run_filter`.

CSV format
----------
Lines starting with ``#`` are comments.  The first other line is the header; then one row
per sample, comma separated::

    # reactor log, 2024-05-01
    t [min], u_Tc [K], y_T [K], d_Caf [mol/L], d_Tf [K]
    0.00, 300.0, 350.12, 0.0, 0.0
    0.05, 300.0, , 0.0, 0.0            <- empty cell: T not measured at this sample
    0.10, 302.0, nan, 0.0, 0.0         <- so is "nan"

* exactly one time column, named ``t``, ``time`` or ``timestamp`` (lower case); strictly increasing
  (irregular spacing is allowed: see :attr:`PlantLog.dt`);
* every other column has a role prefix: ``u_`` input, ``y_`` measurement, ``d_``
  disturbance; columns keep their file order within a role (that is the model's order);
* an optional unit in brackets after the name, ``y_T [K]``; :func:`load_log` can check units;
* measurements may be missing (empty cell or ``nan``): a missing entry is NaN in ``y`` and
  filters skip it; time, inputs and disturbances must be present and finite.

NPZ format (``numpy.savez``)
----------------------------
Arrays ``t`` [T], ``u`` [T, m], ``y`` [T, ny] (NaN = missing), optional ``d`` [T, p]; optional
string arrays ``u_names``/``y_names``/``d_names`` and ``u_units``/``y_units``/``d_units``/``t_unit``.

Every validation error names the file, the row (file line for CSV, sample index for NPZ)
and the column.
"""

from __future__ import annotations

import csv
import dataclasses
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TIME_NAMES = ("t", "time", "timestamp")
OUTLIER_THRESHOLD = 10.0  # robust noise scales from the local median beyond which a reading is flagged
ROLES = ("u", "y", "d")
_ROLE_TITLES = {"u": "input", "y": "measurement", "d": "disturbance"}
_HEADER = re.compile(r"^\s*(?P<name>[^\[\]]*?)\s*(?:\[(?P<unit>[^\[\]]*)\])?\s*$")


@dataclass(frozen=True)
class PlantLog:
    """A validated plant log (NumPy arrays; convert with ``jnp.asarray`` where needed).

    * ``t`` [T]: strictly increasing timestamps;
    * ``u`` [T, m]: inputs (finite); ``y`` [T, ny]: measurements, NaN = missing;
    * ``d`` [T, p]: disturbances (finite; ``p = 0`` when the log has none);
    * ``names``: column names per role, ``{"u": (...), "y": (...), "d": (...)}`` (without prefix);
    * ``units``: unit per column ``{"u_Tc": "K", ...}`` and ``"t"`` for time (``""`` = none given).

    The constructor validates shapes and values; errors name the row and column.
    """

    t: np.ndarray
    u: np.ndarray
    y: np.ndarray
    d: np.ndarray | None = None
    names: dict[str, tuple[str, ...]] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    source: str = "<arrays>"
    lines: tuple[int, ...] | None = field(default=None, repr=False, compare=False)  # file line of each sample (CSV)

    def where(self, k: int) -> str:
        """Where sample ``k`` is: ``file.csv:LINE`` for a CSV log, else ``source: sample k`` (0-based)."""
        return f"{self.source}:{self.lines[k]}" if self.lines else f"{self.source}: sample {k}"

    def __post_init__(self):
        t = _float_array(self.source, "t", self.t, 1)
        T = t.shape[0]
        if T < 2:
            raise ValueError(f"{self.source}: expected at least 2 samples, got {T}")
        arrays = {"u": self.u, "y": self.y, "d": np.zeros((T, 0)) if self.d is None else self.d}
        names = {}
        for role, value in arrays.items():
            arr = _float_array(self.source, role, value, 2, T)
            arrays[role] = arr
            given = tuple(self.names.get(role, ()))
            if given and len(given) != arr.shape[1]:
                raise ValueError(
                    f"{self.source}: {len(given)} {_ROLE_TITLES[role]} names for array '{role}' with {arr.shape[1]} columns"
                )
            names[role] = given or tuple(f"{role}{i}" for i in range(arr.shape[1]))
        _check_time(t, self.where)
        for role in ("u", "d"):
            bad = np.argwhere(~np.isfinite(arrays[role]))
            if bad.size:
                k, j = bad[0]
                raise ValueError(
                    f"{self.where(k)}: column '{role}_{names[role][j]}': {_ROLE_TITLES[role]} is "
                    f"{arrays[role][k, j]}; inputs and disturbances must be finite (only measurements may be missing)"
                )
        bad = np.argwhere(np.isinf(arrays["y"]))
        if bad.size:
            k, j = bad[0]
            raise ValueError(f"{self.where(k)}: column 'y_{names['y'][j]}': infinite measurement; use NaN for missing")
        object.__setattr__(self, "t", t)
        for role in ROLES:
            object.__setattr__(self, role, arrays[role])
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "units", dict(self.units))

    @property
    def steps(self) -> int:
        """Number of samples T."""
        return self.t.shape[0]

    @property
    def dt(self) -> np.ndarray:
        """Sample intervals ``t[k+1] − t[k]`` [T − 1] (the last sample's interval is not known)."""
        return np.diff(self.t)

    def is_regular(self, dt: float, rtol: float = 1e-6) -> bool:
        """True when every interval equals ``dt`` to relative tolerance ``rtol``."""
        return bool(np.all(np.abs(self.dt - dt) <= rtol * abs(dt)))

    @property
    def missing_fraction(self) -> float:
        """Fraction of measurement entries that are missing (NaN)."""
        return float(np.mean(np.isnan(self.y))) if self.y.size else 0.0

    def outliers(self, threshold: float = OUTLIER_THRESHOLD, window: int = 7) -> np.ndarray:
        """Mask [T, ny] of measurements that are spikes: farther than ``threshold`` robust noise scales from the
        median of their ``window`` neighbours (a Hampel filter).

        The noise scale of each column is ``1.4826 · median|Δy| / √2`` (the MAD of sample-to-sample
        changes, robust to the spikes themselves and to slow trends); a real step in the plant moves
        the window's median with it, a lone wild reading does not.
        """
        y = self.y
        half = window // 2
        padded = np.pad(y, ((half, half), (0, 0)), constant_values=np.nan)
        windows = np.lib.stride_tricks.sliding_window_view(padded, window, axis=0)  # [T, ny, window]
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows / columns
            local = np.nanmedian(windows, axis=-1)
            scale = 1.4826 * np.nanmedian(np.abs(np.diff(y, axis=0)), axis=0) / np.sqrt(2)
            spread = 1.4826 * np.nanmedian(np.abs(y - np.nanmedian(y, axis=0)), axis=0)
            scale = np.maximum(np.where(scale > 0, scale, spread), np.finfo(float).tiny)  # a mostly constant column
            return np.abs(y - local) > threshold * scale

    def describe_outliers(self, mask: np.ndarray, limit: int = 5) -> str:
        """``mask``'s flagged readings as ``file:line column value`` entries (the first ``limit``)."""
        flagged = np.argwhere(mask)
        text = "; ".join(f"{self.where(k)} y_{self.names['y'][j]} = {self.y[k, j]:g}" for k, j in flagged[:limit])
        more = f" and {len(flagged) - limit} more" if len(flagged) > limit else ""
        return f"{len(flagged)} outlier reading(s): {text}{more}"

    def without(self, mask: np.ndarray) -> PlantLog:
        """This log with the measurements under ``mask`` [T, ny] set missing (NaN), e.g. gated outliers."""
        return dataclasses.replace(self, y=np.where(mask, np.nan, self.y))

    def check_model(self, model) -> None:
        """Raise ``ValueError`` unless the log's column counts match ``model``'s (m, ny, p)."""
        for role, dim, what in (
            ("u", model.input_dim, "input_dim"),
            ("y", model.output_dim, "output_dim"),
            ("d", model.disturbance_dim, "disturbance_dim"),
        ):
            have = getattr(self, role).shape[1]
            if have != dim:
                raise ValueError(
                    f"{self.source}: has {have} {_ROLE_TITLES[role]} column(s) {list(self.names[role])}, "
                    f"but the model's {what} is {dim}"
                )


def _float_array(source: str, name: str, value, ndim: int, rows: int | None = None) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source}: array '{name}' is not numeric ({exc})") from exc
    if ndim == 2 and arr.ndim == 1 and rows is not None and arr.shape[0] == rows:
        arr = arr[:, None]
    if arr.ndim != ndim or (rows is not None and arr.shape[0] != rows):
        expected = "(T,)" if ndim == 1 else f"(T, columns) with T = {rows}"
        raise ValueError(f"{source}: array '{name}' has shape {arr.shape}, expected {expected}")
    return arr


def _check_time(t: np.ndarray, where) -> None:
    """Timestamps finite and strictly increasing; ``where(k)`` locates sample k (file and row) in the message."""
    bad = np.flatnonzero(~np.isfinite(t))
    if bad.size:
        raise ValueError(f"{where(bad[0])}: column 't': timestamp is {t[bad[0]]}; timestamps must be finite")
    back = np.flatnonzero(np.diff(t) <= 0)
    if back.size:
        k = back[0] + 1
        raise ValueError(
            f"{where(k)}: column 't': timestamp {t[k]:g} is not after the previous one "
            f"({t[k - 1]:g}); timestamps must be strictly increasing"
        )


def _parse_header(source: str, line_no: int, cells: list[str]):
    """Split header cells into the time column index and ``(role, name, unit)`` per other column."""
    time_idx, columns, seen = None, [], set()
    for j, cell in enumerate(cells):
        match = _HEADER.match(cell)
        full = match.group("name") if match else ""
        unit = (match.group("unit") or "").strip() if match else ""
        if not match or not full:
            raise ValueError(f"{source}:{line_no}: column {j + 1}: malformed header cell {cell!r}; expected 'name' or 'name [unit]'")
        if full in seen:
            raise ValueError(f"{source}:{line_no}: column {j + 1}: duplicate column name {full!r}")
        seen.add(full)
        if full in TIME_NAMES:
            if time_idx is not None:
                raise ValueError(f"{source}:{line_no}: column {j + 1} ({full!r}): a second time column")
            time_idx = j
            columns.append(("t", full, unit))
            continue
        role, _, name = full.partition("_")
        if role not in ROLES or not name:
            raise ValueError(
                f"{source}:{line_no}: column {j + 1} ({full!r}): expected a time column ({'/'.join(TIME_NAMES)}) "
                f"or a name with a role prefix u_ (input), y_ (measurement) or d_ (disturbance)"
            )
        columns.append((role, name, unit))
    if time_idx is None:
        raise ValueError(f"{source}:{line_no}: no time column; name one column {' or '.join(TIME_NAMES)}")
    return columns


def _load_csv(path: Path) -> PlantLog:
    source = str(path)
    with path.open(newline="") as fh:
        rows = [(i + 1, row) for i, row in enumerate(csv.reader(fh)) if row and not row[0].lstrip().startswith("#")]
    rows = [(i, r) for i, r in rows if any(c.strip() for c in r)]
    if not rows:
        raise ValueError(f"{source}: empty log; expected a header row and data rows")
    header_line, header = rows[0]
    columns = _parse_header(source, header_line, header)
    width = len(columns)
    data = np.empty((len(rows) - 1, width))
    for r, (line_no, cells) in enumerate(rows[1:]):
        if len(cells) != width:
            raise ValueError(f"{source}:{line_no}: row has {len(cells)} values, the header has {width} columns")
        for j, cell in enumerate(cells):
            role, name, _ = columns[j]
            label = name if role == "t" else f"{role}_{name}"
            text = cell.strip()
            if text == "" or text.lower() == "nan":
                if role != "y":
                    what = "time" if role == "t" else _ROLE_TITLES[role]
                    raise ValueError(
                        f"{source}:{line_no}: column '{label}': missing {what} value; only measurements (y_) may be missing"
                    )
                data[r, j] = np.nan
                continue
            try:
                data[r, j] = float(text)
            except ValueError:
                raise ValueError(f"{source}:{line_no}: column '{label}': non-numeric value {text!r}") from None
    t_col = next(j for j, c in enumerate(columns) if c[0] == "t")
    pick = {role: [j for j, c in enumerate(columns) if c[0] == role] for role in ROLES}
    return PlantLog(
        t=data[:, t_col],
        u=data[:, pick["u"]],
        y=data[:, pick["y"]],
        d=data[:, pick["d"]],
        names={role: tuple(columns[j][1] for j in idx) for role, idx in pick.items()},
        units={("t" if c[0] == "t" else f"{c[0]}_{c[1]}"): c[2] for c in columns},
        source=source,
        lines=tuple(line for line, _ in rows[1:]),
    )


def _load_npz(path: Path) -> PlantLog:
    source = str(path)
    with np.load(path, allow_pickle=False) as data:
        missing = [key for key in ("t", "u", "y") if key not in data]
        if missing:
            raise ValueError(f"{source}: missing array(s) {missing}; expected 't' [T], 'u' [T, m], 'y' [T, ny], optional 'd' [T, p]")
        arrays = {key: data[key] for key in ("t", "u", "y", "d") if key in data}
        for key, arr in arrays.items():
            if not np.issubdtype(arr.dtype, np.number):
                raise ValueError(f"{source}: array '{key}' has non-numeric dtype {arr.dtype}")
        names = {role: tuple(str(s) for s in data[f"{role}_names"]) for role in ROLES if f"{role}_names" in data}
        units = {}
        for role in ROLES:
            if f"{role}_units" in data:
                role_names = names.get(role) or tuple(f"{role}{i}" for i in range(len(data[f"{role}_units"])))
                units.update({f"{role}_{n}": str(u) for n, u in zip(role_names, data[f"{role}_units"])})
        if "t_unit" in data:
            units["t"] = str(data["t_unit"])
    return PlantLog(arrays["t"], arrays["u"], arrays["y"], arrays.get("d"), names=names, units=units, source=source)


def load_log(path: str | Path, expected_units: dict[str, str] | None = None) -> PlantLog:
    """Read and validate a CSV or NPZ plant log (format in the module docstring).

    ``expected_units``: optional ``{"y_T": "K", "t": "min", ...}``; a column whose unit differs
    (or that is absent) raises ``ValueError``.  Raises ``FileNotFoundError`` for a missing file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"plant log not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        log = _load_csv(path)
    elif suffix == ".npz":
        log = _load_npz(path)
    else:
        raise ValueError(f"{path}: expected a .csv or .npz plant log, got {suffix or 'no extension'}")
    for column, unit in (expected_units or {}).items():
        if column not in log.units:
            raise ValueError(f"{path}: expected a column {column!r} [{unit}]; columns are {sorted(log.units)}")
        if log.units[column] != unit:
            raise ValueError(f"{path}: column {column!r} has unit [{log.units[column]}], expected [{unit}]")
    return log


def save_log(log: PlantLog, path: str | Path) -> Path:
    """Write ``log`` as CSV or NPZ (by the suffix of ``path``); :func:`load_log` reads it back exactly."""
    path = Path(path)
    suffix = path.suffix.lower()
    columns = {role: [f"{role}_{n}" for n in log.names[role]] for role in ROLES}
    if suffix == ".npz":
        extra = {f"{role}_names": np.asarray(log.names[role], dtype=str) for role in ROLES}
        extra.update(
            {f"{role}_units": np.asarray([log.units.get(c, "") for c in columns[role]], dtype=str) for role in ROLES}
        )
        np.savez(path, t=log.t, u=log.u, y=log.y, d=log.d, t_unit=np.asarray(log.units.get("t", "")), **extra)
    elif suffix == ".csv":
        def head(col):
            unit = log.units.get(col, "")
            return f"{col} [{unit}]" if unit else col

        header = [head("t")] + [head(c) for role in ROLES for c in columns[role]]
        body = np.hstack([log.t[:, None], log.u, log.y, log.d])
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            for row in body:
                writer.writerow(["" if np.isnan(v) else repr(float(v)) for v in row])
    else:
        raise ValueError(f"path: expected a .csv or .npz file name, got {path}")
    return path
