import gc

import jax
import pytest

import jtwin  # noqa: F401  (enables float64 before any test builds arrays)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_code():
    """Drop JAX's compiled executables after each test module.  Each one keeps memory mappings, and a
    worker that runs the whole suite reached Linux's limit of 65,530 (``vm.max_map_count``): XLA then
    crashed in the middle of a compilation (a segfault or abort in CI)."""
    yield
    jax.clear_caches()
    gc.collect()
