"""Local fake of the Slack Web API, for tests and the demo.

``SlackSandbox`` serves the Web API methods the bot uses on 127.0.0.1, plus response URLs, and
records every call, message, ephemeral message, response-URL post and modal view. Tests can make
chosen methods fail or respond slowly. Method names, argument names, error codes and limits follow
Slack's Web API reference for chat.postMessage, chat.update, views.open, users.info,
usergroups.users.list and conversations.history/replies, as read for slack_sdk 3.47.
``apps.connections.open`` returns URLs of a Socket Mode server (``sandbox.slack_socket``) that
starts on first use.

Example::

    slack = SlackSandbox(bot_token="xoxb-sandbox").start()
    client = WebClient(token="xoxb-sandbox", base_url=slack.api_url)
    client.chat_postMessage(channel="C0DEPLOYS", text="hello")
    slack.wait_for(lambda s: s.messages("C0DEPLOYS"))
    slack.stop()

The same state is readable from other processes over HTTP (``GET /_sandbox/calls`` and friends,
see ``SlackSandbox``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, parse_qsl
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    from sandbox.slack_socket import SocketModeServer

logger = logging.getLogger(__name__)

# Identity of the sandbox workspace and of the bot installed in it.
TEAM_ID = "T0SANDBOX"
TEAM_NAME = "Sandbox"
TEAM_DOMAIN = "sandbox"
BOT_USER_ID = "U0ROLLCALL"
BOT_USER_NAME = "rollcall"
BOT_ID = "B0ROLLCALL"
APP_ID = "A0ROLLCALL"
BOT_SCOPES = (
    "commands",
    "chat:write",
    "chat:write.public",
    "users:read",
    "usergroups:read",
    "channels:history",
    "groups:history",
)

DEFAULT_USERS: tuple[dict[str, str], ...] = (
    {"id": "U0ALICE", "name": "alice", "real_name": "Alice Adams", "tz": "America/Los_Angeles"},
    {"id": "U0BOB", "name": "bob", "real_name": "Bob Brown", "tz": "Europe/Berlin"},
    {"id": "U0CAROL", "name": "carol", "real_name": "Carol Chen", "tz": "Asia/Singapore"},
    {"id": "U0DAVE", "name": "dave", "real_name": "Dave Diaz", "tz": "America/New_York"},
    {"id": "U0ERIN", "name": "erin", "real_name": "Erin Evans", "tz": "Europe/London"},
)
DEFAULT_USERGROUPS: dict[str, list[str]] = {"S0SRE": ["U0CAROL", "U0DAVE"]}
DEFAULT_CHANNELS: dict[str, str] = {"C0DEPLOYS": "deploys", "C0ALERTS": "alerts"}

# Limits from Slack's Block Kit and chat.postMessage references.
MAX_MESSAGE_TEXT = 40_000
MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_SECTION_TEXT = 3000
MAX_SECTION_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_HEADER_TEXT = 150
MAX_ACTIONS_ELEMENTS = 25
MAX_CONTEXT_ELEMENTS = 10
MAX_ID_LENGTH = 255
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_VIEW_TITLE = 24
MAX_PRIVATE_METADATA = 3000

# Message timestamps start at 2024-12-04 18:40:00 UTC and grow by 100 microseconds, so they look
# like Slack's "1733337600.000100" and sort the same as strings, numbers and Decimals.
FIRST_TS_MICROS = 1_733_337_600_000_000
TS_STEP_MICROS = 100

# Slack's modals must open within 3 seconds of the interaction that produced the trigger_id.
TRIGGER_TTL_SECONDS = 3.0

# Methods that take the app-level token (xapp-...) instead of the bot token, and the scope it has.
APP_TOKEN_METHODS = ("apps.connections.open",)
APP_TOKEN_SCOPES = ("connections:write",)

# Method name under which response-URL posts appear in calls() and can be failed or delayed.
RESPONSE_URL_METHOD = "response_url"

# Fields that slack_sdk sends as JSON strings inside form bodies.
_JSON_FIELDS = {
    "blocks": "invalid_blocks_format",
    "attachments": "invalid_attachments",
    "metadata": "invalid_metadata_format",
    "view": "invalid_arguments",
}


class SlackError(Exception):
    """A Web API error that the sandbox returns as ``{"ok": false, "error": code, ...}``."""

    def __init__(self, code: str, **extra: Any) -> None:
        super().__init__(code)
        self.code = code
        self.extra = extra


@dataclass
class Fault:
    """One scripted failure of one call."""

    error: str
    status: int
    retry_after: int


@dataclass
class Reply:
    """An HTTP response: a JSON object, or text when ``body`` is a str."""

    status: int
    body: dict[str, Any] | str
    headers: dict[str, str] = field(default_factory=dict)


def _flag(value: Any) -> bool:
    """Read a boolean argument that a form body sends as "true", "1" or "false"."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def _ts_decimal(ts: Any, error: str) -> Decimal:
    try:
        return Decimal(str(ts))
    except InvalidOperation:
        raise SlackError(error) from None


def _text_value(obj: Any) -> str:
    """Return the string inside a Block Kit text object, or the string itself."""
    if isinstance(obj, dict):
        text = obj.get("text", "")
        return text if isinstance(text, str) else ""
    return obj if isinstance(obj, str) else ""


def _user_record(user: Mapping[str, Any]) -> dict[str, Any]:
    """Build a users.info ``user`` object from a fixture with id, name, real_name and tz."""
    tz_name = user.get("tz", "UTC")
    try:
        offset = ZoneInfo(tz_name).utcoffset(datetime.now())
        tz_offset = int(offset.total_seconds()) if offset is not None else 0
    except (ZoneInfoNotFoundError, ValueError):
        tz_offset = 0
    real_name = user.get("real_name", user["name"])
    return {
        "id": user["id"],
        "team_id": TEAM_ID,
        "name": user["name"],
        "real_name": real_name,
        "deleted": bool(user.get("deleted", False)),
        "is_bot": bool(user.get("is_bot", False)),
        "tz": tz_name,
        "tz_offset": tz_offset,
        "profile": {
            "display_name": user.get("display_name", user["name"]),
            "real_name": real_name,
        },
    }


# ---------------------------------------------------------------------------------------------
# Block Kit validation
# ---------------------------------------------------------------------------------------------


def validate_blocks(blocks: Any, max_blocks: int) -> list[str]:
    """Return the Block Kit limit violations in ``blocks``, as Slack words them, or [].

    Checks the block count, a missing ``type``, section text and fields, header text, element
    counts of actions and context blocks, id lengths and button text and value lengths.
    """
    if not isinstance(blocks, list):
        return ["blocks must be an array [json-pointer:/blocks]"]
    errors: list[str] = []
    if len(blocks) > max_blocks:
        errors.append(f"no more than {max_blocks} items allowed [json-pointer:/blocks]")
    for index, block in enumerate(blocks):
        pointer = f"/blocks/{index}"
        if not isinstance(block, dict) or not block.get("type"):
            errors.append(f"missing required field: type [json-pointer:{pointer}]")
            continue
        errors.extend(_validate_block(block, pointer))
    return errors


