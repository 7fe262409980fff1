"""HTTP mode: Slack requests at `POST /slack/events` and a health check at `GET /healthz`."""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.wsgi import SlackRequestHandler

logger = logging.getLogger(__name__)


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)


def _plausible(environ: dict[str, Any]) -> bool:
    """Check the timestamp header and the body's encoding, keeping the body readable for bolt."""
    if not str(environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP", "")).isdigit():
        return False
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return False
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(body)
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def wsgi_app(app: App) -> Any:
    """Wrap the bolt App as a WSGI application that also serves `GET /healthz`."""
    slack = SlackRequestHandler(app, path="/slack/events")

    def application(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz" and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"ok\n"]
        if environ.get("REQUEST_METHOD") == "POST" and not _plausible(environ):
            # Bolt 1.30 logs a traceback and returns 500 for a non-numeric timestamp header or a
            # body that is not UTF-8. Such a request is not from Slack: 401 and one log line.
            logger.warning("Rejected a malformed request to %s", environ.get("PATH_INFO"))
            start_response("401 Unauthorized", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"invalid request\n"]
        return slack(environ, start_response)

    return application


class HttpServer:
    """A threaded WSGI server for the bot; `port=0` picks a free port."""

    def __init__(self, app: App, host: str = "0.0.0.0", port: int = 3000) -> None:
        self.server = make_server(host, port, wsgi_app(app), server_class=_ThreadingServer, handler_class=_QuietHandler)
        self.port = self.server.server_port
        self._thread: threading.Thread | None = None

    def serve_forever(self) -> None:
        logger.info("Listening for Slack on port %d at /slack/events", self.port)
        self.server.serve_forever()

    def start(self) -> HttpServer:
        self._thread = threading.Thread(target=self.serve_forever, name="rollcall-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread:
            self._thread.join(5)


def connect_socket_mode(app: App, app_token: str) -> SocketModeHandler:
    """Connect to Slack over a WebSocket (Socket Mode) without blocking; close() disconnects."""
    handler = SocketModeHandler(app, app_token)
    handler.connect()
    logger.info("Connected to Slack in Socket Mode")
    return handler
