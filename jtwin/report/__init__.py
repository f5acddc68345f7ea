"""jtwin.report — what a ``jtwin run`` leaves behind: ``report.json``, PNG plots, and the plant's words.

* :func:`vocabulary`: names, units and one-line explanations of a plant's states, inputs and KPIs;
* :class:`CompileTimer`: wall time split into compilation and run;
* :func:`run_report` / :func:`write_report`: the JSON document of a run;
* :func:`save_figures`: states, inputs and KPI-distribution plots;
* :func:`write_run`: all of it into one directory (``runs/<config>-<time>/`` by default, :func:`default_run_dir`).
"""

from __future__ import annotations

import time
from pathlib import Path

from .document import SCHEMA, run_report, write_report
from .timing import CompileTimer
from .vocabulary import KPIDescription, PlantVocabulary, vocabulary


def default_run_dir(config: str | Path, root: str | Path = "runs") -> Path:
    """A fresh ``runs/<config stem>-<YYYYmmdd-HHMMSS>[-k]/`` path (not created)."""
    base = Path(root) / f"{Path(config).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, k = base, 1
    while path.exists():
        k += 1
        path = base.with_name(f"{base.name}-{k}")
    return path


def write_run(result, out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.json`` and the plots of a :class:`jtwin.run.RunResult` into ``out_dir``; returns the paths."""
    from .plots import save_figures  # matplotlib only when plots are written

    return {"report": write_report(result, out_dir), **save_figures(result, out_dir)}


__all__ = [
    "SCHEMA",
    "CompileTimer",
    "KPIDescription",
    "PlantVocabulary",
    "default_run_dir",
    "run_report",
    "vocabulary",
    "write_report",
    "write_run",
]