def _validate_block(block: dict[str, Any], pointer: str) -> list[str]:
    errors: list[str] = []
    block_type = block["type"]
    if len(str(block.get("block_id", ""))) > MAX_ID_LENGTH:
        errors.append(f"must be less than {MAX_ID_LENGTH + 1} characters "
                      f"[json-pointer:{pointer}/block_id]")
    if block_type == "section":
        if len(_text_value(block.get("text"))) > MAX_SECTION_TEXT:
            errors.append(f"must be less than {MAX_SECTION_TEXT + 1} characters "
                          f"[json-pointer:{pointer}/text/text]")
        fields = block.get("fields") or []
        if len(fields) > MAX_SECTION_FIELDS:
            errors.append(f"no more than {MAX_SECTION_FIELDS} items allowed "
                          f"[json-pointer:{pointer}/fields]")
        for number, item in enumerate(fields):
            if len(_text_value(item)) > MAX_FIELD_TEXT:
                errors.append(f"must be less than {MAX_FIELD_TEXT + 1} characters "
                              f"[json-pointer:{pointer}/fields/{number}/text]")
        if "text" not in block and not fields:
            errors.append(f"must provide either text or fields [json-pointer:{pointer}]")
        if isinstance(block.get("accessory"), dict):
            errors.extend(_validate_element(block["accessory"], f"{pointer}/accessory"))
    elif block_type == "header":
        if len(_text_value(block.get("text"))) > MAX_HEADER_TEXT:
            errors.append(f"must be less than {MAX_HEADER_TEXT + 1} characters "
                          f"[json-pointer:{pointer}/text/text]")
    elif block_type in ("actions", "context"):
        limit = MAX_ACTIONS_ELEMENTS if block_type == "actions" else MAX_CONTEXT_ELEMENTS
        elements = block.get("elements") or []
        if not elements:
            errors.append(f"must provide at least 1 item [json-pointer:{pointer}/elements]")
        if len(elements) > limit:
            errors.append(f"no more than {limit} items allowed [json-pointer:{pointer}/elements]")
        if block_type == "actions":
            for number, element in enumerate(elements):
                errors.extend(_validate_element(element, f"{pointer}/elements/{number}"))
    return errors


def _validate_element(element: Any, pointer: str) -> list[str]:
    if not isinstance(element, dict) or not element.get("type"):
        return [f"missing required field: type [json-pointer:{pointer}]"]
    errors: list[str] = []
    if len(str(element.get("action_id", ""))) > MAX_ID_LENGTH:
        errors.append(f"must be less than {MAX_ID_LENGTH + 1} characters "
                      f"[json-pointer:{pointer}/action_id]")
    if element["type"] == "button":
        if len(_text_value(element.get("text"))) > MAX_BUTTON_TEXT:
            errors.append(f"must be less than {MAX_BUTTON_TEXT + 1} characters "
                          f"[json-pointer:{pointer}/text/text]")
        if len(str(element.get("value", ""))) > MAX_BUTTON_VALUE:
            errors.append(f"must be less than {MAX_BUTTON_VALUE + 1} characters "
                          f"[json-pointer:{pointer}/value]")
    return errors


def validate_view(view: Any) -> list[str]:
    """Return the modal limit violations in ``view`` as Slack's ``[ERROR]`` messages, or []."""
    if not isinstance(view, dict):
        return ["[ERROR] view must be an object"]
    messages = []
    if view.get("type") not in ("modal", "home"):
        messages.append("[ERROR] must be one of modal, home [json-pointer:/view/type]")
    if view.get("type") == "modal":
        if not _text_value(view.get("title")):
            messages.append("[ERROR] missing required field: title [json-pointer:/view/title]")
        for key in ("title", "submit", "close"):
            if len(_text_value(view.get(key))) > MAX_VIEW_TITLE:
                messages.append(f"[ERROR] must be less than {MAX_VIEW_TITLE + 1} characters "
                                f"[json-pointer:/view/{key}/text]")
    if len(str(view.get("private_metadata", ""))) > MAX_PRIVATE_METADATA:
        messages.append(f"[ERROR] must be less than {MAX_PRIVATE_METADATA + 1} characters "
                        "[json-pointer:/view/private_metadata]")
    if len(str(view.get("callback_id", ""))) > MAX_ID_LENGTH:
        messages.append(f"[ERROR] must be less than {MAX_ID_LENGTH + 1} characters "
                        "[json-pointer:/view/callback_id]")
    for error in validate_blocks(view.get("blocks", []), MAX_VIEW_BLOCKS):
        messages.append("[ERROR] " + error.replace("[json-pointer:/", "[json-pointer:/view/"))
    return messages


def _fill_block_ids(blocks: list[dict[str, Any]], seed: str) -> list[dict[str, Any]]:
    """Copy ``blocks`` with a block_id and action_ids filled in where missing, as Slack does.

    Slack generates short random ids. These are derived from ``seed`` so that reruns match.
    """
    filled = copy.deepcopy(blocks)
    for index, block in enumerate(filled):
        if "block_id" not in block:
            block["block_id"] = hashlib.sha1(f"{seed}:{index}".encode()).hexdigest()[:5]
        elements = list(block.get("elements") or []) if block["type"] == "actions" else []
        if isinstance(block.get("accessory"), dict):
            elements.append(block["accessory"])
        for number, element in enumerate(elements):
            if isinstance(element, dict) and "action_id" not in element:
                digest = hashlib.sha1(f"{seed}:{index}:{number}".encode()).hexdigest()
                element["action_id"] = digest[:5]
    return filled


# ---------------------------------------------------------------------------------------------
# Plain-text rendering
# ---------------------------------------------------------------------------------------------


def render_text(source: Any) -> str:
    """Flatten Block Kit blocks, a message or a view into plain text lines.

    ``source`` is a list of blocks, or a dict with ``blocks`` (a message, ephemeral message,
    response or view). A message without blocks renders as its ``text``. Buttons render as
    ``[Label]``, dividers as ``---``, and inputs as ``Label: value``.
    """
    if isinstance(source, dict):
        lines = []
        if source.get("title"):
            lines.append(f"== {_text_value(source['title'])} ==")
        blocks = source.get("blocks") or []
        if blocks:
            lines.extend(_render_blocks(blocks))
        elif source.get("text"):
            lines.append(str(source["text"]))
        return "\n".join(lines)
    if isinstance(source, list):
        return "\n".join(_render_blocks(source))
    raise TypeError(f"render_text expects a list of blocks or a dict, got {type(source).__name__}")


