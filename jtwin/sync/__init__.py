"""S — synchronisation: timestamps, strict/loose classification, time-offset analysis, delay compensation."""

from .offset import critical_offset, delayed_loop_matrix, delayed_spectral_radius, input_error, input_error_gain
from .timing import SyncReport, classify_sync, misalignment

__all__ = [
    "SyncReport",
    "classify_sync",
    "critical_offset",
    "delayed_loop_matrix",
    "delayed_spectral_radius",
    "input_error",
    "input_error_gain",
    "misalignment",
]
