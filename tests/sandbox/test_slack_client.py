"""Tests of the signed-request builders and of SlackDriver against a real slack_bolt App."""

import json
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier

from sandbox.slack_client import (
    SlackDriver,
    block_actions_body,
    event_callback_body,
    find_action,
    sign_request,
    slash_command_body,
    view_submission_body,
)
from sandbox.slack_server import APP_ID, BOT_ID, TEAM_ID, SlackSandbox

TOKEN = "xoxb-sandbox"
SECRET = "sandbox-signing-secret"
CHANNEL = "C0DEPLOYS"


def proposal_blocks():
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": "*qwen-chat*: MODEL_NAME=x"}},
        {
            "type": "actions",
            "block_id": "decision",
            "elements": [
                {
                    "type": "button",
                    "action_id": "approve",
                    "value": "p-1",
                    "style": "primary",
                    "text": {"type": "plain_text", "text": "Approve"},
                },
                {
                    "type": "button",
                    "action_id": "reject",
                    "value": "p-1",
                    "text": {"type": "plain_text", "text": "Reject"},
                },
            ],
        },
    ]


def proposal_message(**extra):
    return {
        "channel": CHANNEL,
        "ts": "1733337600.000100",
        "thread_ts": None,
        "text": "Proposal",
        "blocks": proposal_blocks(),
        "user": "U0ROLLCALL",
        "bot_id": BOT_ID,
        **extra,
    }


def propose_view():
    return {
        "id": "V0VIEW00001",
        "type": "modal",
        "callback_id": "propose",
        "private_metadata": '{"channel": "C0DEPLOYS"}',
        "title": {"type": "plain_text", "text": "Propose"},
        "blocks": [
            {
                "type": "input",
                "block_id": "endpoint",
                "label": {"type": "plain_text", "text": "Endpoint"},
                "element": {"type": "plain_text_input", "action_id": "name"},
            },
            {
                "type": "input",
                "block_id": "when",
                "label": {"type": "plain_text", "text": "When"},
                "element": {"type": "datepicker", "action_id": "date"},
            },
        ],
        "hash": "1.abc",
        "trigger_id": "1.2.x",
        "user": "U0ALICE",
        "opened_by": "views.open",
    }


def decode_payload(body):
    form = parse_qs(body, strict_parsing=True)
    assert list(form) == ["payload"]
    return json.loads(form["payload"][0])


# -- signing -----------------------------------------------------------------------------------


def test_sign_request_valid_for_slack_sdk():
    body = "token=x&command=%2Frollout&text=status"
    timestamp = int(time.time())

    headers = sign_request(body, SECRET, timestamp)

    verifier = SignatureVerifier(SECRET)
    assert headers["X-Slack-Request-Timestamp"] == str(timestamp)
    assert headers["X-Slack-Signature"] == verifier.generate_signature(timestamp=str(timestamp), body=body)
    assert verifier.is_valid(body, str(timestamp), headers["X-Slack-Signature"])


def test_sign_request_accepts_bytes():
    assert sign_request(b"a=1", SECRET, 5) == sign_request("a=1", SECRET, 5)


@pytest.mark.parametrize(
    ("secret", "age_seconds"),
    [("another-secret", 0), (SECRET, 400)],
    ids=["bad-secret", "stale"],
)
def test_sign_request_rejected_by_slack_sdk(secret, age_seconds):
    body = "payload=%7B%7D"
    timestamp = int(time.time()) - age_seconds

    headers = sign_request(body, secret, timestamp)

    assert not SignatureVerifier(SECRET).is_valid(
        body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"]
    )


# -- payload builders --------------------------------------------------------------------------


def test_slash_command_body_fields():
    body = slash_command_body(
        "/rollout",
        "propose qwen-chat MODEL_NAME=Qwen/Qwen3-14B",
        user="U0ALICE",
        channel=CHANNEL,
        response_url="http://r/1",
        trigger_id="1.2.3",
    )

    form = {key: values[0] for key, values in parse_qs(body, keep_blank_values=True).items()}
    assert form["command"] == "/rollout"
    assert form["text"] == "propose qwen-chat MODEL_NAME=Qwen/Qwen3-14B"
    assert form["user_id"] == "U0ALICE"
    assert form["user_name"] == "alice"
    assert form["channel_id"] == CHANNEL
    assert form["channel_name"] == "deploys"
    assert form["team_id"] == TEAM_ID
    assert form["api_app_id"] == APP_ID
    assert form["response_url"] == "http://r/1"
    assert form["trigger_id"] == "1.2.3"
    assert form["is_enterprise_install"] == "false"


