"""Send signed slash commands, button clicks and modal submissions to the bot, as Slack does.

The builders (``slash_command_body``, ``block_actions_body``, ``view_submission_body``,
``event_callback_body``) return raw request bodies, and ``sign_request`` returns the two signing
headers, so tests can build requests without a server. ``SlackDriver`` puts them together: it
takes trigger ids and response URLs from a ``SlackSandbox`` and POSTs to the bot's request URL.

Field names follow Slack's slash command, block_actions and view_submission payloads, and the
signature is Slack's v0 scheme: ``v0=`` + hex HMAC-SHA256(signing secret, ``v0:{ts}:{body}``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from sandbox.slack_server import (
    APP_ID,
    BOT_USER_ID,
    DEFAULT_CHANNELS,
    DEFAULT_USERS,
    TEAM_DOMAIN,
    TEAM_ID,
    SlackSandbox,
)

# The deprecated verification token that Slack still sends in every payload.
VERIFICATION_TOKEN = "sandbox-verification-token"

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
JSON_CONTENT_TYPE = "application/json"

_DEFAULT_USER_NAMES = {user["id"]: user["name"] for user in DEFAULT_USERS}


def sign_request(body: str | bytes, secret: str, timestamp: int | str) -> dict[str, str]:
    """Return the ``X-Slack-Request-Timestamp`` and ``X-Slack-Signature`` headers for ``body``."""
    raw = body if isinstance(body, bytes) else body.encode("utf-8")
    base = f"v0:{timestamp}:".encode() + raw
    digest = hmac.new(secret.encode("utf-8"), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": f"v0={digest}"}


def _user_name(user: str, user_name: str | None) -> str:
    return user_name or _DEFAULT_USER_NAMES.get(user) or user.lower()


def _channel_name(channel: str, channel_name: str | None) -> str:
    return channel_name or DEFAULT_CHANNELS.get(channel) or channel.lower()


def _user_object(user: str, user_name: str | None) -> dict[str, str]:
    name = _user_name(user, user_name)
    return {"id": user, "username": name, "name": name, "team_id": TEAM_ID}


def _interactivity_form(payload: Mapping[str, Any]) -> str:
    """Encode an interaction payload the way Slack POSTs it: one ``payload`` form field."""
    return "payload=" + quote(json.dumps(payload, separators=(",", ":")), safe="")


def slash_command_body(
    command: str,
    text: str = "",
    *,
    user: str,
    channel: str,
    response_url: str,
    trigger_id: str,
    user_name: str | None = None,
    channel_name: str | None = None,
    token: str = VERIFICATION_TOKEN,
) -> str:
    """Build the urlencoded form body of a slash command, such as ``/rollout propose ...``."""
    fields = {
        "token": token,
        "team_id": TEAM_ID,
        "team_domain": TEAM_DOMAIN,
        "channel_id": channel,
        "channel_name": _channel_name(channel, channel_name),
        "user_id": user,
        "user_name": _user_name(user, user_name),
        "command": command,
        "text": text,
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id,
    }
    return urlencode(fields)


def iter_actions(blocks: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(block_id, element)`` for every element of actions blocks and section accessories."""
    for block in blocks:
        elements = list(block.get("elements") or []) if block.get("type") == "actions" else []
        if isinstance(block.get("accessory"), dict):
            elements.append(block["accessory"])
        for element in elements:
            yield str(block.get("block_id", "")), element


def find_action(blocks: list[dict[str, Any]], action_id: str) -> tuple[str, dict[str, Any]]:
    """Return ``(block_id, element)`` of the interactive element with ``action_id``.

    Raises LookupError naming the action ids that are present when none matches.
    """
    present = []
    for block_id, element in iter_actions(blocks):
        if element.get("action_id") == action_id:
            return block_id, element
        present.append(element.get("action_id"))
    raise LookupError(
        f"no element with action_id {action_id!r} in the message. "
        f"Action ids present: {present or 'none'}"
    )


