"""The configured building twin (KF + MPC) served over real HTTP on 127.0.0.1: API, bad input,
durability (kill -9), load, no-jtwin runtime."""

import http.client
import json
import os
import re
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest

import jtwin.serve as serve
from jtwin import Twin

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "building.toml"
HORIZON = 24  # configs/building.toml [controller] horizon
LOAD_STEPS = 20  # per client in the default load test (the slow one runs 500)


class Server:
    """A serving subprocess (``python -m jtwin.serve`` unless ``argv`` says otherwise) on a free loopback port;
    ``cache``: a directory for jax's persistent compilation cache."""

    def __init__(self, artifact, state_dir=None, *, argv=None, cwd=REPO, cache=None):
        argv = argv or [sys.executable, "-m", "jtwin.serve", str(artifact)]
        argv = [*argv, "--host", "127.0.0.1", "--port", "0"]
        if state_dir is not None:
            argv += ["--state-dir", str(state_dir)]
        env = dict(os.environ)
        if cache is not None:  # jax's persistent compilation cache: restarts skip the XLA compile
            env |= {"JAX_COMPILATION_CACHE_DIR": str(cache), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = []
        reader = threading.Thread(target=lambda: lines.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout=180)
        match = re.search(r"http://127\.0\.0\.1:(\d+)", lines[0] if lines else "")
        if match is None:
            self.proc.kill()
            raise RuntimeError(f"server did not start: {self.proc.stderr.read()}")
        self.port = int(match.group(1))

    def request(self, method, path, body=None, *, raw=None, headers=None, conn=None):
        own = conn is None
        conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        conn.request(method, path, body=data, headers=headers or {})
        resp = conn.getresponse()
        payload = json.loads(resp.read())
        if own:
            conn.close()
        return resp.status, payload

    def kill(self):
        self.proc.kill()  # SIGKILL: no chance to flush or clean up
        self.proc.wait(timeout=30)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    """The configured twin, the reference (``Twin.step`` jitted in process), its artifact and a compile cache."""
    twin, state0 = serve.twin_from_config(str(CONFIG))
    path = tmp_path_factory.mktemp("artifact") / "step.jtx"
    path.write_bytes(serve.export_twin(twin, state0))
    return twin, state0, eqx.filter_jit(Twin.step), path, tmp_path_factory.mktemp("jax-cache")


@pytest.fixture(scope="module")
def server(twin, tmp_path_factory):
    srv = Server(twin[3], tmp_path_factory.mktemp("state"), cache=twin[4])
    yield srv
    srv.stop()


def forecast(t):
    """Disturbance forecast [N, 2] from hour ``t``: outdoor temperature 5 ± 5 °C over a day, midday sun."""
    hours = t + np.arange(HORIZON)
    phase = 2 * np.pi * hours / 24
    return np.column_stack([5 + 5 * np.sin(phase - np.pi / 2), np.maximum(0.0, 0.5 * np.sin(phase - np.pi / 2))])


def measurements(steps, seed=0):
    """Step bodies ``{t, y, d}`` (``y`` as JSON lists, ``None`` = missing entry), hourly from t = 1."""
    rng = np.random.default_rng(seed)
    ys = (21 + 0.5 * rng.normal(size=(steps, 3))).tolist()
    for k in range(2, steps, 5):
        ys[k][k % 3] = None
    return [{"t": float(k + 1), "y": y, "d": forecast(k + 1.0).tolist()} for k, y in enumerate(ys)]


def reference(twin, seq, mean0=None):
    """Uninterrupted in-process run of the jitted ``Twin.step``: the inputs ``u`` and the final state."""
    tw, state0, jitted = twin[:3]
    state = state0
    if mean0 is not None:
        state = serve.arrays_to_tree({**serve.tree_to_arrays(state0), "belief.mean": jnp.asarray(mean0)}, state0)
    us = []
    for body in seq:
        y = jnp.array([np.nan if v is None else v for v in body["y"]])
        u, state = jitted(tw, state, y, jnp.asarray(body["t"], jnp.float64), jnp.asarray(body["d"]))
        us.append(np.asarray(u))
    return np.array(us), serve.tree_to_arrays(state)


def assert_state_equal(served: dict, expected: dict):
    assert list(served) == list(expected)
    for path in expected:
        got = np.array(served[path], dtype=float).reshape(np.shape(expected[path]))  # null (NaN) -> nan
        np.testing.assert_allclose(got, np.asarray(expected[path], float), rtol=1e-12, atol=1e-12, err_msg=path)


def test_create_step_read_back_match_the_in_process_step(server, twin):
    mean0 = [19.0, 19.5, 20.0, 18.0, 18.0, 18.5]
    status, created = server.request("POST", "/twins/zone-a", {"state": {"belief.mean": mean0}, "t": 0.0})
    assert status == 201 and created["step"] == 0 and created["state"]["belief.mean"] == mean0
    seq = measurements(12)
    us_ref, final_ref = reference(twin, seq, mean0)
    for k, body in enumerate(seq):
        status, out = server.request("POST", "/twins/zone-a/step", body)
        assert status == 200, out
        assert (out["step"], out["t"], out["replayed"]) == (k + 1, body["t"], False)
        np.testing.assert_allclose(out["u"], us_ref[k], rtol=1e-12, atol=1e-12)
    status, got = server.request("GET", "/twins/zone-a")
    assert status == 200 and got["step"] == 12 and got["t"] == 12.0
    assert_state_equal(got["state"], final_ref)
    assert got["state"]["plan.iterations"] > 1 and got["state"]["inputs"] == []  # MPC ran; no delay buffer


Y, D = [21.0, 21.0, 21.0], forecast(9.0).tolist()
D_NULL = [row[:] for row in D]
D_NULL[3][0] = None
BAD_REQUESTS = [
    # (method, path, body or raw bytes, headers, status, field, message fragment)
    ("POST", "/twins/zone-b/step", b"{not json", {}, 400, "body", "not valid JSON"),
    ("POST", "/twins/zone-b/step", b"[1, 2]", {}, 400, "body", "expected a JSON object"),
    ("POST", "/twins/zone-b/step", {"t": 9.0, "y": [21.0, 21.0], "d": D}, {}, 400, "y", "expected shape [3], got [2]"),
    ("POST", "/twins/zone-b/step", {"t": 9.0, "y": [Y], "d": D}, {}, 400, "y", "expected shape [3]"),
    ("POST", "/twins/zone-b/step", {"t": 9.0, "y": [21.0, [1.0], 21.0], "d": D}, {}, 400, "y", "rectangular"),
    ("POST", "/twins/zone-b/step", {"t": 9.0, "y": [21.0, "hot", 21.0], "d": D}, {}, 400, "y", "expected numbers"),
    ("POST", "/twins/zone-b/step", {"t": 9.0, "y": [21.0, True, 21.0], "d": D}, {}, 400, "y", "expected numbers"),
    ("POST", "/twins/zone-b/step", b'{"t": 9.0, "y": [21.0, NaN, 21.0]}', {}, 400, "body", "NaN"),
    ("POST", "/twins/zone-b/step", b'{"t": 9.0, "y": [21.0, Infinity, 21.0]}', {}, 400, "body", "Infinity"),
    ("POST", "/twins/zone-b/step", json.dumps({"t": 9.0, "y": Y, "d": D}).replace("21.0", "1e999", 1).encode(),
     {}, 400, "y", "finite"),
    ("POST", "/twins/zone-b/step", {"t": None, "y": Y, "d": D}, {}, 400, "t", "finite"),
    ("POST", "/twins/zone-b/step", {"t": "9", "y": Y, "d": D}, {}, 400, "t", "expected numbers"),
    ("POST", "/twins/zone-b/step", {"y": Y, "d": D}, {}, 400, "t", "missing"),
    ("POST", "/twins/zone-b/step", {"t": 9.0, "d": D}, {}, 400, "y", "missing"),
    ("POST", "/twins/zone-b/step", {"t": 9.0, "y": Y}, {}, 400, "d", "missing"),
    ("POST", "/twins/zone-b/step", {"t": 9.0, "y": Y, "d": D[1:]}, {}, 400, "d", "expected shape [24, 2], got [23, 2]"),
    ("POST", "/twins/zone-b/step", {"t": 9.0, "y": Y, "d": D[0]}, {}, 400, "d", "expected shape [24, 2], got [2]"),
    ("POST", "/twins/zone-b/step", {"t": 9.0, "y": Y, "d": D_NULL}, {}, 400, "d", "expected finite numbers"),
    ("POST", "/twins/zone-b/step", {"t": 9.0, "y": Y, "d": D, "u": [0]}, {}, 400, "u", "unexpected field"),
    ("POST", "/twins/zone-b/step", {"t": 2.0, "y": Y, "d": D}, {}, 409, "t", "out of order"),
    ("POST", "/twins/zone-b/step", {"t": 3.0, "y": Y, "d": D}, {}, 409, "t", "out of order"),
    ("POST", "/twins/nobody/step", {"t": 9.0, "y": Y, "d": D}, {}, 404, "id", "no twin"),
    ("GET", "/twins/nobody", None, {}, 404, "id", "no twin"),
    ("GET", "/twins/..%2Fetc", None, {}, 400, "id", "invalid twin id"),
    ("POST", "/twins/zone-b", {}, {}, 409, "id", "already exists"),
    ("POST", "/twins/zone-c", {"state": {"belief.mean": [1.0] * 5}}, {}, 400, "state.belief.mean", "shape [6]"),
    ("POST", "/twins/zone-c", {"state": {"belief.nope": 1.0}}, {}, 400, "state.belief.nope", "unknown state entry"),
    ("POST", "/twins/zone-c", {"state": {"belief.mean": [None] * 6}}, {}, 400, "state.belief.mean", "finite"),
    ("POST", "/twins/zone-c", {"state": {"k": 1.5}}, {}, 400, "state.k", "expected integers"),
    ("POST", "/twins/zone-b/step", b"x" * (2 << 20), {}, 413, "body", "over the limit"),
    ("DELETE", "/twins/zone-b", None, {}, 405, "method", "not allowed"),
    ("GET", "/twins/zone-b/step", None, {}, 405, "method", "not allowed"),
    ("GET", "/nowhere", None, {}, 404, "path", "no such endpoint"),
]


def test_bad_input_is_a_4xx_naming_the_field_and_changes_nothing(server, twin):
    seq = measurements(3, seed=1)
    assert server.request("POST", "/twins/zone-b", {})[0] == 201
    for body in seq:
        assert server.request("POST", "/twins/zone-b/step", body)[0] == 200
    before = server.request("GET", "/twins/zone-b")[1]
    for method, path, body, headers, status, field, fragment in BAD_REQUESTS:
        raw = body if isinstance(body, bytes) else None
        got, out = server.request(method, path, None if raw else body, raw=raw, headers=headers)
        assert (got, out["error"]["field"]) == (status, field), (method, path, out)
        assert fragment in out["error"]["message"], (fragment, out)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)  # POST without Content-Length
    conn.putrequest("POST", "/twins/zone-b/step")
    conn.endheaders()
    resp = conn.getresponse()
    assert (resp.status, json.loads(resp.read())["error"]["field"]) == (411, "Content-Length")
    conn.close()
    assert server.request("GET", "/twins/zone-b")[1] == before
    assert server.request("GET", "/twins/zone-c")[0] == 404  # no failed create left a twin behind
    # the twin still steps exactly as if no bad request had been made
    seq += [{"t": 4.0, "y": [21.2, None, 20.9], "d": forecast(4.0).tolist()}]
    us_ref, final_ref = reference(twin, seq)
    status, out = server.request("POST", "/twins/zone-b/step", seq[-1])
    assert status == 200 and out["step"] == 4
    np.testing.assert_allclose(out["u"], us_ref[-1], rtol=1e-12, atol=1e-12)
    assert_state_equal(server.request("GET", "/twins/zone-b")[1]["state"], final_ref)


