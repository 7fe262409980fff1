"""Tests of the Socket Mode sandbox: the WebSocket protocol with a raw socket, then slack_sdk's
built-in SocketModeClient and a bolt SocketModeHandler connected through apps.connections.open."""

from __future__ import annotations

import json
import os
import re
import socket
import struct
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.builtin import SocketModeClient
from slack_sdk.socket_mode.response import SocketModeResponse

from sandbox.slack_client import block_actions_body, event_callback_body, slash_command_body
from sandbox.slack_server import APP_ID, SlackSandbox
from sandbox.slack_socket import (
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    CLOSE_PROTOCOL_ERROR,
    OPCODE_CLOSE,
    OPCODE_CONTINUATION,
    OPCODE_PING,
    OPCODE_PONG,
    OPCODE_TEXT,
    SocketDriver,
    accept_key,
    close_payload,
    payload_from_body,
)

BOT_TOKEN = "xoxb-sandbox"
APP_TOKEN = "xapp-1-A0ROLLCALL-1-sandbox"
CHANNEL = "C0DEPLOYS"
# The example key and accept value of RFC 6455 section 1.3.
RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    # slack_sdk sends the WebSocket through HTTPS_PROXY or HTTP_PROXY when either is set.
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def slack():
    sandbox = SlackSandbox(bot_token=BOT_TOKEN).start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def web(slack):
    return WebClient(token=BOT_TOKEN, base_url=slack.api_url)


@pytest.fixture
def driver(slack):
    return SocketDriver(slack, timeout=10)


def close_quickly(client: SocketModeClient, slack: SlackSandbox) -> None:
    """Close a built-in client after the server has closed its connections.

    The client's close() waits for its reader, which blocks in recv() for up to 3 seconds
    (slack_sdk 3.48). A close frame from the server wakes the reader at once.
    """
    client.auto_reconnect_enabled = False
    server = slack.socket_mode
    for connection in server.open_connections():
        server.close_connection(connection["id"])
    server.wait_for(lambda s: all(record["closed"] for record in s.connections()), timeout=10)
    client.close()


@pytest.fixture
def client(slack):
    """A built-in SocketModeClient that records every message and acks every envelope."""
    instance = SocketModeClient(app_token=APP_TOKEN, web_client=WebClient(base_url=slack.api_url))
    instance.received = []

    def on_message(client, message, raw_message):
        instance.received.append(message)

    def on_request(client, request):
        text = request.payload.get("text")
        payload = {"text": f"got {text}"} if text else None
        client.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id, payload=payload))

    instance.message_listeners.append(on_message)
    instance.socket_mode_request_listeners.append(on_request)
    yield instance
    close_quickly(instance, slack)


# -- a raw WebSocket client, to test the protocol itself --------------------------------------


class RawClient:
    """A minimal WebSocket client over a plain socket that can break the protocol on purpose."""

    def __init__(self, url: str, *, key: str = RFC_KEY, headers: dict[str, str] | None = None) -> None:
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=5)
        self.stream = self.sock.makefile("rb")
        lines = [
            f"GET {parts.path}?{parts.query} HTTP/1.1",
            f"Host: {parts.hostname}:{parts.port}",
            *(f"{name}: {value}" for name, value in (headers or self.upgrade_headers(key)).items()),
        ]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("ascii"))
        self.status = int(self.stream.readline().split()[1])
        self.headers: dict[str, str] = {}
        while line := self.stream.readline().strip():
            name, _, value = line.decode("ascii").partition(":")
            self.headers[name.strip().lower()] = value.strip()
        length = int(self.headers.get("content-length", 0))
        self.body = self.stream.read(length).decode("utf-8") if length else ""

    @staticmethod
    def upgrade_headers(key: str) -> dict[str, str]:
        return {
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": key,
            "Sec-WebSocket-Version": "13",
        }

    def send_frame(self, opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True) -> None:
        head = bytes([(0x80 if fin else 0) | opcode])
        length = len(payload)
        if length < 126:
            head += bytes([(0x80 if masked else 0) | length])
        else:
            head += struct.pack("!BH", (0x80 if masked else 0) | 126, length)
        if masked:
            key = os.urandom(4)
            payload = key + bytes(byte ^ key[index % 4] for index, byte in enumerate(payload))
        self.sock.sendall(head + payload)

    def send_json(self, message: dict[str, Any]) -> None:
        self.send_frame(OPCODE_TEXT, json.dumps(message).encode("utf-8"))

    def read_frame(self) -> tuple[bool, int, bytes]:
        first, second = self.stream.read(2)
        assert not second & 0x80, "server frames must not be masked"
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self.stream.read(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self.stream.read(8))
        return bool(first & 0x80), first & 0x0F, self.stream.read(length)

    def read_json(self) -> dict[str, Any]:
        fin, opcode, payload = self.read_frame()
        assert (fin, opcode) == (True, OPCODE_TEXT)
        return json.loads(payload)

    def read_close(self) -> int:
        _, opcode, payload = self.read_frame()
        assert opcode == OPCODE_CLOSE
        return struct.unpack("!H", payload[:2])[0]

    def close(self) -> None:
        self.stream.close()
        self.sock.close()