def block_actions_body(
    message: Mapping[str, Any],
    action_id: str,
    *,
    user: str,
    response_url: str,
    trigger_id: str,
    user_name: str | None = None,
    channel_name: str | None = None,
    state_values: Mapping[str, Any] | None = None,
    action_ts: str | None = None,
    token: str = VERIFICATION_TOKEN,
) -> str:
    """Build the form body of a button click on ``message``.

    ``message`` is a record from ``SlackSandbox.messages()`` (``channel``, ``ts``, ``blocks``
    ...) or from ``SlackSandbox.ephemerals()`` (``channel``, ``message_ts`` ...). For an
    ephemeral message the payload has no ``message`` field and ``container.is_ephemeral`` is true,
    as in Slack. Raises LookupError if no element has ``action_id``.
    """
    blocks = list(message.get("blocks") or [])
    block_id, element = find_action(blocks, action_id)
    is_ephemeral = "message_ts" in message and "ts" not in message
    message_ts = message["message_ts"] if is_ephemeral else message["ts"]
    channel = message["channel"]
    thread_ts = message.get("thread_ts")

    container: dict[str, Any] = {
        "type": "message",
        "message_ts": message_ts,
        "channel_id": channel,
        "is_ephemeral": is_ephemeral,
    }
    if thread_ts:
        container["thread_ts"] = thread_ts
    action: dict[str, Any] = {
        "type": element.get("type", "button"),
        "action_id": action_id,
        "block_id": block_id,
        "text": element.get("text"),
        "action_ts": action_ts or f"{time.time():.6f}",
    }
    for key in ("value", "style"):
        if key in element:
            action[key] = element[key]

    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": _user_object(user, user_name),
        "api_app_id": APP_ID,
        "token": token,
        "container": container,
        "trigger_id": trigger_id,
        "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel, "name": _channel_name(channel, channel_name)},
        "state": {"values": dict(state_values or {})},
        "response_url": response_url,
        "actions": [action],
    }
    if not is_ephemeral:
        payload["message"] = {
            "type": "message",
            "ts": message_ts,
            "text": message.get("text", ""),
            "blocks": blocks,
            "team": TEAM_ID,
        }
        if message.get("bot_id"):
            payload["message"].update(bot_id=message["bot_id"], app_id=APP_ID,
                                      user=message.get("user") or BOT_USER_ID)
        else:
            payload["message"]["user"] = message.get("user")
        if thread_ts:
            payload["message"]["thread_ts"] = thread_ts
    return _interactivity_form(payload)


def _input_element_types(view: Mapping[str, Any]) -> dict[tuple[str, str], str]:
    types = {}
    for block in view.get("blocks") or []:
        element = block.get("element")
        if block.get("type") == "input" and isinstance(element, dict):
            key = (str(block.get("block_id", "")), str(element.get("action_id", "")))
            types[key] = element.get("type", "plain_text_input")
    return types


