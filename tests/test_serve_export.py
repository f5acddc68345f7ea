"""jtwin.serve export/load: round trip against the in-process jitted step, metadata, versions, errors."""

import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtwin.serve as serve
from jtwin.serve.runtime import artifact as art

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "building.toml"


@pytest.fixture(scope="module")
def demo():
    step, state0 = serve.building_demo()
    y0 = jnp.array([20.5, 21.0, 20.8])
    t0 = jnp.asarray(0.0)
    jitted = jax.jit(lambda s, y, t: step(s, y, t))
    data = serve.export_step(step, state0, y0, t0, config=b"[plant]\nkind = 'building'\n")
    return step, state0, y0, t0, jitted, data


def random_inputs(rng, state0, ny):
    n = state0.belief.mean.shape[0]
    a = rng.normal(size=(n, n))
    state = jax.tree.map(jnp.asarray, state0)
    state = type(state0)(
        serve.Gaussian(jnp.asarray(20 + rng.normal(size=n)), jnp.asarray(a @ a.T + 0.1 * np.eye(n))),
        jnp.asarray(rng.uniform(0, 10, size=state0.u.shape)),
        jnp.asarray(rng.uniform()),
        jnp.asarray(rng.integers(0, 100), state0.k.dtype),
    )
    y = 21 + rng.normal(size=ny)
    y[rng.integers(ny)] = np.nan  # one missing measurement
    return state, jnp.asarray(y), jnp.asarray(rng.uniform(0, 48))


def test_round_trip_matches_jitted_step_on_random_inputs(demo):
    step, state0, y0, _, jitted, data = demo
    loaded = serve.load_step(data)
    rng = np.random.default_rng(0)
    for _ in range(5):
        state, y, t = random_inputs(rng, state0, y0.shape[0])
        u_ref, s_ref = jitted(state, y, t)
        u, s = loaded(state, y, t)
        np.testing.assert_allclose(u, u_ref, rtol=1e-12, atol=1e-12)
        ref = serve.tree_to_arrays(s_ref)
        assert list(s) == list(ref) == ["belief.mean", "belief.cov", "u", "nis", "k"]
        for path in ref:
            np.testing.assert_allclose(s[path], ref[path], rtol=1e-12, atol=1e-12, err_msg=path)
        # the named-array state feeds straight back in, and rebuilds the original pytree type
        u2, _ = loaded(s, y, t + 1.0)
        u2_ref, _ = jitted(s_ref, y, t + 1.0)
        np.testing.assert_allclose(u2, u2_ref, rtol=1e-12, atol=1e-12)
        rebuilt = serve.arrays_to_tree(s, state0)
        assert isinstance(rebuilt, type(state0))


def test_header_records_layout_versions_and_hashes(demo):
    _, state0, _, _, _, data = demo
    header, payload = art.unpack(data)
    assert header["jax_version"] == jax.__version__
    assert header["jtwin_version"] == __import__("jtwin").__version__
    assert header["platforms"] == ["cpu"]
    assert header["config_sha256"] == hashlib.sha256(b"[plant]\nkind = 'building'\n").hexdigest()
    assert header["payload_sha256"] == hashlib.sha256(payload).hexdigest()
    assert [g["name"] for g in header["args"]] == ["state", "y", "t"]
    assert [g["name"] for g in header["results"]] == ["u", "state"]
    leaves = {leaf["path"]: (tuple(leaf["shape"]), leaf["dtype"]) for leaf in header["args"][0]["leaves"]}
    assert leaves == {
        "belief.mean": ((6,), "float64"),
        "belief.cov": ((6, 6), "float64"),
        "u": ((3,), "float64"),
        "nis": ((), "float64"),
        "k": ((), "int32"),
    }
    assert header["args"][1]["leaves"] == [{"path": "", "shape": [3], "dtype": "float64"}]
    loaded = serve.load_step(data)
    example = loaded.example("state")
    np.testing.assert_array_equal(example["belief.cov"], state0.belief.cov)
    assert np.isnan(example["nis"])  # NaN survives the JSON header (as null)


def test_multi_platform_export_serialises_and_runs_on_cpu(demo):
    step, state0, y0, t0, jitted, _ = demo
    data = serve.export_step(step, state0, y0, t0, platforms=("cpu", "cuda"))
    loaded = serve.load_step(data)
    assert loaded.platforms == ("cpu", "cuda")
    assert art.unpack(data)[0]["platforms"] == ["cpu", "cuda"]
    np.testing.assert_allclose(loaded(state0, y0, t0)[0], jitted(state0, y0, t0)[0], rtol=1e-12)