def test_block_actions_body_shape():
    body = block_actions_body(
        proposal_message(), "approve", user="U0BOB", response_url="http://r/2", trigger_id="1.2.4", action_ts="9.5"
    )

    payload = decode_payload(body)
    assert payload["type"] == "block_actions"
    assert payload["user"] == {"id": "U0BOB", "username": "bob", "name": "bob", "team_id": TEAM_ID}
    assert payload["team"]["id"] == TEAM_ID
    assert payload["api_app_id"] == APP_ID
    assert payload["container"] == {
        "type": "message",
        "message_ts": "1733337600.000100",
        "channel_id": CHANNEL,
        "is_ephemeral": False,
    }
    assert payload["channel"] == {"id": CHANNEL, "name": "deploys"}
    assert payload["message"]["ts"] == "1733337600.000100"
    assert payload["message"]["bot_id"] == BOT_ID
    assert payload["message"]["blocks"] == proposal_blocks()
    assert payload["trigger_id"] == "1.2.4"
    assert payload["response_url"] == "http://r/2"
    assert payload["state"] == {"values": {}}
    assert payload["actions"] == [
        {
            "type": "button",
            "action_id": "approve",
            "block_id": "decision",
            "value": "p-1",
            "style": "primary",
            "text": {"type": "plain_text", "text": "Approve"},
            "action_ts": "9.5",
        }
    ]


def test_block_actions_body_thread_reply():
    message = proposal_message(ts="1733337600.000300", thread_ts="1733337600.000100")

    payload = decode_payload(block_actions_body(message, "reject", user="U0BOB", response_url="u", trigger_id="t"))

    assert payload["container"]["thread_ts"] == "1733337600.000100"
    assert payload["message"]["thread_ts"] == "1733337600.000100"


def test_block_actions_body_ephemeral_has_no_message():
    ephemeral = {
        "channel": CHANNEL,
        "user": "U0ALICE",
        "text": "Sure?",
        "blocks": proposal_blocks(),
        "message_ts": "1733337600.000500",
    }

    payload = decode_payload(block_actions_body(ephemeral, "approve", user="U0ALICE", response_url="u", trigger_id="t"))

    assert "message" not in payload
    assert payload["container"]["is_ephemeral"] is True
    assert payload["container"]["message_ts"] == "1733337600.000500"


def test_find_action_missing_names_present():
    with pytest.raises(LookupError, match=r"'deploy'.*\['approve', 'reject'\]"):
        find_action(proposal_blocks(), "deploy")


def test_find_action_in_accessory():
    blocks = [
        {
            "type": "section",
            "block_id": "b",
            "text": {"type": "mrkdwn", "text": "x"},
            "accessory": {"type": "button", "action_id": "retry", "text": {"type": "plain_text", "text": "Retry"}},
        }
    ]

    assert find_action(blocks, "retry")[0] == "b"


def test_view_submission_body_shape():
    body = view_submission_body(
        propose_view(),
        {"endpoint": {"name": "qwen-chat"}, "when": {"date": {"type": "datepicker", "selected_date": "2025-01-02"}}},
        user="U0ALICE",
        trigger_id="1.2.5",
    )

    payload = decode_payload(body)
    assert payload["type"] == "view_submission"
    assert payload["user"]["id"] == "U0ALICE"
    assert payload["trigger_id"] == "1.2.5"
    view = payload["view"]
    assert view["id"] == "V0VIEW00001"
    assert view["callback_id"] == "propose"
    assert view["private_metadata"] == '{"channel": "C0DEPLOYS"}'
    assert view["state"]["values"] == {
        "endpoint": {"name": {"type": "plain_text_input", "value": "qwen-chat"}},
        "when": {"date": {"type": "datepicker", "selected_date": "2025-01-02"}},
    }
    assert "trigger_id" not in view
    assert "user" not in view


def test_view_submission_body_unknown_input_fails():
    with pytest.raises(LookupError, match="block_id 'endpoint' and action_id 'typo'"):
        view_submission_body(propose_view(), {"endpoint": {"typo": "x"}}, user="U0ALICE", trigger_id="t")


def test_event_callback_body_shape():
    body = json.loads(event_callback_body({"type": "app_mention", "text": "hi"}, event_id="Ev1"))

    assert body["type"] == "event_callback"
    assert body["event"] == {"type": "app_mention", "text": "hi"}
    assert body["event_id"] == "Ev1"
    assert body["team_id"] == TEAM_ID


# -- driver against a real bolt App ------------------------------------------------------------


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        pass


@dataclass
class Bolt:
    """A bolt App served over HTTP, and what its listeners saw."""

    url: str
    commands: list = field(default_factory=list)
    actions: list = field(default_factory=list)
    views: list = field(default_factory=list)
    retries: list = field(default_factory=list)


