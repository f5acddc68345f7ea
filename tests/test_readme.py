"""Every ```python block of the README runs as written (the README's examples must not rot)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 1


# Examples that compile for 20-55 s each on a 2-core CI machine run with `make test-slow`; each is named by a
# call only it makes, so an edit elsewhere in the README does not move the marks.
HEAVY = ("jt.learn.tune(", "fit(BuildingRC", "jt.simulate.simulate(", "jt.twin.Twin.from_model(", "jax.vmap(mpc.solve)",
         "jt.qp.InteriorPoint()")  # fmt: skip
CASES = [pytest.param(i, marks=pytest.mark.slow) if any(k in b for k in HEAVY) else i for i, b in enumerate(BLOCKS)]


def test_heavy_markers_each_name_one_example():
    assert all(sum(k in b for b in BLOCKS) == 1 for k in HEAVY)


@pytest.mark.parametrize("index", CASES)
def test_readme_example_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    namespace: dict = {"__name__": f"readme_example_{index}"}
    exec(compile(BLOCKS[index], f"README.md[python block {index}]", "exec"), namespace)


SERVING = """
import sys
import jtwin as jt

assert "jtwin.serve" not in sys.modules  # imported lazily, on first use of jt.serve
twin, state0 = jt.serve.twin_from_config(path)
data = jt.serve.export_twin(twin, state0)
step = jt.serve.load_step(data)
print(type(step).__name__, len(data))
"""


def test_readme_serving_api_runs_after_import_jtwin(tmp_path):
    """The README's "From Python:" serving calls, in a fresh interpreter that only ran ``import jtwin``."""
    import subprocess
    import sys

    text = " ".join(README.read_text().split())
    for call in ("jt.serve.twin_from_config(path)", "jt.serve.export_twin(twin, state0)", "jt.serve.load_step(data)"):
        assert call in text
    config = tmp_path / "tiny.toml"
    config.write_text(
        '[plant]\nkind = "building"\n[plant.params]\nzones = 1\n[simulation]\nx0 = [20.0, 18.0]\n'
        "[controller]\nhorizon = 3\nsetpoint = 21.0\numin = 0.0\numax = 5.0\n"
    )
    code = f"path = {str(config)!r}\n" + SERVING
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[0] == "LoadedStep" and int(done.stdout.split()[1]) > 1000