def test_retry_of_the_last_step_is_answered_again_not_applied_twice(server):
    assert server.request("POST", "/twins/zone-r", {})[0] == 201
    body = {"t": 1.0, "y": [21.0, 20.0, 22.0], "d": D}
    first = server.request("POST", "/twins/zone-r/step", body)[1]
    status, again = server.request("POST", "/twins/zone-r/step", body)
    assert status == 200 and again["replayed"] is True
    assert {**again, "replayed": False} == first
    assert server.request("GET", "/twins/zone-r")[1]["step"] == 1
    status, out = server.request("POST", "/twins/zone-r/step", {**body, "d": forecast(1.0).tolist()})
    assert (status, out["error"]["field"]) == (409, "t")  # same t with other inputs is not a retry


def test_outlier_readings_are_gated_and_the_heaters_stay_in_their_box(server, twin):
    """The issue's readings through the served building twin: 1e6 once drove u to -0.75 kW and the next step to
    10.31 kW, 1e300 poisoned the twin for good.  Now each is rejected (``events.rejected``), every input stays in
    [0, 10] kW and the twin steps on as one that never saw the reading."""
    tw, state, jitted = twin[:3]
    rng, seq, us_ref = np.random.default_rng(4), [], []
    for k in range(8):  # readings the twin expects (its predicted output + noise), step 4's simply missing
        y = np.asarray(tw.model.H) @ np.asarray(state.belief.mean) + 0.05 * rng.normal(size=3)
        seq.append({"t": k + 1.0, "y": y.tolist(), "d": forecast(k + 1.0).tolist()})
        y_ref = jnp.full(3, jnp.nan) if k == 3 else jnp.asarray(y)
        u, state = jitted(tw, state, y_ref, jnp.asarray(k + 1.0), jnp.asarray(seq[-1]["d"]))
        us_ref.append(np.asarray(u))
    for name, outlier in (("gate-a", 1e6), ("gate-b", 1e300), ("gate-c", 65535.0)):
        assert server.request("POST", f"/twins/{name}", {})[0] == 201
        us = []
        for k, body in enumerate(seq):
            if k == 3:
                body = {**body, "y": [outlier, 20.0, 20.0]}
            status, out = server.request("POST", f"/twins/{name}/step", body)
            assert status == 200, out
            assert out["events"] == {"rejected": int(k == 3), "reset": 0, "fallback": 0}, (name, k, out)
            us.append(out["u"])
        assert np.all(np.isfinite(us)) and np.min(us) >= 0.0 and np.max(us) <= 10.0, (name, us)
        np.testing.assert_allclose(us, us_ref, rtol=1e-9, atol=1e-9)
        state = server.request("GET", f"/twins/{name}")[1]["state"]
        assert (state["rejections"], state["resets"], state["fallbacks"]) == (1, 0, 0)
    assert server.request("GET", "/metrics")[1]["events"]["rejected"] >= 3