@pytest.fixture
def raw(slack):
    opened: list[RawClient] = []

    def connect(url: str | None = None, **options: Any) -> RawClient:
        instance = RawClient(url or slack.socket_mode.issue_url(), **options)
        opened.append(instance)
        return instance

    yield connect
    for instance in opened:
        instance.close()


def connected(raw, url: str | None = None) -> RawClient:
    """Open a raw connection and read its hello."""
    instance = raw(url)
    assert instance.status == 101
    assert instance.read_json()["type"] == "hello"
    return instance


# -- apps.connections.open ---------------------------------------------------------------------


def test_connections_open_returns_link_url(slack):
    response = WebClient(base_url=slack.api_url).apps_connections_open(app_token=APP_TOKEN)

    assert re.fullmatch(r"ws://127\.0\.0\.1:\d+/link/\?ticket=[0-9a-f]{32}", response["url"])
    assert response["url"].startswith(slack.socket_mode.url)
    assert response.headers["x-oauth-scopes"] == "connections:write"
    [call] = slack.calls("apps.connections.open")
    assert APP_TOKEN not in json.dumps(call)


def test_connections_open_issues_fresh_tickets(slack):
    client = WebClient(base_url=slack.api_url)

    first = client.apps_connections_open(app_token=APP_TOKEN)["url"]
    second = client.apps_connections_open(app_token=APP_TOKEN)["url"]

    assert first != second


def test_connections_open_rejects_bot_token(slack):
    with pytest.raises(SlackApiError) as info:
        WebClient(base_url=slack.api_url).apps_connections_open(app_token=BOT_TOKEN)

    assert info.value.response["error"] == "invalid_auth"


def test_app_token_rejected_by_other_methods(slack):
    with pytest.raises(SlackApiError) as info:
        WebClient(token=APP_TOKEN, base_url=slack.api_url).auth_test()

    assert info.value.response["error"] == "invalid_auth"


def test_socket_mode_stops_with_sandbox():
    sandbox = SlackSandbox().start()
    server = sandbox.socket_mode

    sandbox.stop()

    with pytest.raises(RuntimeError, match="not running"):
        _ = server.url
    with pytest.raises(RuntimeError, match="not running"):
        _ = sandbox.socket_mode


# -- WebSocket protocol ------------------------------------------------------------------------


def test_accept_key_matches_rfc_example():
    assert accept_key(RFC_KEY) == RFC_ACCEPT


def test_handshake_then_hello(slack, raw):
    client = raw()

    assert client.status == 101
    assert client.headers["upgrade"].lower() == "websocket"
    assert client.headers["sec-websocket-accept"] == RFC_ACCEPT
    hello = client.read_json()
    assert hello["type"] == "hello"
    assert hello["num_connections"] == 1
    assert hello["connection_info"] == {"app_id": APP_ID}
    assert hello["debug_info"]["host"]
    [record] = slack.socket_mode.open_connections()
    assert record["id"] == 1


def test_hello_counts_open_connections(raw):
    connected(raw)
    second = raw()

    assert second.status == 101
    assert second.read_json()["num_connections"] == 2


def test_ticket_opens_one_connection(slack, raw):
    url = slack.socket_mode.issue_url()
    connected(raw, url)

    again = raw(url)

    assert again.status == 401
    assert "apps.connections.open" in again.body
    assert len(slack.socket_mode.connections()) == 1