def _state_values(view: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """Expand ``values`` into Slack's ``view.state.values``, checking ids against the view.

    A value may be a full state entry (``{"type": "plain_text_input", "value": "..."}``) or a
    plain string, which becomes a ``value`` of the input element's type.
    """
    types = _input_element_types(view)
    state: dict[str, Any] = {}
    for block_id, actions in values.items():
        state[block_id] = {}
        for action_id, value in actions.items():
            if (block_id, action_id) not in types:
                raise LookupError(
                    f"the view has no input with block_id {block_id!r} and action_id "
                    f"{action_id!r}. Inputs present: {sorted(types) or 'none'}"
                )
            if isinstance(value, Mapping):
                state[block_id][action_id] = dict(value)
            else:
                state[block_id][action_id] = {"type": types[(block_id, action_id)],
                                              "value": value}
    return state


def view_submission_body(
    view: Mapping[str, Any],
    values: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    user: str,
    trigger_id: str,
    user_name: str | None = None,
    token: str = VERIFICATION_TOKEN,
) -> str:
    """Build the form body of a modal submission.

    ``view`` is a record from ``SlackSandbox.views()`` or a ``views.open`` response. ``values``
    maps block_id to action_id to a state entry or a plain string (see ``_state_values``).
    Raises LookupError for a block_id/action_id pair that is not an input of the view.
    """
    submitted = {
        key: value for key, value in view.items() if key not in ("trigger_id", "user", "opened_by")
    }
    submitted["state"] = {"values": _state_values(view, values or {})}
    payload = {
        "type": "view_submission",
        "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
        "user": _user_object(user, user_name),
        "api_app_id": APP_ID,
        "token": token,
        "trigger_id": trigger_id,
        "view": submitted,
        "response_urls": [],
        "enterprise": None,
        "is_enterprise_install": False,
    }
    return _interactivity_form(payload)


def event_callback_body(event: Mapping[str, Any], *, event_id: str | None = None,
                        token: str = VERIFICATION_TOKEN) -> str:
    """Build the JSON body of an Events API delivery carrying ``event``."""
    now = int(time.time())
    body = {
        "token": token,
        "team_id": TEAM_ID,
        "api_app_id": APP_ID,
        "event": dict(event),
        "type": "event_callback",
        "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}",
        "event_time": now,
        "authorizations": [{"enterprise_id": None, "team_id": TEAM_ID, "user_id": BOT_USER_ID,
                            "is_bot": True, "is_enterprise_install": False}],
        "is_ext_shared_channel": False,
    }
    return json.dumps(body)


class SlackDriver:
    """Client that plays Slack towards the bot: signs requests and POSTs them to ``bot_url``.

    Every method accepts the request options of ``send``: ``timestamp`` (Unix seconds, to send
    a stale request), ``bad_signature`` (sign with a wrong secret) and ``retry_num`` (adds
    ``X-Slack-Retry-Num`` and ``X-Slack-Retry-Reason``). Call ``close()``, or use the driver as
    a context manager, to close its HTTP connections.
    """

    def __init__(self, bot_url: str, signing_secret: str, slack: SlackSandbox, *,
                 timeout: float = 10.0) -> None:
        self.bot_url = bot_url
        self.signing_secret = signing_secret
        self.slack = slack
        self._http = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SlackDriver:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def send(
        self,
        body: str,
        content_type: str = FORM_CONTENT_TYPE,
        *,
        timestamp: int | None = None,
        bad_signature: bool = False,
        retry_num: int | None = None,
        retry_reason: str = "http_timeout",
    ) -> httpx.Response:
        """Sign ``body``, POST it to the bot and return the bot's response."""
        timestamp = int(time.time()) if timestamp is None else timestamp
        secret = self.signing_secret + "-wrong" if bad_signature else self.signing_secret
        headers = {"Content-Type": content_type, **sign_request(body, secret, timestamp)}
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = retry_reason
        return self._http.post(self.bot_url, content=body.encode("utf-8"), headers=headers)

    def command(self, command: str, text: str = "", *, user: str = "U0ALICE",
                channel: str = "C0DEPLOYS", **options: Any) -> httpx.Response:
        """Send a slash command with a fresh trigger_id and response URL from the sandbox."""
        body = slash_command_body(
            command, text,
            user=user,
            channel=channel,
            response_url=self.slack.new_response_url(channel=channel, user=user),
            trigger_id=self.slack.new_trigger_id(user=user),
            user_name=self._user_name(user),
            channel_name=self.slack.channels.get(channel),
        )
        return self.send(body, **options)

    def click(self, message: Mapping[str, Any], action_id: str, *, user: str = "U0BOB",
              state_values: Mapping[str, Any] | None = None, **options: Any) -> httpx.Response:
        """Click the button ``action_id`` of ``message``, a record from the sandbox.

        The response URL in the payload points at that message, so a response with
        ``replace_original`` edits it. Raises LookupError if the message has no such button.
        """
        is_ephemeral = "message_ts" in message and "ts" not in message
        response_url = self.slack.new_response_url(
            channel=message["channel"],
            message_ts=None if is_ephemeral else message["ts"],
            user=user,
        )
        body = block_actions_body(
            message, action_id,
            user=user,
            response_url=response_url,
            trigger_id=self.slack.new_trigger_id(user=user),
            user_name=self._user_name(user),
            channel_name=self.slack.channels.get(message["channel"]),
            state_values=state_values,
        )
        return self.send(body, **options)

    def submit_view(self, view: Mapping[str, Any],
                    values: Mapping[str, Mapping[str, Any]] | None = None, *,
                    user: str | None = None, **options: Any) -> httpx.Response:
        """Submit the modal ``view`` with ``values``, as in ``view_submission_body``.

        ``user`` defaults to the user the view was opened for, or U0ALICE.
        """
        user = user or view.get("user") or "U0ALICE"
        body = view_submission_body(
            view, values,
            user=user,
            trigger_id=self.slack.new_trigger_id(user=user),
            user_name=self._user_name(user),
        )
        return self.send(body, **options)

    def event(self, event: Mapping[str, Any], *, event_id: str | None = None,
              **options: Any) -> httpx.Response:
        """Deliver an Events API event, such as ``{"type": "app_mention", ...}``, as JSON."""
        return self.send(event_callback_body(event, event_id=event_id), JSON_CONTENT_TYPE,
                         **options)

    def _user_name(self, user: str) -> str | None:
        return self.slack.users.get(user, {}).get("name")