def test_created_states_are_validated_and_retries_compared_by_value(server):
    status, out = server.request("POST", "/twins/bad-cov", {"state": {"belief.cov": (-np.eye(6)).tolist()}})
    assert (status, out["error"]["field"]) == (400, "state.belief.cov") and "semi-definite" in out["error"]["message"]
    assert server.request("GET", "/twins/bad-cov")[0] == 404
    assert server.request("POST", "/twins/fmt", {"t": -100.5})[0] == 201
    text = json.dumps({"t": -99.5, "y": [20.0, 20.0, 20.0], "d": D})
    assert server.request("POST", "/twins/fmt/step", raw=text.encode())[0] == 200
    status, again = server.request("POST", "/twins/fmt/step", raw=text.replace("20.0", "20").encode())
    assert status == 200 and again["replayed"] is True  # was 409 "t=-99.5 is not after t=-99.5"
    status, out = server.request("POST", "/twins/fmt/step", {"t": -99.0, "y": Y, "d": D})  # half an hour on
    assert (status, out["error"]["field"]) == (409, "t") and "period=1.0" in out["error"]["message"]
    assert server.request("POST", "/twins/fmt/step", {"t": -98.5, "y": Y, "d": D})[0] == 200


def test_requests_to_one_twin_are_serialised(server):
    assert server.request("POST", "/twins/zone-s", {})[0] == 201

    def client(i):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        answers = [server.request("POST", "/twins/zone-s/step", {"t": 1.0 + j, "y": [21.0, 21.0, 21.0 + i], "d": D},
                                  conn=conn) for j in range(6)]
        conn.close()
        return answers

    with ThreadPoolExecutor(4) as pool:
        answers = [a for chunk in pool.map(client, range(4)) for a in chunk]
    accepted = sorted((out["step"], out["t"]) for status, out in answers if status == 200)
    assert all(status in (200, 409) for status, _ in answers)
    assert [s for s, _ in accepted] == list(range(1, len(accepted) + 1))  # no step number given twice
    assert all(a[1] < b[1] for a, b in zip(accepted, accepted[1:]))  # applied in time order
    assert server.request("GET", "/twins/zone-s")[1]["step"] == len(accepted)