@pytest.fixture
def slack():
    sandbox = SlackSandbox(bot_token=TOKEN).start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def bolt(slack):
    # Bolt calls auth.test while the App is built, so the sandbox must already be running.
    app = App(client=WebClient(token=TOKEN, base_url=slack.api_url), signing_secret=SECRET)
    seen = Bolt(url="")

    @app.middleware
    def record_retries(request, next):
        seen.retries.append(request.headers.get("x-slack-retry-num"))
        return next()

    @app.command("/rollout")
    def on_rollout(ack, command, respond):
        ack("working")
        seen.commands.append(command)
        respond(text=f"Proposal received: {command['text']}")

    @app.action("approve")
    def on_approve(ack, action, body, respond):
        ack()
        seen.actions.append(
            {"value": action["value"], "user": body["user"]["id"], "ts": body["container"]["message_ts"]}
        )
        respond(replace_original=True, text=f"Approved by <@{body['user']['id']}>")

    @app.view("propose")
    def on_propose(ack, view):
        name = view["state"]["values"]["endpoint"]["name"]["value"]
        if not name:
            ack(response_action="errors", errors={"endpoint": "Enter an endpoint name"})
            return
        seen.views.append({"name": name, "metadata": view["private_metadata"]})
        ack()

    server = make_server("127.0.0.1", 0, SlackRequestHandler(app), handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    seen.url = f"http://127.0.0.1:{server.server_port}/slack/events"
    yield seen
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def driver(slack, bolt):
    with SlackDriver(bot_url=bolt.url, signing_secret=SECRET, slack=slack) as instance:
        yield instance


def test_driver_command_accepted_by_bolt(slack, bolt, driver):
    response = driver.command(
        "/rollout", "propose qwen-chat MODEL_NAME=Qwen/Qwen3-14B", user="U0ALICE", channel=CHANNEL
    )

    assert response.status_code == 200
    assert response.text == "working"
    [reply] = slack.wait_for(lambda s: s.responses(), timeout=5)
    assert reply["text"] == "Proposal received: propose qwen-chat MODEL_NAME=Qwen/Qwen3-14B"
    assert reply["channel"] == CHANNEL
    [command] = bolt.commands
    assert command["user_id"] == "U0ALICE"
    assert command["user_name"] == "alice"
    assert command["response_url"] == reply["url"]


def test_driver_command_fresh_ids(slack, bolt, driver):
    driver.command("/rollout", "status")
    driver.command("/rollout", "status")

    slack.wait_for(lambda s: len(s.responses()) == 2, timeout=5)
    first, second = bolt.commands
    assert first["trigger_id"] != second["trigger_id"]
    assert first["response_url"] != second["response_url"]


def test_driver_click_accepted_by_bolt(slack, bolt, driver):
    client = WebClient(token=TOKEN, base_url=slack.api_url)
    client.chat_postMessage(channel=CHANNEL, text="Proposal", blocks=proposal_blocks())
    [message] = slack.messages()

    response = driver.click(message, action_id="approve", user="U0BOB")

    assert response.status_code == 200
    slack.wait_for(lambda s: s.responses(), timeout=5)
    assert bolt.actions == [{"value": "p-1", "user": "U0BOB", "ts": message["ts"]}]
    updated = slack.message(CHANNEL, message["ts"])
    assert updated["text"] == "Approved by <@U0BOB>"
    assert updated["blocks"] == []


def test_driver_click_unknown_button_fails(slack, driver):
    message = proposal_message()

    with pytest.raises(LookupError, match="deploy"):
        driver.click(message, action_id="deploy")


def test_driver_submit_view_accepted_by_bolt(slack, bolt, driver):
    client = WebClient(token=TOKEN, base_url=slack.api_url)
    view = propose_view()
    del view["id"], view["hash"], view["trigger_id"], view["user"], view["opened_by"]
    client.views_open(trigger_id=slack.new_trigger_id(user="U0ALICE"), view=view)
    [opened] = slack.views()

    accepted = driver.submit_view(opened, {"endpoint": {"name": "qwen-chat"}})
    rejected = driver.submit_view(opened, {"endpoint": {"name": ""}})

    assert accepted.status_code == 200
    assert bolt.views == [{"name": "qwen-chat", "metadata": '{"channel": "C0DEPLOYS"}'}]
    assert rejected.json() == {"response_action": "errors", "errors": {"endpoint": "Enter an endpoint name"}}


@pytest.mark.parametrize(
    "options",
    [{"bad_signature": True}, {"timestamp": int(time.time()) - 400}],
    ids=["bad-signature", "stale"],
)
def test_driver_rejected_by_bolt(slack, bolt, driver, options):
    response = driver.command("/rollout", "status", **options)

    assert response.status_code == 401
    assert bolt.commands == []


def test_driver_retry_headers_reach_bolt(slack, bolt, driver):
    driver.command("/rollout", "status", retry_num=2)

    slack.wait_for(lambda s: s.responses(), timeout=5)
    assert bolt.retries == [["2"]]


def test_driver_event_signed_json(slack, bolt, driver):
    response = driver.event(
        {"type": "app_mention", "user": "U0ALICE", "text": "hi", "channel": CHANNEL, "ts": "1.0", "event_ts": "1.0"}
    )

    # The app has no event listener, so bolt answers 404 after verifying the signature.
    assert response.status_code == 404
    assert bolt.retries == [None]
