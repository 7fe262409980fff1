"""Local HTTP server that speaks the Vast.ai console and serverless router dialect.

Console routes (`/api/v0/...`, `/api/v1/...`) and router routes
(`/get_endpoint_workers/`, `/update_workers/`, ...) share one base URL, so a
client given `--url http://127.0.0.1:PORT` (with `VAST_URL` unset) sends all
its calls here. The server binds to 127.0.0.1 only and makes no outgoing
connections. Control routes under `/_sandbox/` need no API key:

- `GET /_sandbox/state`: the whole world, config and counters.
- `GET /_sandbox/events?since=N`: worker status changes from index N on.
- `POST /_sandbox/config`: a partial config dict (see `VastWorld.set_config`).
- `POST /_sandbox/advance {"seconds": N}`: move the simulated clock forward.
- `POST /_sandbox/fail_next {"route_prefix", "kind", "count", "timeout_seconds"}`.
- `POST /_sandbox/hold {"route_prefix", "method", "when", "count", "skip", "seconds"}`:
  hold requests before or after they take effect (see `VastWorld.hold`).
- `POST /_sandbox/release`: let every held request go on.

Run `python -m sandbox.vast_server --demo` for a demo world.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import select
import signal
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sandbox.vast_sim import ApiError, Hold, VastWorld, invalid_args

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
TICK_SECONDS = 0.05
# How often serve_forever checks for shutdown, so stop() waits up to this long.
SHUTDOWN_POLL_SECONDS = 0.01
MAX_BODY_BYTES = 10 * 1024 * 1024
# The console's plain-text 429 body has a colon, while the JSON bodies in Vast's
# API docs carry the text without it.
RATE_LIMIT_BODY = "API requests too frequent: endpoint threshold={threshold}"
RATE_LIMIT_JSON_DETAIL = "API requests too frequent endpoint threshold={threshold}"
# Threshold quoted by an injected 429 fault when no rate limit is configured.
DEFAULT_FAULT_THRESHOLD = 2.0

_GATEWAY_PAGES = {
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}

Handler = Callable[["VastWorld", dict[str, str], dict[str, str], dict[str, Any]], Any]


@dataclass(frozen=True)
class Route:
    """One HTTP route. Its `name`, such as "GET /api/v0/endptjobs/{id}/", keys the call counters."""

    method: str
    pattern: str
    handler: Handler
    kind: str = "console"  # "console", "router" or "control"

    @property
    def name(self) -> str:
        return f"{self.method} {self.pattern}"

    @property
    def regex(self) -> re.Pattern[str]:
        body = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.pattern.rstrip("/"))
        return re.compile(f"^{body}/?$")


# ---------------------------------------------------------------------------
# Route handlers: (world, path params, query params, JSON body) -> response body
# ---------------------------------------------------------------------------

def _query_json(query: dict[str, str], key: str) -> Any:
    """Decode a query value that the Vast client JSON-encodes (filters, columns, order)."""
    if key not in query:
        return None
    try:
        return json.loads(query[key])
    except json.JSONDecodeError as error:
        raise invalid_args(f"{key} is not valid JSON: {query[key]!r}") from error


def _query_limit(query: dict[str, str]) -> int | None:
    if "limit" not in query:
        return None
    try:
        return int(query["limit"])
    except ValueError as error:
        raise invalid_args(f"limit must be an integer, got {query['limit']!r}") from error


def _search_templates(world, params, query, body, paged=False):
    return world.search_templates(
        _query_json(query, "select_filters"), _query_json(query, "select_cols"),
        _query_json(query, "order_by"), limit=_query_limit(query),
        after_token=query.get("after_token"), paged=paged)


def _list_instances(world, params, query, body):
    return world.list_instances(_query_json(query, "select_filters"),
                                _query_json(query, "order_by"), _query_limit(query),
                                query.get("after_token"))


def _format_worker_list(world: VastWorld, result: Any) -> Any:
    """Apply the `status_case` and `worker_list_shape` variants to a worker list."""
    if isinstance(result, dict):
        return result
    if world.config.get("status_case") == "lower":
        for worker in result:
            worker["status"] = worker["status"].lower()
    if world.config.get("worker_list_shape") == "dict":
        return {"workers": result}
    return result


def _endpoint_workers(world, params, query, body):
    return _format_worker_list(world, world.endpoint_workers(body.get("id")))


def _workergroup_workers(world, params, query, body):
    return _format_worker_list(world, world.workergroup_workers(body.get("id")))


def _advance(world, params, query, body):
    seconds = body.get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        raise invalid_args(f"seconds must be a non-negative number, got {seconds!r}")
    return {"clock": world.advance(seconds)}


def _set_config(world, params, query, body):
    try:
        return {"config": world.set_config(body)}
    except ValueError as error:
        raise invalid_args(str(error)) from error


def _fail_next(world, params, query, body):
    try:
        world.fail_next(str(body.get("route_prefix", "/")), str(body.get("kind")),
                        body.get("count", 1), body.get("timeout_seconds", 2.0))
    except (TypeError, ValueError) as error:
        raise invalid_args(str(error)) from error
    return {"success": True}


def _hold(world, params, query, body):
    try:
        world.hold(str(body.get("route_prefix", "/")), method=body.get("method"),
                   when=str(body.get("when", "before")), count=body.get("count", 1),
                   skip=body.get("skip", 0), seconds=body.get("seconds"))
    except (TypeError, ValueError) as error:
        raise invalid_args(str(error)) from error
    return {"success": True}


def _events(world, params, query, body):
    try:
        since = int(query.get("since", "0"))
    except ValueError as error:
        raise invalid_args(f"since must be an integer, got {query['since']!r}") from error
    events = world.events_since(since)
    return {"events": events, "next_index": max(since, 0) + len(events)}


def _build_routes() -> list[Route]:
    routes = [
        Route("GET", "/api/v0/users/current/", lambda w, p, q, b: w.current_user()),
        Route("GET", "/api/v0/endptjobs/", lambda w, p, q, b: w.list_endpoints()),
        Route("POST", "/api/v0/endptjobs/", lambda w, p, q, b: w.create_endpoint_from_api(b)),
        Route("GET", "/api/v0/endptjobs/{id}/", lambda w, p, q, b: w.get_endpoint(p["id"])),
        Route("PUT", "/api/v0/endptjobs/{id}/",
              lambda w, p, q, b: w.update_endpoint(p["id"], b)),
        Route("DELETE", "/api/v0/endptjobs/{id}/",
              lambda w, p, q, b: w.delete_endpoint(p["id"])),
        Route("GET", "/api/v0/template/", _search_templates),
        Route("GET", "/api/v1/template/",
              lambda w, p, q, b: _search_templates(w, p, q, b, paged=True)),
        Route("POST", "/api/v0/template/", lambda w, p, q, b: w.create_template_from_api(b)),
        Route("PUT", "/api/v0/template/", lambda w, p, q, b: w.edit_template_v0(b)),
        Route("PUT", "/api/v1/template/", lambda w, p, q, b: w.edit_template_v1(b)),
        Route("DELETE", "/api/v0/template/", lambda w, p, q, b: w.delete_template(b)),
        Route("GET", "/api/v0/instances/{id}/", lambda w, p, q, b: w.get_instance(p["id"])),
        Route("GET", "/api/v1/instances/", _list_instances),
        Route("POST", "/get_endpoint_workers/", _endpoint_workers, "router"),
        Route("POST", "/get_workergroup_workers/", _workergroup_workers, "router"),
        Route("POST", "/get_autogroup_workers/", _workergroup_workers, "router"),
        Route("POST", "/update_workers/", lambda w, p, q, b: w.update_workers(b), "router"),
        Route("POST", "/get_endpoint_logs/", lambda w, p, q, b: w.logs("endpoint", b), "router"),
        Route("POST", "/get_workergroup_logs/",
              lambda w, p, q, b: w.logs("workergroup", b), "router"),
        Route("POST", "/get_autogroup_logs/",
              lambda w, p, q, b: w.logs("workergroup", b), "router"),
        Route("GET", "/_sandbox/state", lambda w, p, q, b: w.snapshot(), "control"),
        Route("GET", "/_sandbox/events", _events, "control"),
        Route("POST", "/_sandbox/config", _set_config, "control"),
        Route("POST", "/_sandbox/advance", _advance, "control"),
        Route("POST", "/_sandbox/fail_next", _fail_next, "control"),
        Route("POST", "/_sandbox/hold", _hold, "control"),
        Route("POST", "/_sandbox/release",
              lambda w, p, q, b: {"success": True, "released": w.release_holds()}, "control"),
    ]
    # `/api/v0/workergroups/` is the newer name of `/api/v0/autojobs/`.
    for prefix in ("/api/v0/autojobs/", "/api/v0/workergroups/"):
        routes += [
            Route("GET", prefix, lambda w, p, q, b: w.list_workergroups()),
            Route("POST", prefix, lambda w, p, q, b: w.create_workergroup_from_api(b)),
            Route("PUT", prefix + "{id}/", lambda w, p, q, b: w.update_workergroup(p["id"], b)),
            Route("DELETE", prefix + "{id}/", lambda w, p, q, b: w.delete_workergroup(p["id"])),
        ]
    return routes


ROUTES = _build_routes()
_COMPILED_ROUTES = [(route, route.regex) for route in ROUTES]


def match_route(method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
    """Find the route of a request: (route, path params, whether the path exists at all)."""
    path_exists = False
    for route, regex in _COMPILED_ROUTES:
        match = regex.match(path)
        if match is None:
            continue
        if route.method == method:
            return route, match.groupdict(), True
        path_exists = True
    return None, {}, path_exists


# ---------------------------------------------------------------------------
# HTTP plumbing
# ---------------------------------------------------------------------------

class _SandboxHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], sandbox: VastSandbox):
        self.sandbox = sandbox
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _VastRequestHandler)

    def close_open_connections(self) -> None:
        """Shut down kept-alive client sockets so their handler threads end."""
        with self.connections_lock:
            connections = list(self.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _VastRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "VastSandbox/1.0"
    server: _SandboxHTTPServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes. Without TCP_NODELAY, Nagle's
        # algorithm and the client's delayed ACK added about 40 ms to each call
        # (measured on Linux loopback).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.connections_lock:
            self.server.connections.add(self.connection)
            # stop() sets `stopping` before it shuts down the registered sockets, so
            # a connection registered after that is shut down here instead.
            stopping = self.server.sandbox.stopping.is_set()
        if stopping:
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    # -- request handling ----------------------------------------------------

    def _handle(self, method: str) -> None:
        try:
            self._dispatch(method)
        except (BrokenPipeError, ConnectionResetError) as error:
            logger.debug("client went away during %s %s: %s", method, self.path, error)
            self.close_connection = True
        except Exception:
            logger.exception("unhandled error in %s %s", method, self.path)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._send_json(500, {"success": False, "error": "internal_error",
                                      "msg": "sandbox server error, see its log"})

    def _dispatch(self, method: str) -> None:
        sandbox = self.server.sandbox
        world = sandbox.world
        split = urlsplit(self.path)
        query = {key: values[0]
                 for key, values in parse_qs(split.query, keep_blank_values=True).items()}
        try:
            raw_body = self._read_body()
        except ValueError as error:
            # The rest of the request cannot be framed, so the connection closes.
            logger.info("%s %s rejected: %s", method, split.path, error)
            self.close_connection = True
            self._send_json(400, {"success": False, "error": "invalid_args", "msg": str(error)})
            return
        route, params, path_exists = match_route(method, split.path)
        if route is None:
            logger.info("%s %s rejected: no such route", method, split.path)
            if path_exists:
                self._send_json(405, {"success": False, "error": "method_not_allowed",
                                      "msg": f"{method} is not allowed on {split.path}"})
            else:
                self._send_json(404, {"success": False, "error": "not_found",
                                      "msg": f"no route for {method} {split.path}"})
            return

        hold = None
        if route.kind != "control":
            world.count_call(route.name)
            fault = world.take_fault(split.path)
            if fault is not None:
                logger.info("%s %s: injecting fault %s", method, split.path, fault[0])
                self._send_fault(*fault)
                return
            hold = world.take_hold(method, split.path)

        try:
            body = self._parse_body(raw_body)
            if route.kind != "control" and not self._authorize(route, body, query):
                return
            if hold is not None and hold.when == "before" and not self._wait_at_hold(hold):
                logger.info("%s %s: the client disconnected or the sandbox stopped while the "
                            "request was held, so the request is dropped", method, split.path)
                self.close_connection = True
                return
            world.step_to_now()
            result = route.handler(world, params, query, body)
        except ApiError as error:
            logger.info("%s %s failed with %d: %s", method, split.path, error.status, error.msg)
            if hold is not None and hold.when == "after":
                self._wait_at_hold(hold)
            self._send_error(route, error.status, error.body)
            return
        if hold is not None and hold.when == "after":
            self._wait_at_hold(hold)
        self._send_json(200, result)

    def _wait_at_hold(self, hold: Hold) -> bool:
        """Block this request at `hold`. Return False when the client or the sandbox went away first."""
        logger.info("%s %s: request held %s it takes effect", self.command, self.path, hold.when)
        return hold.wait(self._client_gone, self.server.sandbox.stopping)

    def _client_gone(self) -> bool:
        """Return True when the client closed the connection before its response was sent."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _read_body(self) -> bytes:
        """Read the request body. Raises ValueError for a bad length or an oversized body."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        length_text = self.headers.get("Content-Length")
        if not length_text:
            return b""
        try:
            length = int(length_text)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            raise ValueError(f"invalid Content-Length {length_text!r}: expected 0 to "
                             f"{MAX_BODY_BYTES} bytes")
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        chunks = []
        total = 0
        while True:
            size_line = self.rfile.readline().split(b";")[0].strip()
            try:
                size = int(size_line or b"0", 16)
            except ValueError as error:
                raise ValueError(f"invalid chunk size {size_line!r}") from error
            if size == 0:
                self.rfile.readline()
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                raise ValueError(f"request body is larger than {MAX_BODY_BYTES} bytes")
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    @staticmethod
    def _parse_body(raw_body: bytes) -> dict[str, Any]:
        if not raw_body.strip():
            return {}
        try:
            body = json.loads(raw_body)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise invalid_args(f"request body is not valid JSON: {error}") from error
        if not isinstance(body, dict):
            raise invalid_args("request body must be a JSON object")
        return body

    def _authorize(self, route: Route, body: dict[str, Any], query: dict[str, str]) -> bool:
        """Check the API key (Bearer header, then body, then query) and the rate limit."""
        world = self.server.sandbox.world
        key = None
        authorization = self.headers.get("Authorization", "")
        if authorization.lower().startswith("bearer "):
            key = authorization[len("bearer "):].strip()
        elif isinstance(body.get("api_key"), str):
            key = body["api_key"]
        elif "api_key" in query:
            key = query["api_key"]
        if key != world.api_key:
            message = "missing api_key" if key is None else "invalid api_key"
            logger.info("%s rejected with 401: %s", route.name, message)
            payload = {"success": False, "error": "invalid_api_key",
                       "msg": f"{message}: send it as a Bearer token, an api_key body field "
                              f"or an api_key query parameter"}
            if route.kind == "router":
                payload["error_msg"] = payload["msg"]
            self._send_error(route, 401, payload)
            return False
        threshold = world.check_rate_limit(route.name, key)
        if threshold is not None:
            logger.info("%s rejected with 429: under the %s s rate limit", route.name, threshold)
            self._send_rate_limited(threshold)
            return False
        return True

    # -- responses -----------------------------------------------------------

    def _send(self, status: int, payload: bytes, content_type: str,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()

    def _send_json(self, status: int, body: Any) -> None:
        self._send(status, json.dumps(body).encode("utf-8"), "application/json")

    def _send_error(self, route: Route, status: int, payload: dict[str, Any]) -> None:
        """Send an error body, or only its message on router routes in the "string" style."""
        world = self.server.sandbox.world
        if route.kind == "router" and world.config.get("router_error_style") == "string":
            text = payload.get("error_msg") or payload.get("msg") or ""
            self._send_json(status, text)
            return
        self._send_json(status, payload)

    def _send_rate_limited(self, threshold: float) -> None:
        world = self.server.sandbox.world
        headers = {}
        retry_after = world.config.get("retry_after_header")
        if retry_after is not None:
            headers["Retry-After"] = f"{retry_after:g}"
        body_shape = world.config.get("rate_limit_body")
        if body_shape in ("detail", "error"):
            text = RATE_LIMIT_JSON_DETAIL.format(threshold=float(threshold))
            if body_shape == "detail":
                payload = {"detail": text}
            else:
                payload = {"success": False, "error": "rate_limit_exceeded", "msg": text}
            self._send(429, json.dumps(payload).encode("utf-8"), "application/json", headers)
            return
        text = RATE_LIMIT_BODY.format(threshold=float(threshold))
        self._send(429, text.encode("utf-8"), "text/plain; charset=utf-8", headers)

    def _send_fault(self, kind: str, timeout_seconds: float) -> None:
        sandbox = self.server.sandbox
        if kind == "disconnect":
            # Close the socket without a response, as a dropped connection would.
            self.close_connection = True
            return
        if kind == "timeout":
            if sandbox.stopping.wait(timeout_seconds):
                self.close_connection = True
                return
            kind = "504"
        status = int(kind)
        if status == 429:
            threshold = sandbox.world.config.get("rate_limit_seconds") or DEFAULT_FAULT_THRESHOLD
            self._send_rate_limited(threshold)
        elif status in _GATEWAY_PAGES or status >= 500:
            title = f"{status} {_GATEWAY_PAGES.get(status, 'Server Error')}"
            page = (f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
                    f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
                    f"</body>\r\n</html>\r\n")
            self._send(status, page.encode("utf-8"), "text/html")
        else:
            self._send_json(status, {"success": False, "error": "injected_fault",
                                     "msg": f"sandbox injected HTTP {status}"})


# ---------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------

class VastSandbox:
    """A `VastWorld` served over HTTP on 127.0.0.1, with a background simulation ticker.

    `speed` is simulated seconds per real second (0 means only `world.advance`
    moves the clock). Use as a context manager or call `start()` and `stop()`.
    """

    def __init__(self, api_key: str = "sandbox-key", speed: float = 50.0, seed: int = 1,
                 port: int = 0, start_epoch: float | None = None):
        self.world = VastWorld(api_key=api_key, speed=speed, seed=seed, start_epoch=start_epoch)
        self.port = port
        self.stopping = threading.Event()
        self._server: _SandboxHTTPServer | None = None
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the sandbox is not started: call start() first")
        return f"http://{HOST}:{self._server.server_address[1]}"

    def start(self) -> VastSandbox:
        """Bind the port, start serving and start the ticker. Returns self."""
        if self._server is not None:
            raise RuntimeError("the sandbox is already started")
        self.stopping.clear()
        self._server = _SandboxHTTPServer((HOST, self.port), self)
        self._threads = [
            threading.Thread(target=self._server.serve_forever,
                             kwargs={"poll_interval": SHUTDOWN_POLL_SECONDS},
                             name="vast-sandbox-http", daemon=True),
            threading.Thread(target=self._tick, name="vast-sandbox-ticker", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        logger.info("Vast sandbox listening on %s (speed %s, seed %s)", self.url,
                    self.world.speed, self.world.seed)
        return self

    def stop(self) -> None:
        """Stop serving, close every open connection and join the server threads."""
        server = self._server
        if server is None:
            return
        url = self.url
        self.stopping.set()
        server.shutdown()
        server.close_open_connections()
        server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._server = None
        self._threads = []
        logger.info("Vast sandbox on %s stopped", url)

    def _tick(self) -> None:
        while not self.stopping.wait(TICK_SECONDS):
            try:
                self.world.step_to_now()
            except Exception:
                logger.exception("simulation step failed, the ticker keeps running")

    def __enter__(self) -> VastSandbox:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def build_demo_world(world: VastWorld) -> None:
    """Add the demo endpoints: qwen-chat (8 workers, 3 inactive) and llama-batch (2 groups of 2)."""
    world.add_endpoint("qwen-chat", workers=8, inactive=3, model="Qwen/Qwen3-8B",
                       vllm_args="--max-model-len 8192", image="vllm/vllm-openai",
                       tag="v0.11.0", search="gpu_ram>=24 num_gpus=1 verified=True")
    llama = world.add_endpoint("llama-batch", workers=2, model="meta-llama/Llama-3.1-8B-Instruct",
                               vllm_args="--max-model-len 16384", image="vllm/vllm-openai",
                               tag="v0.11.0", search="gpu_ram>=24 num_gpus=1 verified=True")
    world.add_workergroup(llama.id, workers=2, model="meta-llama/Llama-3.1-8B-Instruct",
                          vllm_args="--max-model-len 16384", image="vllm/vllm-openai",
                          tag="v0.11.0", search="gpu_ram>=40 num_gpus=1 verified=True")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.vast_server",
        description="Serve a simulated Vast.ai console and serverless router on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0,
                        help="TCP port to listen on, 0 for a free port (default: 0)")
    parser.add_argument("--speed", type=float, default=50.0,
                        help="simulated seconds per real second, 0 to stop the clock "
                             "except for POST /_sandbox/advance (default: 50)")
    parser.add_argument("--seed", type=int, default=1,
                        help="seed of the simulation's random numbers (default: 1)")
    parser.add_argument("--api-key", default="sandbox-key",
                        help="API key clients must send (default: sandbox-key)")
    parser.add_argument("--demo", action="store_true",
                        help="start with the demo endpoints qwen-chat and llama-batch")
    parser.add_argument("--log-level", default="INFO",
                        help="logging level for messages on stderr (default: INFO)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    sandbox = VastSandbox(api_key=args.api_key, speed=args.speed, seed=args.seed, port=args.port)
    if args.demo:
        build_demo_world(sandbox.world)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: done.set())
    sandbox.start()
    print(sandbox.url, flush=True)
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