@pytest.mark.parametrize(
    ("url_tail", "headers", "status"),
    [
        ("/link/?ticket=unknown", None, 401),
        ("/elsewhere/?ticket=x", None, 404),
        ("/link/?ticket=x", {"Connection": "keep-alive"}, 426),
        ("/link/?ticket=x", {"Sec-WebSocket-Version": "8"}, 426),
        ("/link/?ticket=x", {"Sec-WebSocket-Key": "short"}, 400),
    ],
    ids=["unknown-ticket", "wrong-path", "no-upgrade", "old-version", "bad-key"],
)
def test_handshake_refused(slack, raw, url_tail, headers, status):
    upgrade = RawClient.upgrade_headers(RFC_KEY)
    upgrade.update(headers or {})

    client = raw(slack.socket_mode.url + url_tail, headers=upgrade)

    assert client.status == status
    assert client.body
    assert slack.socket_mode.connections() == []


def test_ping_gets_pong(slack, raw):
    client = connected(raw)

    client.send_frame(OPCODE_PING, b"session:1.5")

    assert client.read_frame() == (True, OPCODE_PONG, b"session:1.5")
    assert slack.socket_mode.connections()[0]["pings"] == 1


def test_fragmented_ack_recorded(slack, raw):
    client = connected(raw)
    envelope_id = slack.socket_mode.push("slash_commands", {"command": "/rollout"}, accepts_response_payload=True)
    envelope = client.read_json()
    ack = json.dumps({"envelope_id": envelope["envelope_id"], "payload": {"text": "ok"}}).encode()

    client.send_frame(OPCODE_TEXT, ack[:10], fin=False)
    client.send_frame(OPCODE_PING, b"between fragments")
    client.send_frame(OPCODE_CONTINUATION, ack[10:])

    assert client.read_frame()[1] == OPCODE_PONG
    recorded = slack.socket_mode.wait_for_ack(envelope_id, timeout=5)
    assert recorded["payload"] == {"text": "ok"}
    assert recorded["connection"] == 1
    assert 0 <= recorded["seconds"] < 5


def test_envelope_shape(slack, raw):
    client = connected(raw)

    slack.socket_mode.push(
        "events_api", {"type": "event_callback"}, envelope_id="e-1", retry_attempt=2, retry_reason="timeout"
    )

    assert client.read_json() == {
        "envelope_id": "e-1",
        "type": "events_api",
        "payload": {"type": "event_callback"},
        "accepts_response_payload": False,
        "retry_attempt": 2,
        "retry_reason": "timeout",
    }
    [envelope] = slack.socket_mode.envelopes()
    assert envelope["connection"] == 1


def test_message_that_is_not_ack_recorded(slack, raw):
    client = connected(raw)

    client.send_json({"type": "hello back"})

    [message] = slack.socket_mode.wait_for(lambda s: s.unexpected_messages(), timeout=5)
    assert json.loads(message["text"]) == {"type": "hello back"}
    assert slack.socket_mode.acks() == []


def test_unmasked_frame_closes_connection(slack, raw):
    client = connected(raw)

    client.send_frame(OPCODE_TEXT, b"{}", masked=False)

    assert client.read_close() == CLOSE_PROTOCOL_ERROR
    slack.socket_mode.wait_for(lambda s: s.connections()[0]["closed"], timeout=5)


def test_client_close_answered(slack, raw):
    client = connected(raw)

    client.send_frame(OPCODE_CLOSE, close_payload(CLOSE_NORMAL, "bye"))

    assert client.read_close() == CLOSE_NORMAL
    [record] = slack.socket_mode.wait_for(lambda s: [c for c in s.connections() if c["closed"]], timeout=5)
    assert (record["close_code"], record["close_reason"]) == (CLOSE_NORMAL, "bye")
    with pytest.raises(RuntimeError, match="no Socket Mode client is connected"):
        slack.socket_mode.push("slash_commands", {})


def test_stop_sends_going_away(slack, raw):
    client = connected(raw)

    slack.stop()

    assert client.read_close() == CLOSE_GOING_AWAY


def test_push_without_connection_raises(slack):
    with pytest.raises(RuntimeError, match="no Socket Mode client is connected"):
        slack.socket_mode.push("slash_commands", {"command": "/rollout"})


def test_push_unknown_type_raises(slack, raw):
    connected(raw)

    with pytest.raises(ValueError, match="slash_commands"):
        slack.socket_mode.push("slash_command", {})