def test_artifact_for_an_absent_platform_is_refused(demo):
    step, state0, y0, t0, _, _ = demo
    data = serve.export_step(step, state0, y0, t0, platforms=("cuda",))
    with pytest.raises(serve.ArtifactError, match=r"platforms \['cuda'\].*this runtime has cpu"):
        serve.load_step(data)


def _retagged(data: bytes, **changes) -> bytes:
    header, payload = art.unpack(data)
    return art.pack({**header, **changes}, payload)


def test_version_and_integrity_checks_give_clear_errors(demo):
    data = demo[-1]
    newer = _retagged(data, jax_version="99.0.0")
    with pytest.raises(serve.ArtifactError, match=rf"jax 99\.0\.0, newer than this runtime's jax {jax.__version__}"):
        serve.load_step(newer)
    assert serve.load_step(newer, strict=False) is not None  # explicit opt-out
    with pytest.raises(serve.ArtifactError, match="calling_convention_version 999"):
        serve.load_step(_retagged(data, calling_convention_version=999))
    with pytest.raises(serve.ArtifactError, match="format_version 2"):
        serve.load_step(_retagged(data, format_version=2))
    with pytest.raises(serve.ArtifactError, match="payload_sha256"):
        serve.load_step(data[:-10] + b"0123456789")
    with pytest.raises(serve.ArtifactError, match="magic"):
        serve.load_step(b"PK" + data)
    with pytest.raises(serve.ArtifactError, match="truncated header"):
        serve.load_step(data[:30])


def test_loaded_step_validates_its_arguments(demo):
    _, state0, y0, t0, _, data = demo
    loaded = serve.load_step(data)
    with pytest.raises(ValueError, match=r"expected 3 arguments \(state, y, t\)"):
        loaded(state0, y0)
    with pytest.raises(ValueError, match=r"y: expected shape \[3\], got \[2\]"):
        loaded(state0, y0[:2], t0)
    named = serve.tree_to_arrays(state0)
    named["belief.cov"] = named["belief.cov"][:2]
    with pytest.raises(ValueError, match=r"state\.belief\.cov: expected shape \[6, 6\]"):
        loaded(named, y0, t0)


def test_export_rejects_bad_steps(demo):
    step, state0, y0, t0, _, _ = demo
    with pytest.raises(ValueError, match=r"state\.name: expected an array leaf"):
        serve.export_step(step, {"name": "zone-1"}, y0, t0)
    with pytest.raises(ValueError, match="same arrays"):
        serve.export_step(lambda s, y, t: (y, s[:2]), jnp.zeros(3), y0, t0)
    with pytest.raises(ValueError, match="arg_names: required for 2 arguments"):
        serve.export_step(lambda s, y: (y, s), jnp.zeros(3), y0)

    def with_callback(s, y, t):
        v = jax.pure_callback(np.sin, jax.ShapeDtypeStruct(y.shape, y.dtype), y)
        return v, s

    with pytest.raises(ValueError, match="fn: jax.export cannot export"):
        serve.export_step(with_callback, jnp.zeros(3), y0, t0)


def test_float64_artifact_needs_x64_in_a_fresh_interpreter(demo, tmp_path):
    path = tmp_path / "step.jtx"
    path.write_bytes(demo[-1])
    code = textwrap.dedent(
        f"""
        from jtwin.serve.runtime.artifact import ArtifactError, load_step
        try:
            load_step(open({str(path)!r}, "rb").read())
        except ArtifactError as exc:
            print(exc)
        """
    )
    env = {"JTWIN_ENABLE_X64": "0", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert "jax_enable_x64 is off" in out.stdout, out.stderr


def test_cli_export_writes_a_loadable_artifact(tmp_path):
    import argparse

    parser = argparse.ArgumentParser()
    serve.add_cli(parser.add_subparsers(dest="command"))
    out = tmp_path / "step.jtx"
    args = parser.parse_args(["export", str(CONFIG), "--out", str(out), "--platforms", "cpu,cuda"])
    assert args.func(args) == 0
    header, _ = art.unpack(out.read_bytes())
    assert header["config_sha256"] == hashlib.sha256(CONFIG.read_bytes()).hexdigest()
    assert header["platforms"] == ["cpu", "cuda"]
    args = parser.parse_args(["serve", str(out), "--port", "0", "--state-dir", str(tmp_path)])
    assert (args.host, args.port, args.state_dir) == ("127.0.0.1", 0, str(tmp_path))
