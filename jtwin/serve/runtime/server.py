"""HTTP/JSON serving of an exported twin step (standard library, numpy and jax only).

API (every body and answer is a JSON object; errors are ``{"error": {"status", "field",
"message"}}`` with a 4xx status naming the offending field, and leave every twin unchanged):

* ``POST /twins/{id}`` ``{"state"?: {path: value}, "t"?: t0}`` — create a twin from the
  artifact's example state, with the given state entries replaced (201; 409 if it exists).
* ``POST /twins/{id}/step`` ``{"t": t, "y": [...], <other step inputs>}`` — run one step;
  answers ``{"id", "step", "t", "u", <other non-state results>, "replayed"}``.  Every
  argument of the artifact after ``state`` is a required field (for a twin whose model has
  disturbances: ``"d"``, the forecast [N, p] as nested lists), checked for shape and
  finiteness like ``y``; ``t`` must increase strictly; ``null`` entries of ``y`` (only
  ``y``) are missing measurements.  The new state is persisted before the answer is sent;
  a retry of the last acknowledged request (same body) gets the same answer back
  (``"replayed": true``) rather than a second step.
* ``GET /twins/{id}`` — ``{"id", "step", "t", "state": {path: value}}`` (NaN as ``null``).
* ``GET /healthz`` — liveness, artifact summary.  ``GET /metrics`` — request counts by
  route and status, latency quantiles (ms) over the last 10 000 requests of each route.

Requests to one twin are serialised by a per-twin lock; different twins run in parallel
(one thread per connection; XLA releases the GIL while a step executes).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import signal
import sys
import threading
import time
import traceback
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jax
import numpy as np

from .artifact import ArtifactError, LoadedStep, decode_array, encode_array, load_step, needs_x64, unpack
from .store import TWIN_ID, StateStore, TwinRecord

STATE = "state"
MAX_BODY = 1 << 20
_QUANTILE_WINDOW = 10_000
_DRAIN_LIMIT = 16  # oversized bodies up to this many times the limit are drained before the 413


class ApiError(Exception):
    """A request the server refuses: HTTP ``status``, the offending ``field`` and a message."""

    def __init__(self, status: int, field_: str, message: str):
        super().__init__(message)
        self.status, self.field, self.message = status, field_, message

    def payload(self) -> dict:
        return {"error": {"status": self.status, "field": self.field, "message": self.message}}


class Metrics:
    """Thread-safe request counts per (route, status) and latency samples per route."""

    def __init__(self):
        self._lock = threading.Lock()
        self._counts: Counter = Counter()
        self._latency: dict[str, deque] = {}
        self._started = time.time()

    def record(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self._counts[(route, status)] += 1
            self._latency.setdefault(route, deque(maxlen=_QUANTILE_WINDOW)).append(seconds)

    def snapshot(self) -> dict:
        with self._lock:
            counts = dict(self._counts)
            samples = {route: np.array(d) * 1e3 for route, d in self._latency.items()}
        requests: dict[str, dict[str, int]] = {}
        for (route, status), n in sorted(counts.items()):
            requests.setdefault(route, {})[str(status)] = n
        latency = {
            route: {
                "count": int(ms.size),
                "mean": float(ms.mean()),
                **{f"p{q}": float(np.percentile(ms, q)) for q in (50, 90, 99)},
                "max": float(ms.max()),
            }
            for route, ms in samples.items()
        }
        return {"uptime_s": time.time() - self._started, "requests": requests, "latency_ms": latency}


@dataclass
class _Twin:
    record: TwinRecord
    lock: threading.Lock = field(default_factory=threading.Lock)


class TwinService:
    """The twins behind the API: validation, stepping, persistence (no HTTP in here).

    ``step`` must be a twin step: its first argument is ``state`` and one of its results
    is ``state`` with the same arrays; the argument named by the artifact's ``time_arg``
    is the (scalar) timestamp.
    """

    def __init__(self, step: LoadedStep, store: StateStore | None = None):
        header = step.header
        self.step = step
        self.store = store
        self.state_spec = step.args[0]
        if self.state_spec.name != STATE or STATE not in [r.name for r in step.results]:
            raise ArtifactError("artifact: not a twin step (expected a first argument and a result named 'state')")
        if next(r for r in step.results if r.name == STATE).leaves != self.state_spec.leaves:
            raise ArtifactError("artifact: the 'state' result has different arrays than the 'state' argument")
        self.inputs = step.args[1:]
        self.time_arg = header.get("time_arg")
        if self.time_arg not in [g.name for g in self.inputs] or step.arg(self.time_arg).leaves[0].shape != ():
            raise ArtifactError(f"artifact: time_arg {self.time_arg!r} is not a scalar argument of the step")
        self.missing_ok = set(header.get("missing_ok", ()))
        self.metrics = Metrics()
        self._lock = threading.Lock()
        self._twins = {tid: _Twin(rec) for tid, rec in (store.load_all() if store else {}).items()}
        for twin in self._twins.values():
            self._check_record(twin.record)

    def _check_record(self, rec: TwinRecord) -> None:
        for leaf in self.state_spec.leaves:
            value = rec.state.get(leaf.path)
            if value is None or value.shape != leaf.shape or value.dtype != leaf.dtype:
                raise ArtifactError(
                    f"state-dir: twin {rec.twin_id!r} was saved with a state that does not fit this artifact "
                    f"(state.{leaf.path}); serve it with the artifact that created it or use another --state-dir"
                )

    def _twin(self, twin_id: str) -> _Twin:
        with self._lock:
            twin = self._twins.get(twin_id)
        if twin is None:
            raise ApiError(404, "id", f"no twin with id {twin_id!r}; create it with POST /twins/{twin_id}")
        return twin

    def _persist(self, record: TwinRecord) -> None:
        if self.store is not None:
            try:
                self.store.save(record)
            except OSError as exc:
                raise ApiError(507, "state-dir", f"could not persist twin {record.twin_id!r}: {exc}") from exc

    # -- endpoints -------------------------------------------------------------------------
    def create(self, twin_id: str, body: dict) -> tuple[int, dict]:
        _only(body, {"state", "t"})
        state = self.step.example(STATE)
        overrides = body.get("state", {})
        if not isinstance(overrides, dict):
            raise ApiError(400, "state", "expected an object {path: value} of initial state arrays")
        paths = {leaf.path: leaf for leaf in self.state_spec.leaves}
        for path, value in overrides.items():
            if path not in paths:
                raise ApiError(400, f"state.{path}", f"unknown state entry; expected some of {sorted(paths)}")
            arr = _decode(value, paths[path], f"state.{path}")
            if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
                raise ApiError(400, f"state.{path}", "expected finite numbers (no null, NaN or inf)")
            state[path] = arr
        t0 = _time(body["t"], "t") if "t" in body else None
        record = TwinRecord(twin_id, state, 0, t0)
        with self._lock:
            if twin_id in self._twins:
                raise ApiError(409, "id", f"twin {twin_id!r} already exists")
            self._persist(record)
            self._twins[twin_id] = _Twin(record)
        return 201, self._describe(record)

    def read(self, twin_id: str) -> tuple[int, dict]:
        twin = self._twin(twin_id)
        with twin.lock:
            return 200, self._describe(twin.record)

    def advance(self, twin_id: str, body: dict) -> tuple[int, dict]:
        twin = self._twin(twin_id)
        _only(body, {g.name for g in self.inputs})
        values = [self._decode_input(group, body) for group in self.inputs]
        t = float(values[[g.name for g in self.inputs].index(self.time_arg)])
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        with twin.lock:
            rec = twin.record
            if rec.t is not None and t <= rec.t:
                if t == rec.t and digest == rec.last_digest:
                    return 200, {**rec.last_response, "replayed": True}
                raise ApiError(
                    409, self.time_arg, f"out of order: t={t!r} is not after the last acknowledged t={rec.t!r}"
                )
            leaves = [rec.state[leaf.path] for leaf in self.state_spec.leaves] + values
            out = iter(jax.device_get(self.step.call_flat(leaves)))
            response = {"id": twin_id, "step": rec.steps + 1, "t": t}
            new_state = None
            for group in self.step.results:
                arrays = {leaf.path: np.asarray(next(out)) for leaf in group.leaves}
                if group.name == STATE:
                    new_state = arrays
                    continue
                for arr in arrays.values():
                    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
                        raise ApiError(500, group.name, "the step produced non-finite values; twin state unchanged")
                response[group.name] = encode_array(arrays[""]) if group.is_array else {
                    p: encode_array(a) for p, a in arrays.items()
                }
            record = TwinRecord(twin_id, new_state, rec.steps + 1, t, digest, response)
            self._persist(record)
            twin.record = record
        return 200, {**response, "replayed": False}

    @property
    def twin_count(self) -> int:
        with self._lock:
            return len(self._twins)

    def health(self) -> tuple[int, dict]:
        header = self.step.header
        n = self.twin_count
        return 200, {
            "status": "ok",
            "twins": n,
            "durable": self.store is not None,
            "artifact": {
                "payload_sha256": header["payload_sha256"],
                "config_sha256": header.get("config_sha256"),
                "platforms": list(self.step.platforms),
                "jax_version": header.get("jax_version"),
                "jtwin_version": header.get("jtwin_version"),
                "inputs": [g.name for g in self.inputs],
            },
            "runtime": {"jax_version": jax.__version__, "device": str(self.step.device)},
        }

    # -- helpers ---------------------------------------------------------------------------
    def _decode_input(self, group, body: dict) -> np.ndarray:
        if group.name not in body:
            raise ApiError(400, group.name, f"missing; a step needs {[g.name for g in self.inputs]}")
        if not group.is_array:
            raise ApiError(500, group.name, "pytree step inputs other than the state are not servable")
        arr = _decode(body[group.name], group.leaves[0], group.name)
        bad = np.isinf(arr) if group.name in self.missing_ok else ~np.isfinite(arr)
        if arr.dtype.kind == "f" and np.any(bad):
            hint = " (null marks a missing entry)" if group.name in self.missing_ok else ""
            raise ApiError(400, group.name, f"expected finite numbers{hint}")
        return arr

    def _describe(self, rec: TwinRecord) -> dict:
        return {
            "id": rec.twin_id,
            "step": rec.steps,
            "t": rec.t,
            "state": {path: encode_array(v) for path, v in rec.state.items()},
        }


def _only(body: dict, allowed: set[str]) -> None:
    for key in body:
        if key not in allowed:
            raise ApiError(400, key, f"unexpected field; expected only {sorted(allowed)}")


def _decode(value, spec, name: str) -> np.ndarray:
    try:
        return decode_array(value, spec, name)
    except ValueError as exc:
        raise ApiError(400, name, str(exc).removeprefix(f"{name}: ")) from exc


def _time(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise ApiError(400, name, f"expected a finite number, got {value!r}")
    return float(value)


def _reject_constant(token: str):
    raise ValueError(f"non-standard JSON constant {token} (use null for a missing measurement)")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse one connection for many steps
    disable_nagle_algorithm = True  # TCP_NODELAY: headers and body must not wait for a delayed ACK (~40 ms)
    server_version = "jtwin-serve"
    timeout = 60
    service: TwinService
    max_body: int

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def log_message(self, format, *args):  # noqa: A002 (signature of the base class)
        pass  # request logging would dominate the step latency; see GET /metrics

    def _dispatch(self, method: str) -> None:
        start = time.perf_counter()
        route = "unrouted"
        try:
            route, action, allowed = self._route()
            if method not in allowed:
                raise ApiError(405, "method", f"{method} is not allowed on {route}; use {' or '.join(allowed)}")
            body = self._body() if method == "POST" else None
            status, payload = action(method, body)
        except ApiError as exc:
            status, payload = exc.status, exc.payload()
        except Exception as exc:  # a bug: answer 500 and keep serving
            traceback.print_exc(file=sys.stderr)
            status, payload = 500, ApiError(500, "server", f"internal error: {type(exc).__name__}: {exc}").payload()
        self._send(status, payload)
        self.service.metrics.record(f"{method} {route}", status, time.perf_counter() - start)

    def _route(self):
        parts = self.path.split("?", 1)[0].strip("/").split("/")
        service = self.service
        if parts == ["healthz"]:
            return "/healthz", lambda m, b: service.health(), ("GET",)
        if parts == ["metrics"]:
            return "/metrics", lambda m, b: (200, service.metrics.snapshot()), ("GET",)
        if len(parts) in (2, 3) and parts[0] == "twins" and parts[2:] in ([], ["step"]):
            twin_id = parts[1]
            if not TWIN_ID.fullmatch(twin_id):
                raise ApiError(
                    400, "id", f"invalid twin id {twin_id!r}; use 1-64 of [A-Za-z0-9_.-], not starting with . - _"
                )
            if len(parts) == 3:
                return "/twins/{id}/step", lambda m, b: service.advance(twin_id, b), ("POST",)
            return (
                "/twins/{id}",
                lambda m, b: service.create(twin_id, b) if m == "POST" else service.read(twin_id),
                ("GET", "POST"),
            )
        raise ApiError(404, "path", f"no such endpoint {self.path!r}")

    def _body(self) -> dict:
        length = self.headers.get("Content-Length")
        if length is None:
            self.close_connection = True
            raise ApiError(
                411, "Content-Length", "a POST needs a Content-Length header (chunked bodies are not accepted)"
            )
        try:
            n = int(length)
        except ValueError:
            self.close_connection = True
            raise ApiError(400, "Content-Length", f"not an integer: {length!r}") from None
        if n > self.max_body:
            self.close_connection = True
            if n <= _DRAIN_LIMIT * self.max_body:  # read and drop it, so the client gets the answer, not a reset
                while n > 0:
                    n -= len(self.rfile.read(min(n, 1 << 16))) or n
            raise ApiError(413, "body", f"{length} bytes is over the limit of {self.max_body} bytes")
        raw = self.rfile.read(n)
        try:
            body = json.loads(raw or b"{}", parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, "body", f"not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "body", f"expected a JSON object, got {type(body).__name__}")
        return body

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload, allow_nan=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)


def make_server(service: TwinService, host: str = "127.0.0.1", port: int = 8080, max_body: int = MAX_BODY):
    """A ``ThreadingHTTPServer`` answering the API for ``service`` (call ``serve_forever()``)."""
    handler = type("Handler", (_Handler,), {"service": service, "max_body": max_body})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def open_service(artifact: bytes, state_dir: str | None = None) -> TwinService:
    """Load ``artifact`` (enabling jax's x64 mode if it needs it), warm it up, restore twins from ``state_dir``."""
    header, _ = unpack(artifact)
    if needs_x64(header):
        jax.config.update("jax_enable_x64", True)
    step = load_step(artifact)
    example = [step.example(g.name) for g in step.args]
    jax.block_until_ready(step(*[e[""] if g.is_array else e for g, e in zip(step.args, example)]))  # compile now
    return TwinService(step, StateStore(state_dir) if state_dir else None)


def main(argv: list[str] | None = None, prog: str = "jtwin serve") -> int:
    parser = argparse.ArgumentParser(prog=prog, description="Serve an exported twin step over HTTP/JSON.")
    add_arguments(parser)
    return run(parser.parse_args(argv), prog)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The serve command's arguments (shared by ``jtwin serve`` and ``python -m jtwin.serve``)."""
    parser.add_argument("artifact", help="step artifact written by `jtwin export` / jtwin.serve.export_step")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=8080, help="TCP port (0 picks a free one)")
    parser.add_argument("--state-dir", default=None, help="directory of durable twin state (omit: in memory only)")
    parser.add_argument("--max-body", type=int, default=MAX_BODY, help="largest accepted request body in bytes")


def run(args: argparse.Namespace, prog: str = "jtwin serve") -> int:
    """Start the server for parsed ``args``; returns an exit code (2 for a bad artifact or state dir)."""
    try:
        service = open_service(Path(args.artifact).read_bytes(), args.state_dir)
        server = make_server(service, args.host, args.port, args.max_body)
    except (OSError, ArtifactError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    if service.store is None:
        print(f"{prog}: no --state-dir: twin state lives in memory only and is lost on exit", file=sys.stderr)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"{prog}: listening on http://{host}:{port} ({service.twin_count} twins restored)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
