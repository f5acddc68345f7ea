"""HTTP/JSON serving of an exported twin step (standard library, numpy and jax only).

API (every body and answer is a JSON object; errors are ``{"error": {"status", "field",
"message"}}`` with a 4xx status naming the offending field, and leave every twin unchanged):

* ``POST /twins/{id}`` ``{"state"?: {path: value}, "t"?: t0}`` — create a twin from the
  artifact's example state, with the given state entries replaced (201; 409 if it exists).
  State entries are checked like constructor inputs: shape, finite, and the artifact's
  covariances (``belief.cov``, ``prior.cov`` of a twin) symmetric PSD.
* ``POST /twins/{id}/reset`` — same body; replaces the state of an existing (or an
  unavailable) twin by the initial one, keeping its step count (200).
* ``POST /twins/{id}/step`` ``{"t": t, "y": [...], <other step inputs>}`` — run one step;
  answers ``{"id", "step", "t", "u", <other non-state results>, "events", "replayed"}``.  Every
  argument of the artifact after ``state`` is a required field (for a twin whose model has
  disturbances: ``"d"``, the forecast [N, p] as nested lists), checked for shape and
  finiteness like ``y``; ``null`` entries of ``y`` (only ``y``) are missing measurements.
  ``t`` orders the steps and, when the artifact records the model's ``period`` (a twin's
  ``dt``), must be the last acknowledged ``t`` plus one period, to 1% of it (409 otherwise:
  the model always advances one period per step; send a missed period as a step with
  ``y`` all ``null``).  ``events`` are the artifact's per-step flags (a twin's ``rejected``,
  ``reset``, ``fallback``), also summed in ``/metrics``.  The new state is persisted before
  the answer is sent; a retry of the last acknowledged request (the same values, however
  formatted) gets the same answer back (``"replayed": true``) rather than a second step.
* ``GET /twins/{id}`` — ``{"id", "step", "t", "state": {path: value}}`` (NaN as ``null``).
* ``GET /healthz`` — liveness, artifact summary, twins whose record could not be read
  (``unavailable``: 503 on their routes until reset).  ``GET /metrics`` — request counts by
  route and status, latency quantiles (ms) over the last 10 000 requests of each route,
  event counts.

Request framing: a POST needs a ``Content-Length`` (411 without, 400 if not a non-negative
integer, 413 over ``--max-body``, all before reading the body); a body shorter than declared
(the client went away) is refused without acting; JSON nested deeper than 32 levels is a
400; any other method or a malformed request line gets a JSON error too.  Clients that
disconnect early are dropped silently.

Requests to one twin are serialised by a per-twin lock; different twins run in parallel
(one thread per connection; XLA releases the GIL while a step executes).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
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
from .store import TWIN_ID, StateStore, TwinRecord, crash_point

STATE = "state"
MAX_BODY = 1 << 20
MAX_DEPTH = 32  # JSON nesting levels accepted (a body needs 4: object, state, entry, 2-D array)
PERIOD_TOLERANCE = 0.01  # a step's t may differ from last t + period by this fraction of the period
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_QUANTILE_WINDOW = 10_000
_DRAIN_LIMIT = 16  # oversized bodies up to this many times the limit are drained after the 413
_DRAIN_SECONDS = 2.0


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
        self._events: Counter = Counter()
        self._latency: dict[str, deque] = {}
        self._started = time.time()

    def record(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self._counts[(route, status)] += 1
            self._latency.setdefault(route, deque(maxlen=_QUANTILE_WINDOW)).append(seconds)

    def count_events(self, events: dict[str, int]) -> None:
        with self._lock:
            self._events.update(events)

    def snapshot(self) -> dict:
        with self._lock:
            counts = dict(self._counts)
            events = dict(self._events)
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
        return {"uptime_s": time.time() - self._started, "requests": requests, "latency_ms": latency, "events": events}


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
        self.covariances = set(header.get("covariances", ()))
        self.events = list(header.get("events", ()))
        self.period = header.get("period")
        self.metrics = Metrics()
        self._lock = threading.Lock()
        self._twins = {tid: _Twin(rec) for tid, rec in (store.load_all() if store else {}).items()}
        self.unavailable: dict[str, str] = dict(store.unreadable) if store else {}
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
            broken = self.unavailable.get(twin_id)
        if broken is not None:
            raise ApiError(
                503, "id", f"twin {twin_id!r} is unavailable: its record could not be read ({broken}); "
                f"start it again with POST /twins/{twin_id}/reset"
            )
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
        record = self._initial(twin_id, body, 0)
        with self._lock:
            if twin_id in self._twins or twin_id in self.unavailable:
                raise ApiError(409, "id", f"twin {twin_id!r} already exists; POST /twins/{twin_id}/reset restarts it")
            self._persist(record)
            self._twins[twin_id] = _Twin(record)
        return 201, self._describe(record)

    def reset(self, twin_id: str, body: dict) -> tuple[int, dict]:
        with self._lock:
            twin = self._twins.get(twin_id)
            if twin is None and twin_id not in self.unavailable:
                raise ApiError(404, "id", f"no twin with id {twin_id!r}; create it with POST /twins/{twin_id}")
            if twin is None:  # an unreadable record: start it afresh
                record = self._initial(twin_id, body, 0)
                self._persist(record)
                self._twins[twin_id] = _Twin(record)
                del self.unavailable[twin_id]
                return 200, self._describe(record)
        with twin.lock:
            record = self._initial(twin_id, body, twin.record.steps)
            self._persist(record)
            twin.record = record
        return 200, self._describe(record)

    def _initial(self, twin_id: str, body: dict, steps: int) -> TwinRecord:
        """The record of a (re)started twin: the artifact's example state with the body's entries replaced."""
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
            if path in self.covariances:
                _check_covariance(arr, f"state.{path}")
            state[path] = arr
        t0 = _time(body["t"], "t") if "t" in body else None
        return TwinRecord(twin_id, state, steps, t0)

    def read(self, twin_id: str) -> tuple[int, dict]:
        twin = self._twin(twin_id)
        with twin.lock:
            return 200, self._describe(twin.record)

    def advance(self, twin_id: str, body: dict) -> tuple[int, dict]:
        twin = self._twin(twin_id)
        _only(body, {g.name for g in self.inputs})
        values = [self._decode_input(group, body) for group in self.inputs]
        t = float(values[[g.name for g in self.inputs].index(self.time_arg)])
        digest = _digest(values)
        with twin.lock:
            rec = twin.record
            if rec.t is not None and t <= rec.t:
                if t == rec.t and digest == rec.last_digest:
                    return 200, {**rec.last_response, "replayed": True}
                raise ApiError(
                    409, self.time_arg, f"out of order: t={t!r} is not after the last acknowledged t={rec.t!r}"
                )
            self._check_period(rec.t, t)
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
            if self.events:
                response["events"] = {path: int(new_state[path]) for path in self.events}
            record = TwinRecord(twin_id, new_state, rec.steps + 1, t, digest, response)
            self._persist(record)
            crash_point("after-persist")
            twin.record = record
        self.metrics.count_events(response.get("events", {}))
        return 200, {**response, "replayed": False}

    def _check_period(self, last: float | None, t: float) -> None:
        if self.period is None or last is None:
            return
        expected = last + self.period
        if abs(t - expected) > PERIOD_TOLERANCE * self.period:
            raise ApiError(
                409, self.time_arg,
                f"t={t!r} is not one period after the last acknowledged t={last!r}: this twin advances its model "
                f"by period={self.period!r} per step, so the next step is t={expected!r} (send a missed period "
                "as a step with every reading null)",
            )  # fmt: skip

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
            "unavailable": dict(self.unavailable),
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


def _check_covariance(arr: np.ndarray, name: str) -> None:
    """A covariance entry: square, symmetric and PSD to ``1e-9 · (1 + max|P|)`` (as ``jtwin``'s constructors)."""
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ApiError(400, name, f"a covariance must be a square matrix, got shape {list(arr.shape)}")
    tol = 1e-9 * (1.0 + float(np.max(np.abs(arr), initial=0.0)))
    asym = float(np.max(np.abs(arr - arr.T), initial=0.0))
    if asym > tol:
        raise ApiError(400, name, f"a covariance must be symmetric; max |P - P.T| = {asym:.3g}")
    smallest = float(np.linalg.eigvalsh(0.5 * (arr + arr.T)).min(initial=0.0))
    if smallest < -tol:
        raise ApiError(400, name, f"a covariance must be positive semi-definite; smallest eigenvalue {smallest:.3g}")


def _digest(values: list[np.ndarray]) -> str:
    """SHA-256 of the decoded step inputs: equal for bodies that hold the same values however they are written."""
    h = hashlib.sha256()
    for arr in values:
        h.update(f"{arr.dtype.str}{arr.shape}".encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def _json_depth(raw: bytes) -> int:
    """Deepest nesting of ``[``/``{`` in a JSON text (strings blanked first), without recursion."""
    code = np.frombuffer(_JSON_STRING.sub(b'""', raw), np.uint8)
    opens, closes = np.isin(code, list(b"[{")), np.isin(code, list(b"]}"))
    return int(np.cumsum(opens.astype(np.int64) - closes).max(initial=0))


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

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def do_OPTIONS(self):
        self._dispatch("OPTIONS")

    def send_error(self, code, message=None, explain=None):
        """The base class's answer to a malformed request line, an unknown method or oversized headers, as JSON."""
        self.close_connection = True
        self.request_version = self.protocol_version  # not 0.9 (no status line) for an unparsable request line
        self._send(int(code), ApiError(int(code), "request", message or explain or "malformed request").payload())

    def log_message(self, format, *args):  # noqa: A002 (signature of the base class)
        pass  # request logging would dominate the step latency; see GET /metrics

    def _dispatch(self, method: str) -> None:
        start = time.perf_counter()
        route = "unrouted"
        self._drain = 0
        try:
            route, action, allowed = self._route()
            if method not in allowed:
                raise ApiError(405, "method", f"{method} is not allowed on {route}; use {' or '.join(allowed)}")
            body = self._body() if method == "POST" else None
            status, payload = action(method, body)
        except ApiError as exc:
            status, payload = exc.status, exc.payload()
        except (ConnectionError, TimeoutError):  # the client went away mid-request: nothing to answer
            self.close_connection = True
            return
        except Exception as exc:  # a bug: answer 500 and keep serving
            traceback.print_exc(file=sys.stderr)
            status, payload = 500, ApiError(500, "server", f"internal error: {type(exc).__name__}: {exc}").payload()
        self._send(status, payload)
        self._discard_body()
        self.service.metrics.record(f"{method} {route}", status, time.perf_counter() - start)

    def _discard_body(self) -> None:
        """After a 413 (sent before reading): read and drop what the client still sends, for at most
        ``_DRAIN_SECONDS``, so that a client still writing its body receives the answer rather than a reset."""
        n, self._drain = self._drain, 0
        try:
            self.connection.settimeout(_DRAIN_SECONDS)
            while n > 0:
                n -= len(self.rfile.read1(min(n, 1 << 16))) or n
        except (OSError, ValueError):
            pass

    def _route(self):
        parts = self.path.split("?", 1)[0].strip("/").split("/")
        service = self.service
        if parts == ["healthz"]:
            return "/healthz", lambda m, b: service.health(), ("GET",)
        if parts == ["metrics"]:
            return "/metrics", lambda m, b: (200, service.metrics.snapshot()), ("GET",)
        if len(parts) in (2, 3) and parts[0] == "twins" and parts[2:] in ([], ["step"], ["reset"]):
            twin_id = parts[1]
            if not TWIN_ID.fullmatch(twin_id):
                raise ApiError(
                    400, "id", f"invalid twin id {twin_id!r}; use 1-64 of [A-Za-z0-9_.-], not starting with . - _"
                )
            if parts[2:] == ["step"]:
                return "/twins/{id}/step", lambda m, b: service.advance(twin_id, b), ("POST",)
            if parts[2:] == ["reset"]:
                return "/twins/{id}/reset", lambda m, b: service.reset(twin_id, b), ("POST",)
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
            n = -1
        if n < 0 or not length.strip().isdigit():
            self.close_connection = True
            raise ApiError(400, "Content-Length", f"expected a non-negative integer, got {length!r}")
        if n > self.max_body:
            self.close_connection = True
            self._drain = n if n <= _DRAIN_LIMIT * self.max_body else 0
            raise ApiError(413, "body", f"{length} bytes is over the limit of {self.max_body} bytes")
        raw = self.rfile.read(n)
        if len(raw) < n:
            self.close_connection = True
            raise ApiError(400, "body", f"truncated: {len(raw)} of the declared {n} bytes arrived; nothing was done")
        if _json_depth(raw) > MAX_DEPTH:
            raise ApiError(400, "body", f"JSON nested deeper than {MAX_DEPTH} levels")
        try:
            body = json.loads(raw or b"{}", parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, "body", f"not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "body", f"expected a JSON object, got {type(body).__name__}")
        return body

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload, allow_nan=False).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        except (ConnectionError, TimeoutError):  # the client went away: nothing to answer
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # listen backlog: 64 clients connecting at once must not overflow the default 5

    def handle_error(self, request, client_address):
        """Drop clients that disconnect or time out; report anything else (a bug) with its traceback."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def make_server(service: TwinService, host: str = "127.0.0.1", port: int = 8080, max_body: int = MAX_BODY):
    """A ``ThreadingHTTPServer`` answering the API for ``service`` (call ``serve_forever()``)."""
    handler = type("Handler", (_Handler,), {"service": service, "max_body": max_body})
    return _Server((host, port), handler)


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
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1, loopback only)")
    parser.add_argument("--port", type=int, default=8080, help="TCP port, 0 picks a free one (default: %(default)s)")
    parser.add_argument("--state-dir", default=None, help="directory of durable twin state (default: none, in memory only)")
    parser.add_argument(
        "--max-body", type=int, default=MAX_BODY,
        help=f"largest accepted request body in bytes (default: %(default)s = {MAX_BODY // 2**20} MiB)",
    )  # fmt: skip


def run(args: argparse.Namespace, prog: str = "jtwin serve") -> int:
    """Start the server for parsed ``args``; returns an exit code (2 for a bad artifact or state dir)."""
    try:
        service = open_service(Path(args.artifact).read_bytes(), args.state_dir)
        server = make_server(service, args.host, args.port, args.max_body)
    except (OSError, ArtifactError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    for twin_id, why in service.unavailable.items():
        print(f"{prog}: twin {twin_id!r} unavailable (served as 503 until reset): {why}", file=sys.stderr)
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
