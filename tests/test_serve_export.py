"""jtwin.serve export/load of the configured building twin (KF + MPC): round trip against the
in-process jitted ``Twin.step``, metadata, versions, errors, ``jtwin export``."""

import argparse
import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtwin.serve as serve
from jtwin import Twin
from jtwin.serve.runtime import artifact as art

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "building.toml"
HORIZON, DISTURBANCES = 24, 2  # configs/building.toml: [controller] horizon; outdoor temperature and sun


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    """The configured twin, the reference step (``Twin.step`` jitted in process) and the CLI's artifact."""
    twin, state0 = serve.twin_from_config(str(CONFIG))
    parser = argparse.ArgumentParser()
    serve.add_cli(parser.add_subparsers(dest="command"))
    out = tmp_path_factory.mktemp("artifact") / "step.jtx"
    args = parser.parse_args(["export", str(CONFIG), "--out", str(out), "--platforms", "cpu,cuda"])
    assert args.func(args) == 0
    return twin, state0, eqx.filter_jit(Twin.step), out.read_bytes()


def random_inputs(rng, twin, state0):
    """A random twin state (belief, MPC warm start, counters), measurement with one missing entry, time, forecast."""
    n, ny = twin.model.state_dim, twin.model.output_dim
    a = rng.normal(size=(n, n))
    arrays = serve.tree_to_arrays(state0)
    changes = {
        "belief.mean": 20 + rng.normal(size=n),
        "belief.cov": a @ a.T + 0.1 * np.eye(n),
        "plan.u": rng.uniform(0, 10, size=arrays["plan.u"].shape),
        "plan.z": arrays["plan.z"] + rng.normal(size=arrays["plan.z"].shape),
        "nis": rng.uniform(),
        "k": rng.integers(0, 100),
    }
    arrays |= {p: jnp.asarray(v, arrays[p].dtype) for p, v in changes.items()}
    state = serve.arrays_to_tree(arrays, state0)
    y = 21 + rng.normal(size=ny)
    y[rng.integers(ny)] = np.nan
    d = np.column_stack([rng.uniform(-10, 10, HORIZON), rng.uniform(0, 0.5, HORIZON)])
    return state, jnp.asarray(y), jnp.asarray(rng.uniform(0, 48)), jnp.asarray(d)


def assert_close(got, ref, what):
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-12, atol=1e-12, err_msg=what)


def test_round_trip_matches_jitted_twin_step_on_random_inputs(twin):
    tw, state0, jitted, data = twin
    loaded = serve.load_step(data)
    rng = np.random.default_rng(0)
    for _ in range(3):
        state, y, t, d = random_inputs(rng, tw, state0)
        u_ref, s_ref = jitted(tw, state, y, t, d)
        u, s = loaded(state, y, t, d)
        assert_close(u, u_ref, "u")
        ref = serve.tree_to_arrays(s_ref)
        assert list(s) == list(ref)
        for path in ref:
            assert_close(s[path], ref[path], path)
        assert int(s["plan.iterations"]) > 1  # the ADMM loop ran inside the artifact
        # the named-array state feeds straight back in, and rebuilds the original pytree type
        u2, _ = loaded(s, y, t + 1.0, d)
        u2_ref, _ = jitted(tw, s_ref, y, t + 1.0, d)
        assert_close(u2, u2_ref, "u after a second step")
        assert isinstance(serve.arrays_to_tree(s, state0), type(state0))


def test_header_records_layout_versions_and_hashes(twin):
    tw, state0, jitted, data = twin
    header, payload = art.unpack(data)
    assert header["jax_version"] == jax.__version__
    assert header["jtwin_version"] == __import__("jtwin").__version__
    assert header["platforms"] == ["cpu", "cuda"]
    assert header["config_sha256"] == hashlib.sha256(CONFIG.read_bytes()).hexdigest()
    assert header["payload_sha256"] == hashlib.sha256(payload).hexdigest()
    assert [g["name"] for g in header["args"]] == ["state", "y", "t", "d"]
    assert [g["name"] for g in header["results"]] == ["u", "state"]
    assert header["args"][1]["leaves"] == [{"path": "", "shape": [3], "dtype": "float64"}]
    assert header["args"][3]["leaves"] == [{"path": "", "shape": [HORIZON, DISTURBANCES], "dtype": "float64"}]
    # the state's arrays are what Twin.step returns (the served state is a fixed point of the step)
    _, returned = jax.eval_shape(lambda s: tw.step(s, jnp.zeros(3), 0.0, jnp.zeros((HORIZON, DISTURBANCES))), state0)
    expected = [
        {"path": p, "shape": list(x.shape), "dtype": x.dtype.name}
        for p, x in zip(serve.leaf_paths(returned), jax.tree.leaves(returned))
    ]
    assert header["args"][0]["leaves"] == header["results"][1]["leaves"] == expected
    assert {"belief.mean", "belief.cov", "plan.u", "plan.z", "nis", "prior.cov", "resets"} <= {
        leaf["path"] for leaf in expected
    }
    assert (header["covariances"], header["events"], header["period"]) == (
        ["belief.cov", "prior.cov"], ["rejected", "reset", "fallback"], 1.0
    )
    example = serve.load_step(data).example("state")
    np.testing.assert_array_equal(example["belief.mean"], [20.0, 20.0, 20.0, 18.0, 18.0, 18.0])  # simulation.x0
    np.testing.assert_array_equal(example["belief.cov"], np.eye(6))  # estimator.cov0 = 1
    assert example["inputs"].shape == (0, 3)  # empty delay buffer survives JSON
    assert np.isnan(example["nis"])  # NaN survives the JSON header (as null)


