"""Local fake of Slack's Socket Mode: a WebSocket server and a driver that pushes envelopes to it.

``SocketModeServer`` plays Slack's end of a Socket Mode connection on 127.0.0.1. A client gets a
``ws://127.0.0.1:PORT/link/?ticket=...`` URL from ``apps.connections.open`` on ``SlackSandbox``,
which starts this server on first use (``SlackSandbox.socket_mode``). On connect the server sends
``hello``. Tests push envelopes (``{envelope_id, type, payload, accepts_response_payload}``), and the
server records every ack the client sends back (``{envelope_id, payload?}``). ``disconnect()``
sends Slack's ``{"type": "disconnect", "reason": "refresh_requested"}``, after which a client opens
a new connection with a fresh URL.

``SocketDriver`` is the Socket Mode twin of ``sandbox.slack_client.SlackDriver``: it builds the same
slash command, block_actions and view_submission payloads, pushes them as ``slash_commands`` and
``interactive`` envelopes, and returns the ack.

Example::

    slack = SlackSandbox(bot_token="xoxb-sandbox").start()
    handler = SocketModeHandler(app, "xapp-sandbox")  # app's client uses slack.api_url
    handler.connect()
    driver = SocketDriver(slack)
    driver.wait_connected()
    ack = driver.command("/rollout", "status")
    handler.close()
    slack.stop()

The WebSocket side follows RFC 6455 for one text-message protocol without extensions: the
handshake of section 4.2, masked client frames, unmasked server frames, fragmented messages,
ping and pong, and the close handshake. It was checked against the built-in client of
slack_sdk 3.48 (``slack_sdk/socket_mode/builtin``). That client masks its frames and sends a ping
right after the handshake and then every ``ping_interval`` seconds. It treats a connection as
stale when pongs stop, and it closes its socket without sending a close frame.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import copy
import hashlib
import json
import logging
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, BinaryIO
from urllib.parse import parse_qs, parse_qsl, urlsplit

from sandbox.slack_client import (
    block_actions_body,
    event_callback_body,
    slash_command_body,
    view_submission_body,
)
from sandbox.slack_server import APP_ID, SlackSandbox

logger = logging.getLogger(__name__)

# RFC 6455 section 1.3: the server proves the handshake by hashing the client's key with this GUID.
WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WEBSOCKET_VERSION = "13"

# Opcodes and close codes from RFC 6455 sections 5.2 and 7.4.1.
OPCODE_CONTINUATION = 0x0
OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2
OPCODE_CLOSE = 0x8
OPCODE_PING = 0x9
OPCODE_PONG = 0xA
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_INVALID_PAYLOAD = 1007
CLOSE_MESSAGE_TOO_BIG = 1009

# Control frames carry at most 125 bytes (RFC 6455 section 5.5).
MAX_CONTROL_PAYLOAD = 125
# Largest message the sandbox accepts from a client. Acks are small, so 1 MiB is generous.
MAX_MESSAGE_BYTES = 1 << 20
# Seconds a new connection may take to send its HTTP upgrade request.
HANDSHAKE_TIMEOUT = 5.0

# Path of the URLs that apps.connections.open returns, which carry the ticket in the query.
LINK_PATH = "/link/"
ENVELOPE_TYPES = ("events_api", "interactive", "slash_commands")
# Interaction types whose HTTP-mode response body means something (a modal update, options), so
# their envelopes accept a response payload.
# NOTE: Slack's exact flag value for each interactive type is assumed from that rule.
RESPONSE_PAYLOAD_INTERACTIONS = ("view_submission", "block_suggestion")

# debug_info of hello and disconnect messages. The field names follow Slack's debug_info object
# as slack-morphism 0.37 models it (SlackSocketModeDebugInfo), and the values are placeholders.
DEBUG_HOST = "slack-sandbox"
DEBUG_BUILD_NUMBER = 1
DEBUG_APPROXIMATE_CONNECTION_TIME = 18060


class ProtocolError(Exception):
    """A client broke the WebSocket protocol. The server closes the connection with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