def _render_blocks(blocks: Iterable[Any]) -> list[str]:
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, dict):
            lines.extend(_render_block(block))
    return lines


def _render_block(block: dict[str, Any]) -> list[str]:
    block_type = block.get("type")
    if block_type == "section":
        lines = []
        if block.get("text"):
            lines.append(_text_value(block["text"]))
        lines.extend(_text_value(item) for item in block.get("fields") or [])
        if isinstance(block.get("accessory"), dict):
            lines.append(_render_element(block["accessory"]))
        return lines
    if block_type in ("header", "markdown"):
        return [_text_value(block.get("text"))]
    if block_type == "divider":
        return ["---"]
    if block_type == "context":
        parts = [_render_context_element(item) for item in block.get("elements") or []]
        return ["  ".join(part for part in parts if part)]
    if block_type == "actions":
        return [" ".join(_render_element(item) for item in block.get("elements") or [])]
    if block_type == "input":
        element = block.get("element") or {}
        value = element.get("initial_value") or _text_value(element.get("placeholder"))
        return [f"{_text_value(block.get('label'))}: {value}".rstrip()]
    if block_type == "image":
        return [f"[image: {block.get('alt_text', '')}]"]
    if block_type == "rich_text":
        return [_render_rich_text(item) for item in block.get("elements") or []]
    return [f"[{block_type}]"]


def _render_element(element: dict[str, Any]) -> str:
    if element.get("type") == "button":
        return f"[{_text_value(element.get('text'))}]"
    label = _text_value(element.get("placeholder")) or element.get("type", "element")
    return f"[{label} ▾]"


def _render_context_element(element: Any) -> str:
    if isinstance(element, dict) and element.get("type") == "image":
        return str(element.get("alt_text", ""))
    return _text_value(element)


def _render_rich_text(element: Any) -> str:
    """Flatten one rich_text section, list, quote or preformatted element into a line."""
    if not isinstance(element, dict):
        return ""
    element_type = element.get("type")
    if element_type == "text":
        return str(element.get("text", ""))
    if element_type == "link":
        return str(element.get("text") or element.get("url", ""))
    if element_type == "user":
        return f"<@{element.get('user_id', '')}>"
    if element_type == "channel":
        return f"<#{element.get('channel_id', '')}>"
    if element_type == "emoji":
        return f":{element.get('name', '')}:"
    children = [_render_rich_text(child) for child in element.get("elements") or []]
    if element_type == "rich_text_list":
        return "\n".join(f"• {child}" for child in children)
    return "".join(children)


# ---------------------------------------------------------------------------------------------
# The sandbox
# ---------------------------------------------------------------------------------------------