def test_artifact_for_an_absent_platform_is_refused(twin):
    tw, state0, _, _ = twin
    data = serve.export_twin(tw, state0, platforms=("cuda",))
    with pytest.raises(serve.ArtifactError, match=r"platforms \['cuda'\].*this runtime has cpu"):
        serve.load_step(data)


def _retagged(data: bytes, **changes) -> bytes:
    header, payload = art.unpack(data)
    return art.pack({**header, **changes}, payload)


def test_version_and_integrity_checks_give_clear_errors(twin):
    data = twin[-1]
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


def test_loaded_step_validates_its_arguments(twin):
    tw, state0, _, data = twin
    _, y, t, d = serve.twin_example_args(tw, state0)
    loaded = serve.load_step(data)
    with pytest.raises(ValueError, match=r"expected 4 arguments \(state, y, t, d\)"):
        loaded(state0, y, t)
    with pytest.raises(ValueError, match=r"y: expected shape \[3\], got \[2\]"):
        loaded(state0, y[:2], t, d)
    with pytest.raises(ValueError, match=r"d: expected shape \[24, 2\], got \[23, 2\]"):
        loaded(state0, y, t, d[1:])
    named = serve.tree_to_arrays(state0)
    named["belief.cov"] = named["belief.cov"][:2]
    with pytest.raises(ValueError, match=r"state\.belief\.cov: expected shape \[6, 6\]"):
        loaded(named, y, t, d)


def test_export_rejects_bad_steps():
    y0, t0 = jnp.zeros(3), jnp.asarray(0.0)
    with pytest.raises(ValueError, match=r"state\.name: expected an array leaf"):
        serve.export_step(lambda s, y, t: (y, s), {"name": "zone-1"}, y0, t0)
    with pytest.raises(ValueError, match="same arrays"):
        serve.export_step(lambda s, y, t: (y, s[:2]), jnp.zeros(3), y0, t0)
    with pytest.raises(ValueError, match="same arrays"):  # a typed (not weak) state leaf whose dtype changes
        serve.export_step(lambda s, y, t: (y, s.astype(jnp.float32)), jnp.zeros(3), y0, t0)
    with pytest.raises(ValueError, match="arg_names: required for 2 arguments"):
        serve.export_step(lambda s, y: (y, s), jnp.zeros(3), y0)

    def with_callback(s, y, t):
        v = jax.pure_callback(np.sin, jax.ShapeDtypeStruct(y.shape, y.dtype), y)
        return v, s

    with pytest.raises(ValueError, match="fn: jax.export cannot export"):
        serve.export_step(with_callback, jnp.zeros(3), y0, t0)


def test_weakly_typed_state_counters_take_the_returned_dtype():
    """A counter made with ``jnp.asarray(0)`` (weak int64) that the step returns as int32 is served as int32."""

    def step(s, y, t):
        return y, {"n": (s["n"] + 1).astype(jnp.int32), "x": s["x"] + y}

    data = serve.export_step(step, {"n": jnp.asarray(0), "x": jnp.zeros(3)}, jnp.ones(3), jnp.asarray(0.0))
    leaves = art.unpack(data)[0]["args"][0]["leaves"]
    assert [(leaf["path"], leaf["dtype"]) for leaf in leaves] == [("n", "int32"), ("x", "float64")]


def test_float64_artifact_needs_x64_in_a_fresh_interpreter(twin, tmp_path):
    path = tmp_path / "step.jtx"
    path.write_bytes(twin[-1])
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


def test_export_refuses_a_platform_jax_does_not_know(tmp_path, capsys):
    """``--platforms bogus`` once exited 0 and was refused only when served."""
    from jtwin.cli import main

    out = tmp_path / "step.jtx"
    assert main(["export", str(CONFIG), "--out", str(out), "--platforms", "cpu,bogus"]) == 2
    assert "platforms: 'bogus' is not a jax platform" in capsys.readouterr().err and not out.exists()
    with pytest.raises(ValueError, match="^platforms: 'gpu0'"):
        serve.export_step(lambda s, y, t: (y, s), jnp.zeros(3), jnp.zeros(3), jnp.asarray(0.0), platforms=("gpu0",))


def test_cli_serve_arguments(tmp_path):
    parser = argparse.ArgumentParser()
    serve.add_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "step.jtx", "--port", "0", "--state-dir", str(tmp_path)])
    assert (args.host, args.port, args.state_dir) == ("127.0.0.1", 0, str(tmp_path))