class _ConnectionClosed(Exception):
    """The TCP connection ended while a frame was being read."""


@dataclass
class Frame:
    """One WebSocket frame, with the payload already unmasked."""

    fin: bool
    opcode: int
    payload: bytes


def accept_key(key: str) -> str:
    """Return the ``Sec-WebSocket-Accept`` value for a client's ``Sec-WebSocket-Key``."""
    digest = hashlib.sha1((key + WEBSOCKET_GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def encode_frame(opcode: int, payload: bytes = b"") -> bytes:
    """Build one unmasked frame with FIN set, the form in which a server sends every message."""
    length = len(payload)
    head = bytes([0x80 | opcode])
    if length < 126:
        head += bytes([length])
    elif length < 1 << 16:
        head += struct.pack("!BH", 126, length)
    else:
        head += struct.pack("!BQ", 127, length)
    return head + payload


def close_payload(code: int, reason: str = "") -> bytes:
    """Build the body of a close frame: a 2-byte status code, then a UTF-8 reason."""
    return struct.pack("!H", code) + reason.encode("utf-8")[: MAX_CONTROL_PAYLOAD - 2]


def _unmask(data: bytes, key: bytes) -> bytes:
    if not data:
        return data
    mask = (key * (len(data) // 4 + 1))[: len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(mask, "big")).to_bytes(len(data), "big")


def read_frame(stream: BinaryIO, max_size: int = MAX_MESSAGE_BYTES) -> Frame:
    """Read one client frame from ``stream`` and unmask it.

    Raises ProtocolError for reserved bits, an unmasked frame or a frame longer than ``max_size``
    bytes, and _ConnectionClosed when the stream ends first.
    """
    first, second = _read_exact(stream, 2)
    if first & 0x70:
        raise ProtocolError(CLOSE_PROTOCOL_ERROR, "reserved bits set, but no extension was negotiated")
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", _read_exact(stream, 2))
    elif length == 127:
        (length,) = struct.unpack("!Q", _read_exact(stream, 8))
    # RFC 6455 section 5.1: a server must close the connection on an unmasked client frame.
    if not second & 0x80:
        raise ProtocolError(CLOSE_PROTOCOL_ERROR, "client frames must be masked")
    if length > max_size:
        raise ProtocolError(CLOSE_MESSAGE_TOO_BIG, f"frame of {length} bytes exceeds {max_size}")
    key = _read_exact(stream, 4)
    return Frame(fin=bool(first & 0x80), opcode=first & 0x0F, payload=_unmask(_read_exact(stream, length), key))


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    try:
        data = stream.read(size) if size else b""
    except OSError as error:
        raise _ConnectionClosed(str(error)) from None
    if data is None or len(data) < size:
        raise _ConnectionClosed("the connection ended in the middle of a frame")
    return data


# ---------------------------------------------------------------------------------------------
# Connections and the server
# ---------------------------------------------------------------------------------------------


class _Connection:
    """One upgraded WebSocket connection. Sends may come from any thread."""

    def __init__(self, number: int, ticket: str, sock: socket.socket, peer: str) -> None:
        self.number = number
        self.ticket = ticket
        self.sock = sock
        self.peer = peer
        self.opened = time.time()
        self.closed: float | None = None
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.closing = False
        self.pings = 0
        self._send_lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return self.closed is None and not self.closing

    def send(self, opcode: int, payload: bytes = b"") -> None:
        with self._send_lock:
            self.sock.sendall(encode_frame(opcode, payload))

    def send_json(self, message: Mapping[str, Any]) -> None:
        self.send(OPCODE_TEXT, json.dumps(message, separators=(",", ":")).encode("utf-8"))

    def send_close(self, code: int, reason: str = "") -> None:
        """Send a close frame once. Errors are ignored because the peer may be gone already."""
        try:
            with self._send_lock:
                if self.closing:
                    return
                self.closing = True
                self.sock.sendall(encode_frame(OPCODE_CLOSE, close_payload(code, reason)))
        except OSError as error:
            logger.debug("Socket Mode sandbox could not send close to connection %s: %s", self.number, error)

    def abort(self) -> None:
        """Shut the socket down, so that the thread reading it gets end-of-stream."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def record(self) -> dict[str, Any]:
        return {
            "id": self.number,
            "ticket": self.ticket,
            "peer": self.peer,
            "open": self.is_open,
            "opened": self.opened,
            "closed": self.closed,
            "close_code": self.close_code,
            "close_reason": self.close_reason,
            "pings": self.pings,
        }


class SocketModeServer:
    """WebSocket server on 127.0.0.1 that plays Slack's end of Socket Mode.

    Each URL from ``issue_url()`` contains a ticket that opens one connection. Connections are
    numbered from 1 in the order they open. Envelopes go to the newest open connection unless a
    connection id is given.

    Recorded state, each a list of dicts in order (copies, safe to keep):
        ``connections()``: ``{"id", "ticket", "peer", "open", "opened", "closed", "close_code",
        "close_reason", "pings"}``. ``close_code`` and ``close_reason`` are those of the
        client's close frame, or None when the client only closed its socket.
        ``envelopes()``: ``{"envelope_id", "type", "payload", "accepts_response_payload",
        "connection", "time"}`` plus ``retry_attempt`` and ``retry_reason`` when set.
        ``acks()``: ``{"envelope_id", "payload", "connection", "time", "seconds"}``, where
        ``payload`` is None for an empty ack and ``seconds`` is the time since the push, or None
        for an envelope id that was never pushed.
        ``unexpected_messages()``: ``{"connection", "text", "time"}`` for text messages that are
        not acks.
    """

    def __init__(self, *, app_id: str = APP_ID) -> None:
        self.app_id = app_id
        # One re-entrant lock guards the state below. on_change is notified after each change,
        # so wait_for wakes at once.
        self.on_change = threading.Condition(threading.RLock())
        self._tickets: dict[str, float] = {}
        self._connections: list[_Connection] = []
        self._envelopes: dict[str, dict[str, Any]] = {}
        self._acks: list[dict[str, Any]] = []
        self._unexpected: list[dict[str, Any]] = []
        self._server: _LinkServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> SocketModeServer:
        """Start serving on a free port of 127.0.0.1 in a background thread and return self."""
        with self.on_change:
            if self._server is not None:
                raise RuntimeError(f"Socket Mode sandbox is already running at {self.url}")
            self._stopping = False
            self._server = _LinkServer(self)
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.01},
                name="slack-socket-mode-sandbox",
                daemon=True,
            )
            self._thread.start()
        logger.info("Socket Mode sandbox started at %s", self.url)
        return self

    def stop(self) -> None:
        """Close every connection with code 1001 and stop serving. Calling it again does nothing."""
        with self.on_change:
            if self._server is None:
                return
            server, thread, url = self._server, self._thread, self.url
            self._stopping = True
            connections = [connection for connection in self._connections if connection.closed is None]
        server.shutdown()
        for connection in connections:
            connection.send_close(CLOSE_GOING_AWAY, "server stopping")
            connection.abort()
        # server_close joins the connection threads, which end once their sockets are shut down.
        server.server_close()
        if thread is not None:
            thread.join()
        with self.on_change:
            self._server = None
            self._thread = None
            self.on_change.notify_all()
        logger.info("Socket Mode sandbox at %s stopped", url)

    def __enter__(self) -> SocketModeServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, ``ws://127.0.0.1:PORT``."""
        if self._server is None:
            raise RuntimeError("Socket Mode sandbox is not running. Call start() first")
        host, port = self._server.server_address[:2]
        return f"ws://{host}:{port}"

    def issue_url(self) -> str:
        """Issue a connection URL with a new ticket, as ``apps.connections.open`` returns it."""
        ticket = uuid.uuid4().hex
        with self.on_change:
            url = f"{self.url}{LINK_PATH}?ticket={ticket}"
            self._tickets[ticket] = time.time()
        return url

    # -- what tests do --------------------------------------------------------------------------

    def push(
        self,
        envelope_type: str,
        payload: Mapping[str, Any],
        *,
        accepts_response_payload: bool = False,
        envelope_id: str | None = None,
        retry_attempt: int | None = None,
        retry_reason: str | None = None,
        connection: int | None = None,
    ) -> str:
        """Send an envelope to connection ``connection`` (default: the newest open one).

        Returns the envelope id. Raises ValueError for an unknown ``envelope_type`` and
        RuntimeError when no connection is open or the send fails.
        """
        if envelope_type not in ENVELOPE_TYPES:
            raise ValueError(f"envelope type must be one of {', '.join(ENVELOPE_TYPES)}, got {envelope_type!r}")
        envelope: dict[str, Any] = {
            "envelope_id": envelope_id or str(uuid.uuid4()),
            "type": envelope_type,
            "payload": copy.deepcopy(dict(payload)),
            "accepts_response_payload": accepts_response_payload,
        }
        if retry_attempt is not None:
            envelope["retry_attempt"] = retry_attempt
        if retry_reason is not None:
            envelope["retry_reason"] = retry_reason
        with self.on_change:
            target = self._connection(connection)
            self._envelopes[envelope["envelope_id"]] = {
                **envelope,
                "connection": target.number,
                "time": time.time(),
                "_monotonic": time.monotonic(),
            }
        self._send(target, envelope)
        logger.debug(
            "Socket Mode sandbox pushed %s envelope %s to connection %s",
            envelope_type,
            envelope["envelope_id"],
            target.number,
        )
        return envelope["envelope_id"]

    def disconnect(self, reason: str = "refresh_requested", *, connection: int | None = None) -> int:
        """Send Slack's ``disconnect`` message to a connection and return the connection's id.

        The connection stays open, because a client is expected to open a new connection and then
        close this one itself.
        """
        with self.on_change:
            target = self._connection(connection)
        self._send(target, {"type": "disconnect", "reason": reason, "debug_info": {"host": DEBUG_HOST}})
        logger.info("Socket Mode sandbox asked connection %s to disconnect (%s)", target.number, reason)
        return target.number

    def close_connection(self, connection: int | None = None, code: int = CLOSE_NORMAL, reason: str = "") -> int:
        """Send a close frame to a connection (default: the newest open one) and return its id.

        The connection ends when the client replies with its own close frame or closes its socket.
        """
        with self.on_change:
            target = self._connection(connection)
        target.send_close(code, reason)
        with self.on_change:
            self.on_change.notify_all()
        return target.number

    # -- recorded state -------------------------------------------------------------------------

    def connections(self) -> list[dict[str, Any]]:
        """Return every connection that completed the handshake, oldest first."""
        with self.on_change:
            return [connection.record() for connection in self._connections]

    def open_connections(self) -> list[dict[str, Any]]:
        """Return the connections that are open and not closing, oldest first."""
        return [record for record in self.connections() if record["open"]]

    def envelopes(self) -> list[dict[str, Any]]:
        """Return the pushed envelopes in order."""
        with self.on_change:
            return [
                {key: copy.deepcopy(value) for key, value in envelope.items() if not key.startswith("_")}
                for envelope in self._envelopes.values()
            ]

    def acks(self) -> list[dict[str, Any]]:
        """Return the acks received, in order."""
        with self.on_change:
            return copy.deepcopy(self._acks)

    def ack(self, envelope_id: str) -> dict[str, Any] | None:
        """Return the first ack of ``envelope_id``, or None if none has arrived."""
        with self.on_change:
            found = next((ack for ack in self._acks if ack["envelope_id"] == envelope_id), None)
            return copy.deepcopy(found)

    def unexpected_messages(self) -> list[dict[str, Any]]:
        """Return the text messages from clients that were not acks."""
        with self.on_change:
            return copy.deepcopy(self._unexpected)

    def wait_for(self, predicate: Callable[[SocketModeServer], Any], timeout: float = 10.0) -> Any:
        """Wait until ``predicate(self)`` is truthy and return its value.

        The predicate runs under the state lock, after every change and at least every 10 ms.
        Raises AssertionError with a summary of the recorded state after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        with self.on_change:
            while True:
                result = predicate(self)
                if result:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"Socket Mode sandbox: condition not met within {timeout} s. {self.summary()}")
                self.on_change.wait(min(0.01, remaining))

    def wait_for_ack(self, envelope_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """Wait for the ack of ``envelope_id`` and return it, as in ``acks()``."""
        return self.wait_for(lambda server: server.ack(envelope_id), timeout)

    def summary(self) -> str:
        """Describe the recorded state in one line, for failure messages."""
        with self.on_change:
            acked = {ack["envelope_id"] for ack in self._acks}
            pending = [f"{envelope['type']} {key}" for key, envelope in self._envelopes.items() if key not in acked]
            live = sum(1 for connection in self._connections if connection.is_open)
            return (
                f"connections: {len(self._connections)} ({live} open); tickets issued: {len(self._tickets)}; "
                f"envelopes: {len(self._envelopes)}; acks: {len(self._acks)}; "
                f"unacked: {pending[-3:] or 'none'}; unexpected messages: {len(self._unexpected)}"
            )

    # -- internals (called from connection threads) ---------------------------------------------

    def _connection(self, number: int | None) -> _Connection:
        if number is None:
            live = [connection for connection in self._connections if connection.is_open]
            if not live:
                raise RuntimeError(f"no Socket Mode client is connected. {self.summary()}")
            return live[-1]
        for connection in self._connections:
            if connection.number == number:
                if not connection.is_open:
                    raise RuntimeError(f"Socket Mode connection {number} is closed")
                return connection
        raise RuntimeError(f"no Socket Mode connection {number}. Connections are numbered from 1")

    def _send(self, connection: _Connection, message: Mapping[str, Any]) -> None:
        try:
            connection.send_json(message)
        except OSError as error:
            raise RuntimeError(f"sending to Socket Mode connection {connection.number} failed: {error}") from error

    def _take_ticket(self, ticket: str) -> bool:
        with self.on_change:
            return self._tickets.pop(ticket, None) is not None

    def _open(self, ticket: str, sock: socket.socket, peer: str) -> _Connection | None:
        """Register an upgraded connection and send it hello. Returns None while stopping."""
        with self.on_change:
            if self._stopping:
                return None
            connection = _Connection(len(self._connections) + 1, ticket, sock, peer)
            self._connections.append(connection)
            hello = {
                "type": "hello",
                "num_connections": sum(1 for item in self._connections if item.is_open),
                "debug_info": {
                    "host": DEBUG_HOST,
                    "build_number": DEBUG_BUILD_NUMBER,
                    "approximate_connection_time": DEBUG_APPROXIMATE_CONNECTION_TIME,
                },
                "connection_info": {"app_id": self.app_id},
            }
            # hello goes out before any push can pick this connection, because both hold the lock.
            try:
                connection.send_json(hello)
            except OSError as error:
                logger.warning(
                    "Socket Mode sandbox could not send hello to connection %s: %s", connection.number, error
                )
            self.on_change.notify_all()
        logger.info("Socket Mode sandbox opened connection %s from %s", connection.number, peer)
        return connection

    def _closed(self, connection: _Connection, code: int | None, reason: str | None) -> None:
        with self.on_change:
            connection.closed = time.time()
            connection.close_code = code
            connection.close_reason = reason
            self.on_change.notify_all()
        logger.info("Socket Mode sandbox connection %s closed (client close code %s)", connection.number, code)

    def _pinged(self, connection: _Connection) -> None:
        with self.on_change:
            connection.pings += 1

    def _receive_text(self, connection: _Connection, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            message = None
        with self.on_change:
            if isinstance(message, dict) and isinstance(message.get("envelope_id"), str):
                envelope = self._envelopes.get(message["envelope_id"])
                seconds = time.monotonic() - envelope["_monotonic"] if envelope else None
                self._acks.append(
                    {
                        "envelope_id": message["envelope_id"],
                        "payload": message.get("payload"),
                        "connection": connection.number,
                        "time": time.time(),
                        "seconds": seconds,
                    }
                )
                if envelope is None:
                    logger.warning(
                        "Socket Mode sandbox got an ack for unknown envelope %s on connection %s",
                        message["envelope_id"],
                        connection.number,
                    )
            else:
                self._unexpected.append({"connection": connection.number, "text": text, "time": time.time()})
                logger.warning(
                    "Socket Mode sandbox got a message that is not an ack on connection %s: %.200s",
                    connection.number,
                    text,
                )
            self.on_change.notify_all()

    def _run(self, connection: _Connection, stream: BinaryIO) -> None:
        """Read frames until the connection closes, replying to pings and close frames."""
        close_code: int | None = None
        close_reason: str | None = None
        message_opcode: int | None = None
        fragments: list[bytes] = []
        try:
            while True:
                frame = read_frame(stream)
                if frame.opcode >= OPCODE_CLOSE:
                    if not frame.fin or len(frame.payload) > MAX_CONTROL_PAYLOAD:
                        raise ProtocolError(CLOSE_PROTOCOL_ERROR, "control frames must be unfragmented and short")
                    if frame.opcode == OPCODE_PING:
                        self._pinged(connection)
                        connection.send(OPCODE_PONG, frame.payload)
                    elif frame.opcode == OPCODE_CLOSE:
                        close_code, close_reason = _parse_close(frame.payload)
                        # Reply to a close that the client started, with its own status code.
                        connection.send_close(close_code or CLOSE_NORMAL)
                        break
                    elif frame.opcode != OPCODE_PONG:
                        raise ProtocolError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {frame.opcode:#x}")
                    continue
                if frame.opcode == OPCODE_CONTINUATION:
                    if message_opcode is None:
                        raise ProtocolError(CLOSE_PROTOCOL_ERROR, "continuation frame without a message to continue")
                elif frame.opcode in (OPCODE_TEXT, OPCODE_BINARY):
                    if message_opcode is not None:
                        raise ProtocolError(CLOSE_PROTOCOL_ERROR, "new message before the previous one ended")
                    message_opcode = frame.opcode
                else:
                    raise ProtocolError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {frame.opcode:#x}")
                fragments.append(frame.payload)
                if sum(len(part) for part in fragments) > MAX_MESSAGE_BYTES:
                    raise ProtocolError(CLOSE_MESSAGE_TOO_BIG, f"message exceeds {MAX_MESSAGE_BYTES} bytes")
                if not frame.fin:
                    continue
                data, opcode = b"".join(fragments), message_opcode
                message_opcode, fragments = None, []
                if opcode == OPCODE_BINARY:
                    raise ProtocolError(CLOSE_UNSUPPORTED_DATA, "Socket Mode messages are text")
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError:
                    raise ProtocolError(CLOSE_INVALID_PAYLOAD, "text message is not valid UTF-8") from None
                self._receive_text(connection, text)
        except ProtocolError as error:
            logger.warning("Socket Mode sandbox closing connection %s: %s", connection.number, error)
            connection.send_close(error.code, error.reason)
        except (_ConnectionClosed, OSError) as error:
            logger.debug("Socket Mode sandbox connection %s ended: %s", connection.number, error)
        finally:
            self._closed(connection, close_code, close_reason)


def _parse_close(payload: bytes) -> tuple[int | None, str | None]:
    if not payload:
        return None, None
    if len(payload) == 1:
        raise ProtocolError(CLOSE_PROTOCOL_ERROR, "close frame with a 1-byte body")
    (code,) = struct.unpack("!H", payload[:2])
    return code, payload[2:].decode("utf-8", errors="replace")


class _LinkServer(ThreadingHTTPServer):
    # Connection threads are joined by server_close(), which stop() calls after shutting
    # their sockets down.
    daemon_threads = False

    def __init__(self, owner: SocketModeServer) -> None:
        super().__init__(("127.0.0.1", 0), _LinkHandler)
        self.owner = owner


class _LinkHandler(BaseHTTPRequestHandler):
    """Serve the WebSocket upgrade on ``/link/``, then the frames of that connection."""

    server: _LinkServer
    server_version = "SlackSandbox/1.0"
    protocol_version = "HTTP/1.1"
    timeout = HANDSHAKE_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("Socket Mode sandbox request from %s: %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self.close_connection = True
        parts = urlsplit(self.path)
        if parts.path.rstrip("/") != LINK_PATH.rstrip("/"):
            self._reject(404, f"no WebSocket endpoint at {parts.path}. Use the URL from apps.connections.open")
            return
        key = self._handshake_error_or_key()
        if key is None:
            return
        ticket = (parse_qs(parts.query).get("ticket") or [""])[-1]
        # NOTE: Slack does not document its response to an unknown or reused ticket. The sandbox
        # lets each ticket open one connection and rejects others with 401.
        if not self.server.owner._take_ticket(ticket):
            self._reject(401, "invalid or already used ticket. Call apps.connections.open for a new URL")
            return

        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept_key(key))
        self.end_headers()
        self.wfile.flush()
        # Frames may take any time to arrive once the handshake is done.
        self.connection.settimeout(None)
        connection = self.server.owner._open(ticket, self.connection, self.address_string())
        if connection is None:
            return  # The server is stopping, so the socket closes without a hello.
        self.server.owner._run(connection, self.rfile)

    def _handshake_error_or_key(self) -> str | None:
        """Check the upgrade headers of RFC 6455 section 4.2.1. Returns the key, or None after an error."""
        if self.headers.get("Upgrade", "").lower() != "websocket" or "upgrade" not in [
            token.strip().lower() for token in self.headers.get("Connection", "").split(",")
        ]:
            self._reject(426, "this endpoint only accepts WebSocket upgrades", {"Upgrade": "websocket"})
            return None
        if self.headers.get("Sec-WebSocket-Version", "").strip() != WEBSOCKET_VERSION:
            self._reject(426, "unsupported WebSocket version", {"Sec-WebSocket-Version": WEBSOCKET_VERSION})
            return None
        key = self.headers.get("Sec-WebSocket-Key", "").strip()
        try:
            valid = len(base64.b64decode(key, validate=True)) == 16
        except binascii.Error:
            valid = False
        if not valid:
            self._reject(400, "Sec-WebSocket-Key must be 16 bytes in base64")
            return None
        return key

    def _reject(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        logger.warning(
            "Socket Mode sandbox rejected a handshake for %s from %s with HTTP %s: %s",
            urlsplit(self.path).path,
            self.address_string(),
            status,
            message,
        )
        data = (message + "\n").encode("utf-8")
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)


# ---------------------------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------------------------


def payload_from_body(body: str) -> dict[str, Any]:
    """Decode a request body from the ``sandbox.slack_client`` builders into a Socket Mode payload.

    A JSON body (an Events API delivery) becomes its object, an interaction form (one ``payload``
    field) becomes that field's JSON, and a slash command form becomes a dict of its string fields,
    which is how Socket Mode carries slash commands.
    """
    if body.lstrip().startswith("{"):
        return json.loads(body)
    fields = dict(parse_qsl(body, keep_blank_values=True))
    if set(fields) == {"payload"}:
        return json.loads(fields["payload"])
    return fields


class SocketDriver:
    """Client that plays Slack towards a bot connected over Socket Mode.

    It takes trigger ids and response URLs from ``slack``, so ``respond()`` and ``views.open``
    work as with ``SlackDriver``. Every sending method pushes one envelope, waits up to ``timeout``
    seconds for the ack and returns it as in ``SocketModeServer.acks()``. A missing ack raises
    AssertionError. Each method also takes ``retry_attempt`` and ``retry_reason``, which go into
    the envelope.
    """

    def __init__(self, slack: SlackSandbox, *, timeout: float = 10.0) -> None:
        self.slack = slack
        self.timeout = timeout

    @property
    def server(self) -> SocketModeServer:
        return self.slack.socket_mode

    def wait_connected(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait until a client is connected and return its newest open connection."""
        connections = self.server.wait_for(
            lambda server: server.open_connections(), self.timeout if timeout is None else timeout
        )
        return connections[-1]

    def send(
        self,
        envelope_type: str,
        payload: Mapping[str, Any],
        *,
        accepts_response_payload: bool = False,
        retry_attempt: int | None = None,
        retry_reason: str | None = None,
    ) -> dict[str, Any]:
        """Push ``payload`` in an envelope of ``envelope_type`` and return its ack."""
        envelope_id = self.server.push(
            envelope_type,
            payload,
            accepts_response_payload=accepts_response_payload,
            retry_attempt=retry_attempt,
            retry_reason=retry_reason,
        )
        return self.server.wait_for_ack(envelope_id, self.timeout)

    def command(
        self, command: str, text: str = "", *, user: str = "U0ALICE", channel: str = "C0DEPLOYS", **options: Any
    ) -> dict[str, Any]:
        """Send a slash command with a fresh trigger_id and response URL from the sandbox."""
        body = slash_command_body(
            command,
            text,
            user=user,
            channel=channel,
            response_url=self.slack.new_response_url(channel=channel, user=user),
            trigger_id=self.slack.new_trigger_id(user=user),
            user_name=self._user_name(user),
            channel_name=self.slack.channels.get(channel),
        )
        return self.send("slash_commands", payload_from_body(body), accepts_response_payload=True, **options)

    def click(
        self,
        message: Mapping[str, Any],
        action_id: str,
        *,
        user: str = "U0BOB",
        state_values: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """Click the button ``action_id`` of ``message``, a record from the sandbox.

        The response URL points at that message, so a response with ``replace_original`` edits it.
        Raises LookupError if the message has no such button.
        """
        is_ephemeral = "message_ts" in message and "ts" not in message
        response_url = self.slack.new_response_url(
            channel=message["channel"],
            message_ts=None if is_ephemeral else message["ts"],
            user=user,
        )
        body = block_actions_body(
            message,
            action_id,
            user=user,
            response_url=response_url,
            trigger_id=self.slack.new_trigger_id(user=user),
            user_name=self._user_name(user),
            channel_name=self.slack.channels.get(message["channel"]),
            state_values=state_values,
        )
        return self._interact(payload_from_body(body), **options)

    def submit_view(
        self,
        view: Mapping[str, Any],
        values: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        user: str | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """Submit the modal ``view`` with ``values``, as in ``view_submission_body``.

        ``user`` defaults to the user the view was opened for, or U0ALICE.
        """
        user = user or view.get("user") or "U0ALICE"
        body = view_submission_body(
            view,
            values,
            user=user,
            trigger_id=self.slack.new_trigger_id(user=user),
            user_name=self._user_name(user),
        )
        return self._interact(payload_from_body(body), **options)

    def event(self, event: Mapping[str, Any], *, event_id: str | None = None, **options: Any) -> dict[str, Any]:
        """Deliver an Events API event, such as ``{"type": "app_mention", ...}``."""
        return self.send("events_api", payload_from_body(event_callback_body(event, event_id=event_id)), **options)

    def _interact(self, payload: dict[str, Any], **options: Any) -> dict[str, Any]:
        accepts = payload.get("type") in RESPONSE_PAYLOAD_INTERACTIONS
        return self.send("interactive", payload, accepts_response_payload=accepts, **options)

    def _user_name(self, user: str) -> str | None:
        return self.slack.users.get(user, {}).get("name")