class SlackSandbox:
    """Fake Slack Web API server on 127.0.0.1 that records what the bot sends.

    Args:
        bot_token: the only token accepted, except by ``apps.connections.open``, which accepts
            any app-level token (``xapp-...``). Any other token gets ``invalid_auth``.
        users: user fixtures, each a dict with ``id``, ``name`` and optionally ``real_name``,
            ``tz``, ``display_name``, ``deleted`` and ``is_bot``. Defaults to ``DEFAULT_USERS``.
        usergroups: user group id to member user ids. Defaults to ``DEFAULT_USERGROUPS``.
        channels: channel id to channel name, used for payloads that carry a channel name.
            Every channel id is valid unless it is in ``missing_channels`` (``channel_not_found``)
            or ``outside_channels`` (``not_in_channel``). Both are plain sets that tests may edit.

    Fault injection:
        ``fail_next(method, count, after=..., error=..., status=..., retry_after=...)`` lets the
        next ``after`` calls of ``method`` pass and fails the ``count`` calls after them. To fail
        calls 3 to 5 from now, use ``fail_next(method, count=3, after=2)``. ``delay(method,
        seconds)`` delays the response to every later call of the method.

    HTTP control routes, for processes that cannot call this object:
        ``GET /_sandbox/calls[?method=M]``, ``GET /_sandbox/messages[?channel=C]``,
        ``GET /_sandbox/ephemerals``, ``GET /_sandbox/responses``, ``GET /_sandbox/views``,
        ``GET /_sandbox/transcript[?channel=C]`` (text), ``POST /_sandbox/fail`` with the
        ``fail_next`` arguments as a JSON object, and ``POST /_sandbox/delay`` with
        ``{"method", "seconds"}``.
    """

    def __init__(
        self,
        bot_token: str = "xoxb-sandbox",
        *,
        users: Iterable[Mapping[str, Any]] | None = None,
        usergroups: Mapping[str, Iterable[str]] | None = None,
        channels: Mapping[str, str] | None = None,
    ) -> None:
        self.bot_token = bot_token
        self.users: dict[str, dict[str, Any]] = {
            user["id"]: dict(user) for user in (DEFAULT_USERS if users is None else users)
        }
        self.usergroups: dict[str, list[str]] = {
            group: list(members)
            for group, members in (DEFAULT_USERGROUPS if usergroups is None else usergroups).items()
        }
        self.channels: dict[str, str] = dict(DEFAULT_CHANNELS if channels is None else channels)
        self.missing_channels: set[str] = set()
        self.outside_channels: set[str] = set()
        self.trigger_ttl = TRIGGER_TTL_SECONDS

        # One re-entrant lock guards all state below. on_change is notified after every
        # recorded call, so wait_for wakes at once.
        self.on_change = threading.Condition(threading.RLock())
        self._calls: list[dict[str, Any]] = []
        self._call_counts: dict[str, int] = {}
        self._faults: dict[str, dict[int, Fault]] = {}
        self._delays: dict[str, float] = {}
        self._messages: dict[tuple[str, str], dict[str, Any]] = {}
        self._ephemerals: list[dict[str, Any]] = []
        self._responses: list[dict[str, Any]] = []
        self._response_urls: dict[str, dict[str, Any]] = {}
        self._views: dict[str, dict[str, Any]] = {}
        self._triggers: dict[str, dict[str, Any]] = {}
        self._used_triggers: set[str] = set()
        self._ts_micros = FIRST_TS_MICROS
        self._serial = 0

        self._server: _SandboxHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._socket_mode: SocketModeServer | None = None
        self._stopping = threading.Event()
        self._methods: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "apps.connections.open": self._apps_connections_open,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "views.open": self._views_open,
            "views.push": self._views_push,
            "views.update": self._views_update,
            "users.info": self._users_info,
            "usergroups.users.list": self._usergroups_users_list,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
        }

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> SlackSandbox:
        """Start serving on a free port of 127.0.0.1 in a daemon thread and return self."""
        if self._server is not None:
            raise RuntimeError(f"Slack sandbox is already running at {self.url}")
        self._stopping.clear()
        self._server = _SandboxHTTPServer(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name="slack-sandbox",
            daemon=True,
        )
        self._thread.start()
        logger.info("Slack sandbox started at %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and close the socket. Calling it again does nothing."""
        if self._server is None:
            return
        url = self.url
        self._stopping.set()
        with self.on_change:
            socket_mode, self._socket_mode = self._socket_mode, None
        if socket_mode is not None:
            socket_mode.stop()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None
        self._thread = None
        logger.info("Slack sandbox at %s stopped", url)

    def __enter__(self) -> SlackSandbox:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, ``http://127.0.0.1:PORT``."""
        if self._server is None:
            raise RuntimeError("Slack sandbox is not running; call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_url(self) -> str:
        """Web API base URL, to pass as slack_sdk's ``base_url``."""
        return self.url + "/api/"

    @property
    def socket_mode(self) -> SocketModeServer:
        """The Socket Mode WebSocket server, started on first use and stopped by ``stop()``.

        ``apps.connections.open`` returns URLs of this server. See ``sandbox.slack_socket``.
        """
        with self.on_change:
            if self._socket_mode is None:
                if self._server is None or self._stopping.is_set():
                    raise RuntimeError("Slack sandbox is not running; call start() first")
                from sandbox.slack_socket import SocketModeServer

                self._socket_mode = SocketModeServer(app_id=APP_ID).start()
            return self._socket_mode

    # -- fixtures for requests to the bot -------------------------------------------------------

    def new_response_url(
        self, *, channel: str | None = None, message_ts: str | None = None,
        user: str | None = None,
    ) -> str:
        """Issue a response URL, as Slack puts in a slash command or interaction payload.

        ``channel`` and ``message_ts`` name the message an interaction came from, so that a
        response with ``replace_original`` or ``delete_original`` edits or deletes that message,
        and a response with ``response_type: in_channel`` posts into ``channel``.
        """
        with self.on_change:
            self._serial += 1
            response_id = f"R{self._serial:05d}"
            self._response_urls[response_id] = {
                "channel": channel, "message_ts": message_ts, "user": user,
            }
        return f"{self.url}/response/{response_id}"

    def new_trigger_id(self, user: str | None = None) -> str:
        """Issue a trigger_id that views.open accepts once, within ``trigger_ttl`` seconds.

        views.open also accepts trigger ids that the sandbox did not issue, once each.
        """
        with self.on_change:
            self._serial += 1
            trigger_id = f"{self._serial}.{int(time.time())}.sandbox{self._serial:04d}"
            self._triggers[trigger_id] = {"user": user, "time": time.monotonic()}
        return trigger_id

    def post_user_message(
        self, channel: str, text: str, *, user: str = "U0ALICE", thread_ts: str | None = None,
    ) -> dict[str, Any]:
        """Add a message written by a person, not the bot, and return its record."""
        with self.on_change:
            record = self._store_message(
                channel=channel, text=text, blocks=[], thread_ts=thread_ts, user=user,
                bot_id=None,
            )
            self.on_change.notify_all()
            return copy.deepcopy(record)

    # -- fault injection ------------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        count: int = 1,
        *,
        after: int = 0,
        error: str = "ratelimited",
        status: int | None = None,
        retry_after: int = 1,
    ) -> None:
        """Make calls of ``method`` fail: skip the next ``after`` calls, then fail ``count``.

        ``status`` defaults to 429 for ``error="ratelimited"`` and to 200 otherwise. The response
        is then, by status:

        - 429: the ``Retry-After: <retry_after>`` header and ``{"ok": false, "error": error}``;
        - 500 and above: a non-JSON text body, as a broken proxy or Slack outage returns;
        - anything else: that status with ``{"ok": false, "error": error}``, so ``status=200``
          with ``error="channel_not_found"`` reproduces a Slack error.

        ``method`` is a Web API method name such as ``chat.update``, or ``"response_url"``
        for posts to response URLs. A later rule for the same call replaces an earlier one.
        """
        if count < 1 or after < 0:
            raise ValueError(f"fail_next needs count >= 1 and after >= 0, got {count} and {after}")
        if status is None:
            status = 429 if error == "ratelimited" else 200
        with self.on_change:
            first = self._call_counts.get(method, 0) + after + 1
            planned = self._faults.setdefault(method, {})
            for number in range(first, first + count):
                planned[number] = Fault(error=error, status=status, retry_after=retry_after)

    def delay(self, method: str, seconds: float) -> None:
        """Delay the response to every later call of ``method`` by ``seconds``, or 0 for none."""
        with self.on_change:
            if seconds > 0:
                self._delays[method] = seconds
            else:
                self._delays.pop(method, None)

    # -- recorded state -------------------------------------------------------------------------

    def calls(self, method: str | None = None) -> list[dict[str, Any]]:
        """Return the recorded calls in order, failed ones included.

        Each is ``{"method", "params", "status", "response", "time"}``. ``params`` leaves out
        the token, and ``response`` is the JSON object sent back, or the text of a 5xx response.
        """
        with self.on_change:
            return [
                copy.deepcopy(call) for call in self._calls
                if method is None or call["method"] == method
            ]

    def messages(self, channel: str | None = None) -> list[dict[str, Any]]:
        """Return the delivered, not deleted messages in ts order, thread replies included.

        Each is ``{"channel", "ts", "thread_ts", "text", "blocks", "metadata", "user",
        "bot_id", "reply_broadcast", "original", "edits", "time"}``. ``text`` and ``blocks`` are
        the latest version, ``original`` is the version first posted, and ``edits`` has one
        ``{"text", "blocks", "time"}`` per update, oldest first.
        """
        with self.on_change:
            return [
                copy.deepcopy(record) for record in self._messages.values()
                if not record["deleted"] and (channel is None or record["channel"] == channel)
            ]

    def message(self, channel: str, ts: str) -> dict[str, Any]:
        """Return one message by channel and ts, or raise KeyError if there is none."""
        with self.on_change:
            record = self._messages.get((channel, ts))
            if record is None or record["deleted"]:
                raise KeyError(f"no message with ts {ts} in channel {channel}")
            return copy.deepcopy(record)

    def thread(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """Return the replies in the thread of parent message ``ts``, oldest first."""
        return [
            record for record in self.messages(channel)
            if record["thread_ts"] == ts and record["ts"] != ts
        ]

    def ephemerals(self) -> list[dict[str, Any]]:
        """Return chat.postEphemeral messages: ``{"channel", "user", "text", "blocks",
        "thread_ts", "message_ts", "time"}``."""
        with self.on_change:
            return copy.deepcopy(self._ephemerals)

    def responses(self) -> list[dict[str, Any]]:
        """Return posts to response URLs: ``{"response_id", "url", "text", "blocks",
        "response_type", "replace_original", "delete_original", "thread_ts", "channel", "user",
        "time"}``, where channel and user are those the URL was issued for."""
        with self.on_change:
            return copy.deepcopy(self._responses)

    def views(self) -> list[dict[str, Any]]:
        """Return opened or pushed views in order, each in its latest version.

        A view has Slack's fields (``id``, ``type``, ``callback_id``, ``private_metadata``,
        ``title``, ``blocks``, ``state``, ``hash`` ...) plus ``trigger_id`` and ``user``, the user
        the trigger was issued for, or None.
        """
        with self.on_change:
            return copy.deepcopy(list(self._views.values()))

    def transcript(self, channel: str | None = None) -> str:
        """Render the messages as text, thread replies indented under their parents."""
        lines = []
        records = self.messages(channel)
        for record in records:
            if record["thread_ts"] not in (None, record["ts"]):
                continue
            lines.extend(self._transcript_entry(record, indent=""))
            for reply in records:
                if reply["thread_ts"] == record["ts"] and reply["ts"] != record["ts"]:
                    lines.extend(self._transcript_entry(reply, indent="    "))
        return "\n".join(lines)

    def _transcript_entry(self, record: dict[str, Any], indent: str) -> list[str]:
        author = BOT_USER_NAME if record["bot_id"] else self.users.get(
            record["user"], {}).get("name", record["user"])
        edited = f" (edited {len(record['edits'])}x)" if record["edits"] else ""
        head = f"{indent}[{record['channel']} {record['ts']}] {author}{edited}:"
        body = render_text(record).splitlines() or [""]
        return [head] + [f"{indent}  {line}" for line in body]

    def wait_for(self, predicate: Callable[[SlackSandbox], Any], timeout: float = 10.0) -> Any:
        """Wait until ``predicate(self)`` is truthy and return its value.

        The predicate runs under the state lock, after every recorded call and at least every
        10 ms. Raises AssertionError with a summary of the recorded state after ``timeout``
        seconds.
        """
        deadline = time.monotonic() + timeout
        with self.on_change:
            while True:
                result = predicate(self)
                if result:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"Slack sandbox: condition not met within {timeout} s. {self.summary()}"
                    )
                self.on_change.wait(min(0.01, remaining))

    def summary(self) -> str:
        """Describe the recorded state in one line, for failure messages."""
        with self.on_change:
            counts: dict[str, int] = {}
            for call in self._calls:
                counts[call["method"]] = counts.get(call["method"], 0) + 1
            recent = [
                f"{call['method']}->{call['status']}"
                + (f":{call['response'].get('error')}" if isinstance(call["response"], dict)
                   and not call["response"].get("ok", True) else "")
                for call in self._calls[-5:]
            ]
            live = sum(1 for record in self._messages.values() if not record["deleted"])
            return (
                f"calls: {counts or 'none'}; last: {recent or 'none'}; messages: {live}; "
                f"ephemerals: {len(self._ephemerals)}; responses: {len(self._responses)}; "
                f"views: {len(self._views)}"
            )

    # -- request routing (called by the HTTP handler) -------------------------------------------

    def handle(self, verb: str, path: str, query: str, content_type: str,
               authorization: str, body: bytes) -> Reply:
        """Route one HTTP request and return the response. Runs in a request thread."""
        if path.startswith("/api/"):
            return self._handle_api(path[len("/api/"):], query, content_type, authorization,
                                    body)
        if path.startswith("/response/") and verb == "POST":
            return self._handle_response_url(path[len("/response/"):], body)
        if path.startswith("/_sandbox/"):
            return self._handle_control(verb, path[len("/_sandbox/"):], query, body)
        return Reply(404, {"ok": False, "error": "not_found", "path": path})

    def _handle_api(self, method: str, query: str, content_type: str, authorization: str,
                    body: bytes) -> Reply:
        self._wait_if_delayed(method)
        with self.on_change:
            # A malformed body is reported after faults and auth, so that every call counts
            # toward fail_next.
            request_error: SlackError | None = None
            try:
                params = _parse_params(query, content_type, body)
            except SlackError as exc:
                params, request_error = {}, exc
            token = params.pop("token", None)
            if authorization.lower().startswith("bearer "):
                token = authorization[len("bearer "):].strip()
            if request_error is None:
                try:
                    _decode_json_fields(params)
                except SlackError as exc:
                    request_error = exc

            fault = self._take_fault(method)
            if fault is not None:
                return self._record(method, params, _fault_reply(fault))
            handler = self._methods.get(method)
            if not token:
                error = "not_authed"
            elif not self._token_accepted(method, token):
                error = "invalid_auth"
            elif handler is None:
                error = "unknown_method"
            else:
                error = None
            if error is not None or handler is None:
                return self._record(method, params, Reply(200, {"ok": False, "error": error}))
            try:
                if request_error is not None:
                    raise request_error
                result = handler(params)
            except SlackError as exc:
                result = {"ok": False, "error": exc.code, **exc.extra}
            scopes = APP_TOKEN_SCOPES if method in APP_TOKEN_METHODS else BOT_SCOPES
            headers = {"x-oauth-scopes": ",".join(scopes)}
            return self._record(method, params, Reply(200, result, headers))

    def _token_accepted(self, method: str, token: str) -> bool:
        if method in APP_TOKEN_METHODS:
            return token.startswith("xapp-")
        return token == self.bot_token

    def _handle_response_url(self, response_id: str, body: bytes) -> Reply:
        self._wait_if_delayed(RESPONSE_URL_METHOD)
        with self.on_change:
            try:
                payload = json.loads(body or b"{}")
            except ValueError:
                payload = None
            params = {"response_id": response_id}
            if isinstance(payload, dict):
                params.update(payload)
            fault = self._take_fault(RESPONSE_URL_METHOD)
            if fault is not None:
                return self._record(RESPONSE_URL_METHOD, params, _fault_reply(fault))
            if response_id not in self._response_urls:
                # Slack does not document its response to an unknown or expired URL.
                reply = Reply(404, {"ok": False, "error": "no_such_response_url"})
            elif not isinstance(payload, dict):
                reply = Reply(400, {"ok": False, "error": "invalid_payload"})
            else:
                try:
                    self._apply_response(response_id, payload)
                    reply = Reply(200, {"ok": True})
                except SlackError as exc:
                    reply = Reply(200, {"ok": False, "error": exc.code, **exc.extra})
            return self._record(RESPONSE_URL_METHOD, params, reply)

    def _handle_control(self, verb: str, name: str, query: str, body: bytes) -> Reply:
        arguments = {key: values[-1] for key, values in parse_qs(query).items()}
        if verb == "GET":
            readers: dict[str, Callable[[], Any]] = {
                "calls": lambda: self.calls(arguments.get("method")),
                "messages": lambda: self.messages(arguments.get("channel")),
                "ephemerals": self.ephemerals,
                "responses": self.responses,
                "views": self.views,
                "transcript": lambda: self.transcript(arguments.get("channel")),
            }
            if name in readers:
                result = readers[name]()
                if isinstance(result, str):
                    return Reply(200, result)
                return Reply(200, {"ok": True, name: result})
        elif verb == "POST" and name in ("fail", "delay"):
            try:
                request = json.loads(body or b"{}")
                if not isinstance(request, dict) or not request.get("method"):
                    raise ValueError("a JSON object with a 'method' field is required")
                if name == "fail":
                    self.fail_next(**request)
                else:
                    self.delay(request["method"], float(request.get("seconds", 0)))
            except (TypeError, ValueError) as exc:
                return Reply(400, {"ok": False, "error": "invalid_request", "detail": str(exc)})
            return Reply(200, {"ok": True})
        return Reply(404, {"ok": False, "error": "not_found", "path": f"/_sandbox/{name}"})

    def _wait_if_delayed(self, method: str) -> None:
        with self.on_change:
            seconds = self._delays.get(method, 0.0)
        if seconds:
            # Waiting on the event lets stop() cut a long delay short.
            self._stopping.wait(seconds)

    def _take_fault(self, method: str) -> Fault | None:
        number = self._call_counts.get(method, 0) + 1
        self._call_counts[method] = number
        return self._faults.get(method, {}).pop(number, None)

    def _record(self, method: str, params: dict[str, Any], reply: Reply) -> Reply:
        self._calls.append({
            "method": method,
            "params": copy.deepcopy(params),
            "status": reply.status,
            "response": copy.deepcopy(reply.body),
            "time": time.time(),
        })
        if isinstance(reply.body, dict) and reply.body.get("ok") is False:
            logger.debug("Slack sandbox returned error %s for %s (HTTP %s)",
                         reply.body.get("error"), method, reply.status)
        self.on_change.notify_all()
        return reply

    # -- shared helpers for methods --------------------------------------------------------------

    def _next_ts(self) -> str:
        self._ts_micros += TS_STEP_MICROS
        return f"{self._ts_micros // 1_000_000}.{self._ts_micros % 1_000_000:06d}"

    def _check_channel(self, channel: Any) -> str:
        if not channel or not isinstance(channel, str) or channel in self.missing_channels:
            raise SlackError("channel_not_found")
        if channel in self.outside_channels:
            raise SlackError("not_in_channel")
        return channel

    def _check_content(self, params: dict[str, Any], max_blocks: int) -> tuple[str, list]:
        """Validate the text and blocks of a message and return them."""
        text = params.get("text") or ""
        blocks = params.get("blocks") or []
        if not text and not blocks and not params.get("attachments"):
            raise SlackError("no_text")
        if len(str(text)) > MAX_MESSAGE_TEXT:
            raise SlackError("msg_too_long")
        errors = validate_blocks(blocks, max_blocks)
        if errors:
            raise SlackError("invalid_blocks", errors=errors,
                             response_metadata={"messages": [f"[ERROR] {e}" for e in errors]})
        return str(text), blocks

    def _store_message(self, *, channel: str, text: str, blocks: list, thread_ts: str | None,
                       user: str, bot_id: str | None, metadata: Any = None,
                       reply_broadcast: bool = False, **options: Any) -> dict[str, Any]:
        if thread_ts is not None:
            parent = self._messages.get((channel, thread_ts))
            if parent is None or parent["deleted"]:
                raise SlackError("thread_not_found")
        ts = self._next_ts()
        now = time.time()
        blocks = _fill_block_ids(blocks, ts)
        record = {
            "channel": channel,
            "ts": ts,
            "thread_ts": thread_ts,
            "text": text,
            "blocks": blocks,
            "metadata": metadata,
            "user": user,
            "bot_id": bot_id,
            "reply_broadcast": reply_broadcast,
            "unfurl_links": None,
            "unfurl_media": None,
            "attachments": None,
            "original": {"text": text, "blocks": copy.deepcopy(blocks), "time": now},
            "edits": [],
            "edited_ts": None,
            "deleted": False,
            "time": now,
            **options,
        }
        self._messages[(channel, ts)] = record
        return record

    def _edit_message(self, record: dict[str, Any], text: str, blocks: list) -> None:
        blocks = _fill_block_ids(blocks, f"{record['ts']}:{len(record['edits']) + 1}")
        record["text"] = text
        record["blocks"] = blocks
        record["edited_ts"] = self._next_ts()
        record["edits"].append({"text": text, "blocks": copy.deepcopy(blocks), "time": time.time()})

    def _api_message(self, record: dict[str, Any], include_metadata: bool) -> dict[str, Any]:
        """Shape a stored message the way conversations.history and chat.* return it."""
        message: dict[str, Any] = {"type": "message", "ts": record["ts"], "text": record["text"],
                                   "user": record["user"], "team": TEAM_ID}
        if record["bot_id"]:
            message.update(bot_id=record["bot_id"], app_id=APP_ID)
        if record["blocks"]:
            message["blocks"] = copy.deepcopy(record["blocks"])
        if record["thread_ts"]:
            message["thread_ts"] = record["thread_ts"]
            if record["thread_ts"] != record["ts"]:
                parent = self._messages.get((record["channel"], record["thread_ts"]))
                if parent is not None:
                    message["parent_user_id"] = parent["user"]
                if record["reply_broadcast"]:
                    message["subtype"] = "thread_broadcast"
        replies = [
            reply for reply in self._messages.values()
            if reply["channel"] == record["channel"] and reply["thread_ts"] == record["ts"]
            and reply["ts"] != record["ts"] and not reply["deleted"]
        ]
        if replies:
            message.update(
                thread_ts=record["ts"],
                reply_count=len(replies),
                reply_users=sorted({reply["user"] for reply in replies}),
                reply_users_count=len({reply["user"] for reply in replies}),
                latest_reply=replies[-1]["ts"],
            )
        if record["edited_ts"]:
            message["edited"] = {"user": record["user"], "ts": record["edited_ts"]}
        if include_metadata and record["metadata"]:
            message["metadata"] = copy.deepcopy(record["metadata"])
        return message

    def _apply_response(self, response_id: str, payload: dict[str, Any]) -> None:
        """Record a response-URL post and apply it to the conversation as Slack would."""
        context = self._response_urls[response_id]
        response = {
            "response_id": response_id,
            "url": f"{self.url}/response/{response_id}",
            "text": payload.get("text"),
            "blocks": payload.get("blocks"),
            "response_type": payload.get("response_type"),
            "replace_original": _flag(payload.get("replace_original", False)),
            "delete_original": _flag(payload.get("delete_original", False)),
            "thread_ts": payload.get("thread_ts"),
            "channel": context["channel"],
            "user": context["user"],
            "time": time.time(),
        }
        self._responses.append(response)

        original = None
        if context["channel"] and context["message_ts"]:
            original = self._messages.get((context["channel"], context["message_ts"]))
        if response["delete_original"]:
            if original is not None:
                original["deleted"] = True
        elif response["replace_original"]:
            if original is not None:
                text, blocks = self._check_content(payload, MAX_MESSAGE_BLOCKS)
                self._edit_message(original, text, blocks)
        elif response["response_type"] == "in_channel" and context["channel"]:
            text, blocks = self._check_content(payload, MAX_MESSAGE_BLOCKS)
            self._store_message(channel=context["channel"], text=text, blocks=blocks,
                                thread_ts=response["thread_ts"], user=BOT_USER_ID, bot_id=BOT_ID)
        # NOTE: a replace_original on an ephemeral message (a slash-command reply) changes only
        # the recorded response here, because ephemeral messages are not kept as messages.

    # -- Web API methods -------------------------------------------------------------------------

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": f"https://{TEAM_DOMAIN}.slack.com/",
            "team": TEAM_NAME,
            "user": BOT_USER_NAME,
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _apps_connections_open(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": self.socket_mode.issue_url()}

    def _chat_post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = params.get("channel")
        # Posting to a user id posts into the bot's direct message with that user.
        if isinstance(channel, str) and channel[:1] in ("U", "W") and channel in self.users:
            channel = "D" + channel[1:]
        channel = self._check_channel(channel)
        text, blocks = self._check_content(params, MAX_MESSAGE_BLOCKS)
        # NOTE: a thread_ts naming a reply is stored as given. Slack documents that thread_ts
        # must be the parent's ts but not what happens otherwise.
        record = self._store_message(
            channel=channel,
            text=text,
            blocks=blocks,
            thread_ts=params.get("thread_ts") or None,
            user=BOT_USER_ID,
            bot_id=BOT_ID,
            metadata=params.get("metadata"),
            reply_broadcast=_flag(params.get("reply_broadcast", False)),
            unfurl_links=_flag(params.get("unfurl_links", True)),
            unfurl_media=_flag(params.get("unfurl_media", True)),
            attachments=params.get("attachments"),
        )
        return {"ok": True, "channel": channel, "ts": record["ts"],
                "message": self._api_message(record, include_metadata=True)}

    def _chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._check_channel(params.get("channel"))
        record = self._messages.get((channel, str(params.get("ts", ""))))
        if record is None or record["deleted"]:
            raise SlackError("message_not_found")
        if record["bot_id"] != BOT_ID:
            raise SlackError("cant_update_message")
        if "text" not in params and "blocks" not in params and "attachments" not in params:
            raise SlackError("no_text")
        text, blocks = self._check_content({**params, "text": params.get("text", record["text"])},
                                           MAX_MESSAGE_BLOCKS)
        # Slack removes the old blocks when an update carries text but no blocks.
        # NOTE: an update with blocks but no text keeps the old text here. Slack does not
        # document that case.
        self._edit_message(record, text, blocks)
        if "metadata" in params:
            record["metadata"] = params["metadata"]
        return {"ok": True, "channel": channel, "ts": record["ts"], "text": text,
                "message": self._api_message(record, include_metadata=True)}

    def _chat_delete(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._check_channel(params.get("channel"))
        record = self._messages.get((channel, str(params.get("ts", ""))))
        if record is None or record["deleted"]:
            raise SlackError("message_not_found")
        if record["bot_id"] != BOT_ID:
            raise SlackError("cant_delete_message")
        record["deleted"] = True
        return {"ok": True, "channel": channel, "ts": record["ts"]}

    def _chat_post_ephemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._check_channel(params.get("channel"))
        user = params.get("user")
        if not user or user not in self.users:
            raise SlackError("user_not_found")
        text, blocks = self._check_content(params, MAX_MESSAGE_BLOCKS)
        message_ts = self._next_ts()
        self._ephemerals.append({
            "channel": channel,
            "user": user,
            "text": text,
            "blocks": _fill_block_ids(blocks, message_ts),
            "thread_ts": params.get("thread_ts") or None,
            "message_ts": message_ts,
            "time": time.time(),
        })
        return {"ok": True, "message_ts": message_ts}

    def _views_open(self, params: dict[str, Any], method: str = "views.open") -> dict[str, Any]:
        trigger_id = params.get("trigger_id")
        if not trigger_id:
            raise SlackError("invalid_arguments",
                             response_metadata={"messages": ["[ERROR] missing trigger_id"]})
        if trigger_id in self._used_triggers:
            raise SlackError("exchanged_trigger_id")
        issued = self._triggers.get(trigger_id)
        if issued is not None and time.monotonic() - issued["time"] > self.trigger_ttl:
            raise SlackError("expired_trigger_id")
        view = self._checked_view(params)
        self._used_triggers.add(trigger_id)

        self._serial += 1
        view_id = f"V0VIEW{self._serial:05d}"
        record = {
            "id": view_id,
            "team_id": TEAM_ID,
            "type": view["type"],
            "title": view.get("title"),
            "submit": view.get("submit"),
            "close": view.get("close"),
            "blocks": _fill_block_ids(view.get("blocks", []), view_id),
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "external_id": view.get("external_id", ""),
            "state": {"values": {}},
            "hash": f"{int(time.time())}.sandbox{self._serial}",
            "clear_on_close": bool(view.get("clear_on_close", False)),
            "notify_on_close": bool(view.get("notify_on_close", False)),
            "root_view_id": view_id,
            "previous_view_id": None,
            "app_id": APP_ID,
            "app_installed_team_id": TEAM_ID,
            "bot_id": BOT_ID,
            "trigger_id": trigger_id,
            "user": issued["user"] if issued else None,
            "opened_by": method,
        }
        self._views[view_id] = record
        return {"ok": True, "view": self._api_view(record)}

    def _views_push(self, params: dict[str, Any]) -> dict[str, Any]:
        # NOTE: pushed views are recorded as views of their own. The sandbox does not know which
        # view the trigger came from, so root_view_id is the pushed view itself and Slack's
        # limit of 3 stacked views is not enforced.
        return self._views_open(params, method="views.push")

    def _views_update(self, params: dict[str, Any]) -> dict[str, Any]:
        view_id = params.get("view_id")
        external_id = params.get("external_id")
        if not view_id and not external_id:
            raise SlackError("invalid_arguments", response_metadata={
                "messages": ["[ERROR] view_id or external_id is required"]})
        record = self._views.get(view_id) if view_id else next(
            (item for item in self._views.values() if item["external_id"] == external_id), None)
        if record is None:
            raise SlackError("not_found")
        if params.get("hash") and params["hash"] != record["hash"]:
            raise SlackError("hash_conflict")
        view = self._checked_view(params)
        self._serial += 1
        for key in ("title", "submit", "close", "private_metadata", "callback_id",
                    "external_id", "clear_on_close", "notify_on_close"):
            if key in view:
                record[key] = view[key]
        record["blocks"] = _fill_block_ids(view.get("blocks", []),
                                           f"{record['id']}:{self._serial}")
        record["hash"] = f"{int(time.time())}.sandbox{self._serial}"
        return {"ok": True, "view": self._api_view(record)}

    def _checked_view(self, params: dict[str, Any]) -> dict[str, Any]:
        view = params.get("view")
        messages = validate_view(view)
        if messages:
            raise SlackError("invalid_arguments", response_metadata={"messages": messages})
        return view

    @staticmethod
    def _api_view(record: dict[str, Any]) -> dict[str, Any]:
        return {key: copy.deepcopy(value) for key, value in record.items()
                if key not in ("trigger_id", "user", "opened_by")}

    def _users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(str(params.get("user", "")))
        if user is None:
            raise SlackError("user_not_found")
        return {"ok": True, "user": _user_record(user)}

    def _usergroups_users_list(self, params: dict[str, Any]) -> dict[str, Any]:
        members = self.usergroups.get(str(params.get("usergroup", "")))
        if members is None:
            raise SlackError("no_such_subteam")
        return {"ok": True, "users": list(members)}

    def _conversations_history(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._check_channel(params.get("channel"))
        include_metadata = _flag(params.get("include_all_metadata", False))
        # The channel history has top-level messages and replies also sent to the channel.
        records = [
            record for record in self._messages.values()
            if record["channel"] == channel and not record["deleted"]
            and (record["thread_ts"] in (None, record["ts"]) or record["reply_broadcast"])
        ]
        records = self._between(records, params)
        records.reverse()
        return self._page(records, params, include_metadata)

    def _conversations_replies(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._check_channel(params.get("channel"))
        include_metadata = _flag(params.get("include_all_metadata", False))
        record = self._messages.get((channel, str(params.get("ts", ""))))
        if record is None or record["deleted"]:
            raise SlackError("thread_not_found")
        parent_ts = record["thread_ts"] or record["ts"]
        thread = [
            item for item in self._messages.values()
            if item["channel"] == channel and not item["deleted"]
            and (item["ts"] == parent_ts or item["thread_ts"] == parent_ts)
        ]
        parent, replies = thread[:1], self._between(thread[1:], params)
        return self._page(parent + replies, params, include_metadata)

    @staticmethod
    def _between(records: list[dict[str, Any]], params: dict[str, Any]) -> list[dict[str, Any]]:
        """Keep records with oldest < ts < latest (<= with ``inclusive``), in ts order."""
        inclusive = _flag(params.get("inclusive", False))
        oldest = _ts_decimal(params.get("oldest") or 0, "invalid_ts_oldest")
        latest = (_ts_decimal(params["latest"], "invalid_ts_latest")
                  if params.get("latest") else None)
        selected = []
        for record in records:
            ts = Decimal(record["ts"])
            above = ts >= oldest if inclusive else ts > oldest
            below = latest is None or (ts <= latest if inclusive else ts < latest)
            if above and below:
                selected.append(record)
        return selected

    def _page(self, records: list[dict[str, Any]], params: dict[str, Any],
              include_metadata: bool) -> dict[str, Any]:
        """Return one page of messages. The cursor is the offset of the next page."""
        try:
            limit = int(params.get("limit") or 100)
            offset = int(params.get("cursor") or 0)
        except ValueError:
            raise SlackError("invalid_cursor") from None
        limit = max(1, min(limit, 999))
        page = records[offset:offset + limit]
        has_more = offset + limit < len(records)
        return {
            "ok": True,
            "messages": [self._api_message(record, include_metadata) for record in page],
            "has_more": has_more,
            "response_metadata": {"next_cursor": str(offset + limit) if has_more else ""},
        }


# ---------------------------------------------------------------------------------------------
# HTTP plumbing
# ---------------------------------------------------------------------------------------------


def _parse_params(query: str, content_type: str, body: bytes) -> dict[str, Any]:
    """Merge query-string arguments with a JSON or form body, as Slack accepts both."""
    params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    if not body:
        return params
    if "application/json" in content_type.lower():
        try:
            data = json.loads(body)
        except ValueError:
            raise SlackError("invalid_json") from None
        if not isinstance(data, dict):
            raise SlackError("json_not_object")
        params.update(data)
    else:
        params.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    return params


def _decode_json_fields(params: dict[str, Any]) -> None:
    """Decode fields that arrive as JSON strings in form bodies, in place."""
    for name, error in _JSON_FIELDS.items():
        value = params.get(name)
        if isinstance(value, str):
            try:
                params[name] = json.loads(value) if value.strip() else None
            except ValueError:
                raise SlackError(error) from None


def _fault_reply(fault: Fault) -> Reply:
    if fault.status >= 500:
        return Reply(fault.status, f"<html><body>{fault.status} Server Error</body></html>")
    headers = {"Retry-After": str(fault.retry_after)} if fault.status == 429 else {}
    return Reply(fault.status, {"ok": False, "error": fault.error}, headers)


class _SandboxHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, sandbox: SlackSandbox) -> None:
        super().__init__(("127.0.0.1", 0), _RequestHandler)
        self.sandbox = sandbox


class _RequestHandler(BaseHTTPRequestHandler):
    server: _SandboxHTTPServer
    server_version = "SlackSandbox/1.0"

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def log_message(self, format: str, *args: Any) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("Slack sandbox request from %s: %s", self.address_string(), format % args)

    def _answer(self) -> None:
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            reply = self.server.sandbox.handle(
                self.command, path, query, self.headers.get("Content-Type", ""),
                self.headers.get("Authorization", ""), body,
            )
        except Exception:
            logger.exception("Slack sandbox failed to handle %s %s", self.command, path)
            reply = Reply(500, {"ok": False, "error": "sandbox_internal_error"})

        if isinstance(reply.body, str):
            content_type = "text/plain; charset=utf-8"
            if reply.body.startswith("<html>"):
                content_type = "text/html; charset=utf-8"
            data = reply.body.encode("utf-8")
        else:
            content_type = "application/json; charset=utf-8"
            data = json.dumps(reply.body).encode("utf-8")
        self.send_response(reply.status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