def run_load(server, twin, clients, steps, prefix):
    """``clients`` concurrent keep-alive clients, each driving its own twin through ``steps`` steps."""
    seq = measurements(steps, seed=2)

    def client(i):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        errors = [server.request("POST", f"/twins/{prefix}{i}", {}, conn=conn)[0] != 201]
        for body in seq:
            status, out = server.request("POST", f"/twins/{prefix}{i}/step", body, conn=conn)
            errors.append(status != 200 or out["replayed"])
        conn.close()
        return sum(errors)

    with ThreadPoolExecutor(clients) as pool:
        assert sum(pool.map(client, range(clients))) == 0
    _, final_ref = reference(twin, seq)
    for i in range(clients):
        got = server.request("GET", f"/twins/{prefix}{i}")[1]
        assert got["step"] == steps  # no step lost
        assert_state_equal(got["state"], final_ref)


def test_load_8_clients_no_errors_no_lost_steps(server, twin):
    run_load(server, twin, clients=8, steps=LOAD_STEPS, prefix="load")


@pytest.mark.slow
def test_load_8_clients_500_steps(server, twin):
    run_load(server, twin, clients=8, steps=500, prefix="big")


def test_metrics_and_health(server):
    status, health = server.request("GET", "/healthz")
    assert status == 200 and health["status"] == "ok" and health["durable"] is True
    assert health["artifact"]["inputs"] == ["y", "t", "d"] and health["artifact"]["platforms"] == ["cpu"]
    server.request("GET", "/twins/nobody")
    status, metrics = server.request("GET", "/metrics")
    assert status == 200
    assert metrics["requests"]["GET /twins/{id}"]["404"] >= 1
    assert metrics["requests"]["GET /healthz"]["200"] >= 1
    lat = metrics["latency_ms"]["GET /twins/{id}"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"] and lat["count"] >= 1


def test_kill_9_and_restart_continue_exactly(twin, tmp_path):
    """Runs the copied standalone runtime (``python -m jtwin_runtime``: starts faster than ``-m jtwin.serve``)."""
    artifact, cache = twin[3], twin[4]
    state_dir = tmp_path / "state"
    serve.write_runtime(tmp_path)
    argv = [sys.executable, "-m", "jtwin_runtime", str(artifact)]
    seq = measurements(12, seed=3)
    srv = Server(artifact, state_dir, argv=argv, cwd=tmp_path, cache=cache)
    try:
        assert srv.request("POST", "/twins/k9", {})[0] == 201
        for body in seq[:6]:
            assert srv.request("POST", "/twins/k9/step", body)[0] == 200
        # send step 7 and kill the server before reading the answer: the client never learns the outcome
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
        conn.request("POST", "/twins/k9/step", body=json.dumps(seq[6]))
    finally:
        srv.kill()
    conn.close()
    srv = Server(artifact, state_dir, argv=argv, cwd=tmp_path, cache=cache)
    try:
        assert srv.request("GET", "/twins/k9")[1]["step"] in (6, 7)
        for body in seq[6:]:  # the client retries step 7, then continues
            status, out = srv.request("POST", "/twins/k9/step", body)
            assert status == 200, out
        got = srv.request("GET", "/twins/k9")[1]
    finally:
        srv.stop()
    assert got["step"] == 12
    assert_state_equal(got["state"], reference(twin, seq)[1])
    assert not list(state_dir.glob(".*.tmp"))


BLOCKED_RUNTIME = textwrap.dedent(
    """
    import json, sys, threading, urllib.request

    BLOCKED = {"jtwin", "equinox", "diffrax", "optax", "jaxtyping", "lineax", "optimistix"}

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked in this test")

    sys.meta_path.insert(0, Blocker())
    try:
        import jtwin
    except ImportError:
        pass
    else:
        sys.exit("jtwin was importable")

    def top():
        return {m.split(".")[0] for m in sys.modules}

    import jax, jax.numpy as jnp, numpy
    jax.config.update("jax_enable_x64", True)
    jnp.linalg.solve(jnp.eye(2), jnp.ones(2))  # what jax itself loads to run (its LAPACK pulls in scipy)
    baseline = top()

    from jtwin_runtime import make_server, open_service
    service = open_service(open(sys.argv[1], "rb").read(), sys.argv[2])
    server = make_server(service, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"

    def post(path, body):
        req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST")
        return json.loads(urllib.request.urlopen(req).read())

    post("/twins/solo", {})
    out = post("/twins/solo/step", json.loads(sys.argv[3]))
    extra = sorted(top() - baseline - set(sys.stdlib_module_names) - {"jtwin_runtime"})
    print(json.dumps({"u": out["u"], "extra": extra, "jtwin": [m for m in sys.modules if m.startswith("jtwin.")]}))
    """
)


def test_runtime_serves_without_jtwin(twin, tmp_path):
    serve.write_runtime(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "JTWIN_ENABLE_X64")}
    env |= {"JAX_COMPILATION_CACHE_DIR": str(twin[4]), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    body = {"t": 1.0, "y": [21.0, None, 20.5], "d": forecast(1.0).tolist()}
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKED_RUNTIME, str(twin[3]), str(tmp_path / "state"), json.dumps(body)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["extra"] == [] and result["jtwin"] == []
    u_ref, _ = reference(twin, [body])
    np.testing.assert_allclose(result["u"], u_ref[0], rtol=1e-12, atol=1e-12)


def test_store_round_trips_bit_exactly_and_drops_interrupted_writes(tmp_path):
    from jtwin.serve.runtime import StateStore, TwinRecord

    store = StateStore(tmp_path)
    state = {"belief.mean": np.array([0.1, np.pi, np.nan]), "k": np.array(7, np.int32), "inputs": np.zeros((0, 3))}
    store.save(TwinRecord("a", state, 3, 2.5, "d1", {"u": [0.1]}))
    (tmp_path / ".a.crash.tmp").write_bytes(b"half a record")  # what a kill -9 mid-write leaves
    (rec,) = store.load_all().values()
    assert (rec.twin_id, rec.steps, rec.t, rec.last_digest, rec.last_response) == ("a", 3, 2.5, "d1", {"u": [0.1]})
    np.testing.assert_array_equal(rec.state["belief.mean"], state["belief.mean"])
    assert rec.state["k"].dtype == np.int32 and rec.state["k"] == 7
    assert rec.state["inputs"].shape == (0, 3)
    assert not list(tmp_path.glob(".*.tmp"))


def test_service_refuses_foreign_records_and_keeps_state_when_persisting_fails(tmp_path, monkeypatch):
    """Generic service behaviour, on a one-line step (cheap to compile): x⁺ = x + y, u = x⁺."""
    from jtwin.serve.runtime import ApiError, StateStore, TwinRecord, TwinService

    def step(state, y, t):
        return state["x"] + y, {"x": state["x"] + y}

    loaded = serve.load_step(serve.export_step(step, {"x": jnp.zeros(3)}, jnp.zeros(3), jnp.asarray(0.0)))
    foreign = StateStore(tmp_path / "foreign")
    foreign.save(TwinRecord("x", {"x": np.zeros(4)}))
    with pytest.raises(serve.ArtifactError, match=r"twin 'x' was saved with a state that does not fit"):
        TwinService(loaded, foreign)
    service = TwinService(loaded, StateStore(tmp_path / "ok"))
    service.create("t1", {})
    assert service.advance("t1", {"t": 1.0, "y": [1.0, 2.0, 3.0]})[1]["u"] == [1.0, 2.0, 3.0]
    before = service.read("t1")

    def disk_full(record):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(service.store, "save", disk_full)
    with pytest.raises(ApiError) as err:
        service.advance("t1", {"t": 2.0, "y": [21.0, 21.0, 21.0]})
    assert (err.value.status, err.value.field) == (507, "state-dir")
    assert service.read("t1") == before