def test_disconnect_message_shape(slack, raw):
    client = connected(raw)

    assert slack.socket_mode.disconnect() == 1

    message = client.read_json()
    assert message["type"] == "disconnect"
    assert message["reason"] == "refresh_requested"


# -- payloads ----------------------------------------------------------------------------------


def test_payload_from_slash_command_body():
    body = slash_command_body(
        "/rollout",
        "status qwen-chat",
        user="U0ALICE",
        channel=CHANNEL,
        response_url="http://127.0.0.1:1/response/R1",
        trigger_id="1.2.x",
    )

    payload = payload_from_body(body)

    assert payload["command"] == "/rollout"
    assert payload["text"] == "status qwen-chat"
    assert payload["user_name"] == "alice"
    assert payload["is_enterprise_install"] == "false"


def test_payload_from_interaction_body():
    message = {
        "channel": CHANNEL,
        "ts": "1.000100",
        "text": "x",
        "blocks": [
            {
                "type": "actions",
                "block_id": "b",
                "elements": [
                    {"type": "button", "action_id": "approve", "text": {"type": "plain_text", "text": "Approve"}}
                ],
            }
        ],
    }
    body = block_actions_body(message, "approve", user="U0BOB", response_url="http://127.0.0.1:1/r", trigger_id="1.2.x")

    payload = payload_from_body(body)

    assert payload["type"] == "block_actions"
    assert payload["actions"][0]["action_id"] == "approve"


def test_payload_from_event_body():
    payload = payload_from_body(event_callback_body({"type": "app_mention", "text": "hi"}, event_id="Ev1"))

    assert payload["type"] == "event_callback"
    assert payload["event_id"] == "Ev1"


# -- slack_sdk's built-in SocketModeClient ------------------------------------------------------


def test_builtin_client_gets_hello(slack, client, driver):
    client.connect()

    connection = driver.wait_connected()

    hello = slack.socket_mode.wait_for(lambda s: next((m for m in client.received if m["type"] == "hello"), None))
    assert hello["connection_info"]["app_id"] == APP_ID
    assert connection["id"] == 1
    [call] = slack.calls("apps.connections.open")
    assert call["response"]["ok"]
    # The client pings right after its handshake, and the pong keeps it from treating the
    # connection as stale.
    slack.socket_mode.wait_for(lambda s: s.connections()[0]["pings"] >= 1, timeout=5)


def test_builtin_client_ack_recorded(slack, client, driver):
    client.connect()
    driver.wait_connected()

    with_payload = driver.send("slash_commands", {"text": "status"}, accepts_response_payload=True)
    empty = driver.send("events_api", {"type": "event_callback"})

    assert with_payload["payload"] == {"text": "got status"}
    assert empty["payload"] is None
    assert [ack["envelope_id"] for ack in slack.socket_mode.acks()] == [
        with_payload["envelope_id"],
        empty["envelope_id"],
    ]
    assert slack.socket_mode.unexpected_messages() == []


def test_builtin_client_reconnects_after_disconnect(slack, client, driver):
    client.connect()
    driver.wait_connected()

    slack.socket_mode.disconnect("refresh_requested")

    # The client opens a new connection with a new URL, then closes the old one.
    connections = slack.socket_mode.wait_for(
        lambda s: len(s.connections()) == 2 and s.connections()[0]["closed"] and s.connections(), timeout=10
    )
    assert connections[1]["open"]
    assert connections[0]["ticket"] != connections[1]["ticket"]
    assert len(slack.calls("apps.connections.open")) == 2
    ack = driver.send("slash_commands", {"text": "again"}, accepts_response_payload=True)
    assert ack["connection"] == 2
    assert ack["payload"] == {"text": "got again"}


# -- a bolt app over SocketModeHandler ----------------------------------------------------------


@dataclass
class Seen:
    commands: list = field(default_factory=list)
    actions: list = field(default_factory=list)
    views: list = field(default_factory=list)


@pytest.fixture
def bolt(slack):
    """A tiny bolt app connected to the sandbox through SocketModeHandler."""
    app = App(client=WebClient(token=BOT_TOKEN, base_url=slack.api_url), request_verification_enabled=False)
    seen = Seen()

    @app.command("/hello")
    def on_hello(ack, command, respond):
        ack()
        seen.commands.append(command)
        respond(text=f"Hello, {command['user_name']}: {command['text']}")

    @app.command("/working")
    def on_working(ack):
        ack("working")

    @app.command("/propose")
    def on_propose(ack, command, client):
        ack()
        client.views_open(
            trigger_id=command["trigger_id"],
            view={
                "type": "modal",
                "callback_id": "propose",
                "title": {"type": "plain_text", "text": "Propose"},
                "submit": {"type": "plain_text", "text": "Propose"},
                "blocks": [
                    {
                        "type": "input",
                        "block_id": "endpoint",
                        "label": {"type": "plain_text", "text": "Endpoint"},
                        "element": {"type": "plain_text_input", "action_id": "name"},
                    }
                ],
            },
        )

    @app.view("propose")
    def on_submit(ack, view):
        name = view["state"]["values"]["endpoint"]["name"]["value"]
        if not name:
            ack(response_action="errors", errors={"endpoint": "Enter an endpoint name"})
            return
        seen.views.append(name)
        ack()

    @app.action("approve")
    def on_approve(ack, body, respond):
        ack()
        seen.actions.append({"user": body["user"]["id"], "ts": body["message"]["ts"]})
        respond(replace_original=True, text=f"Approved by <@{body['user']['id']}>")

    handler = SocketModeHandler(app, APP_TOKEN)
    handler.connect()
    yield seen
    close_quickly(handler.client, slack)


def test_bolt_command_respond(slack, bolt, driver):
    driver.wait_connected()

    ack = driver.command("/hello", "world", user="U0BOB", channel=CHANNEL)

    assert ack["payload"] is None
    assert ack["seconds"] < 3
    [response] = slack.wait_for(lambda s: s.responses(), timeout=5)
    assert response["text"] == "Hello, bob: world"
    assert (response["user"], response["channel"]) == ("U0BOB", CHANNEL)
    [command] = bolt.commands
    assert command["response_url"] == response["url"]
    [envelope] = slack.socket_mode.envelopes()
    assert (envelope["type"], envelope["accepts_response_payload"]) == ("slash_commands", True)


def test_bolt_ack_text_returned(slack, bolt, driver):
    driver.wait_connected()

    ack = driver.command("/working")

    assert ack["payload"] == {"text": "working"}


def test_bolt_click_edits_message(slack, bolt, driver, web):
    driver.wait_connected()
    web.chat_postMessage(
        channel=CHANNEL,
        text="Proposal",
        blocks=[
            {
                "type": "actions",
                "block_id": "decision",
                "elements": [
                    {
                        "type": "button",
                        "action_id": "approve",
                        "value": "p-1",
                        "text": {"type": "plain_text", "text": "Approve"},
                    }
                ],
            }
        ],
    )
    [message] = slack.messages(CHANNEL)

    ack = driver.click(message, "approve", user="U0BOB")

    assert ack["payload"] is None
    slack.wait_for(lambda s: s.responses(), timeout=5)
    assert bolt.actions == [{"user": "U0BOB", "ts": message["ts"]}]
    assert slack.message(CHANNEL, message["ts"])["text"] == "Approved by <@U0BOB>"
    [envelope] = slack.socket_mode.envelopes()
    assert (envelope["type"], envelope["accepts_response_payload"]) == ("interactive", False)


def test_bolt_view_submission_errors_in_ack(slack, bolt, driver):
    driver.wait_connected()
    driver.command("/propose", user="U0ALICE")
    [view] = slack.wait_for(lambda s: s.views(), timeout=5)

    rejected = driver.submit_view(view, {"endpoint": {"name": ""}})
    accepted = driver.submit_view(view, {"endpoint": {"name": "qwen-chat"}})

    assert rejected["payload"] == {"response_action": "errors", "errors": {"endpoint": "Enter an endpoint name"}}
    assert accepted["payload"] is None
    assert bolt.views == ["qwen-chat"]
    submission = slack.socket_mode.envelopes()[-1]
    assert (submission["type"], submission["accepts_response_payload"]) == ("interactive", True)
    assert submission["payload"]["user"]["id"] == "U0ALICE"


def test_driver_missing_ack_fails(slack, raw):
    connected(raw)
    driver = SocketDriver(slack, timeout=0.2)

    with pytest.raises(AssertionError, match="unacked"):
        driver.command("/rollout", "status")
