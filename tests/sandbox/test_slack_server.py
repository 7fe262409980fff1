"""Tests of the fake Slack Web API, driven mostly through slack_sdk's real WebClient."""

import json
import re
import threading
import time

import httpx
import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from sandbox.slack_server import (
    BOT_ID,
    BOT_USER_ID,
    TEAM_ID,
    SlackSandbox,
    render_text,
    validate_blocks,
)

TOKEN = "xoxb-sandbox"
CHANNEL = "C0DEPLOYS"


def section(text):
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def button(label, action_id, value=None):
    element = {"type": "button", "text": {"type": "plain_text", "text": label}, "action_id": action_id}
    if value is not None:
        element["value"] = value
    return element


def proposal_blocks():
    return [
        {"type": "header", "text": {"type": "plain_text", "text": "Rollout proposal"}},
        section("*qwen-chat*: MODEL_NAME=Qwen/Qwen3-14B"),
        {
            "type": "actions",
            "block_id": "decision",
            "elements": [button("Approve", "approve", "p-1"), button("Reject", "reject", "p-1")],
        },
    ]


def modal(title="Propose rollout", blocks=None):
    return {
        "type": "modal",
        "callback_id": "propose",
        "title": {"type": "plain_text", "text": title},
        "submit": {"type": "plain_text", "text": "Propose"},
        "private_metadata": '{"channel": "C0DEPLOYS"}',
        "blocks": blocks
        if blocks is not None
        else [
            {
                "type": "input",
                "block_id": "endpoint",
                "label": {"type": "plain_text", "text": "Endpoint"},
                "element": {"type": "plain_text_input", "action_id": "name"},
            }
        ],
    }


@pytest.fixture
def slack():
    sandbox = SlackSandbox(bot_token=TOKEN).start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def client(slack):
    return WebClient(token=TOKEN, base_url=slack.api_url)


@pytest.fixture
def http():
    with httpx.Client(timeout=5.0) as session:
        yield session


def slack_error(call):
    """Run a slack_sdk call that must fail and return its SlackApiError response."""
    with pytest.raises(SlackApiError) as info:
        call()
    return info.value.response


# -- lifecycle ---------------------------------------------------------------------------------


def test_start_binds_loopback_port(slack):
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", slack.url)
    assert slack.api_url == slack.url + "/api/"


def test_start_twice_raises(slack):
    with pytest.raises(RuntimeError, match="already running"):
        slack.start()


def test_stop_twice_is_harmless():
    sandbox = SlackSandbox().start()
    sandbox.stop()
    sandbox.stop()
    with pytest.raises(RuntimeError, match="not running"):
        _ = sandbox.url


def test_context_manager_starts_and_stops():
    with SlackSandbox() as sandbox:
        assert WebClient(token="xoxb-sandbox", base_url=sandbox.api_url).auth_test()["ok"]
    with pytest.raises(RuntimeError):
        _ = sandbox.url


# -- auth --------------------------------------------------------------------------------------


def test_auth_test_returns_bot_identity(client):
    response = client.auth_test()

    assert response["team"] == "Sandbox"
    assert response["team_id"] == TEAM_ID
    assert response["user_id"] == BOT_USER_ID
    assert response["bot_id"] == BOT_ID
    assert "chat:write" in response.headers["x-oauth-scopes"].split(",")


@pytest.mark.parametrize(
    ("headers", "data", "error"),
    [
        ({"Authorization": "Bearer xoxb-wrong"}, {}, "invalid_auth"),
        ({}, {"token": "xoxb-wrong"}, "invalid_auth"),
        ({}, {}, "not_authed"),
    ],
    ids=["wrong-bearer", "wrong-form-token", "no-token"],
)
def test_auth_rejects_bad_token(slack, http, headers, data, error):
    response = http.post(slack.api_url + "auth.test", headers=headers, data=data)

    assert response.status_code == 200
    assert response.json() == {"ok": False, "error": error}


def test_auth_accepts_form_token(slack, http):
    response = http.post(slack.api_url + "auth.test", data={"token": TOKEN})

    assert response.json()["ok"] is True


def test_unknown_method_returns_error(client):
    response = slack_error(lambda: client.api_call("chat.scheduleMessage", json={}))

    assert response.status_code == 200
    assert response["error"] == "unknown_method"


# -- chat.postMessage --------------------------------------------------------------------------


def test_post_message_records_blocks_and_text(slack, client):
    response = client.chat_postMessage(
        channel=CHANNEL,
        text="Rollout proposal",
        blocks=proposal_blocks(),
        metadata={"event_type": "rollout_proposed", "event_payload": {"id": "p-1"}},
        unfurl_links=False,
        unfurl_media=False,
    )

    assert response["channel"] == CHANNEL
    assert response["message"]["ts"] == response["ts"]
    assert response["message"]["bot_id"] == BOT_ID
    [message] = slack.messages()
    assert message["ts"] == response["ts"]
    assert message["text"] == "Rollout proposal"
    assert message["blocks"][2]["block_id"] == "decision"
    assert message["metadata"]["event_payload"] == {"id": "p-1"}
    assert message["user"] == BOT_USER_ID
    assert message["thread_ts"] is None
    assert message["unfurl_links"] is False
    assert message["edits"] == []


def test_post_message_fills_missing_block_ids(slack, client):
    client.chat_postMessage(
        channel=CHANNEL,
        text="t",
        blocks=[
            section("a"),
            {"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Go"}}]},
        ],
    )

    blocks = slack.messages()[0]["blocks"]
    assert all(block["block_id"] for block in blocks)
    assert blocks[1]["elements"][0]["action_id"]


def test_post_message_ts_strictly_increasing(slack, client):
    stamps = [client.chat_postMessage(channel=channel, text="x")["ts"] for channel in ("C1", "C2", "C1", "C3")]

    for ts in stamps:
        assert re.fullmatch(r"\d{10}\.\d{6}", ts)
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == len(stamps)


def test_post_message_threads_are_safe(slack, client):
    def post_many():
        for _ in range(10):
            client.chat_postMessage(channel=CHANNEL, text="x")

    threads = [threading.Thread(target=post_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    stamps = [message["ts"] for message in slack.messages()]
    assert len(stamps) == 40
    assert len(set(stamps)) == 40
    assert stamps == sorted(stamps)


def test_post_message_form_body_decodes_json(slack, http):
    response = http.post(
        slack.api_url + "chat.postMessage",
        data={
            "token": TOKEN,
            "channel": CHANNEL,
            "text": "fallback",
            "blocks": json.dumps([section("from a form")]),
            "metadata": json.dumps({"event_type": "t", "event_payload": {"n": 1}}),
            "reply_broadcast": "false",
        },
    )

    assert response.json()["ok"] is True
    [message] = slack.messages()
    assert message["blocks"][0]["text"]["text"] == "from a form"
    assert message["metadata"] == {"event_type": "t", "event_payload": {"n": 1}}
    assert message["reply_broadcast"] is False


def test_post_message_bad_blocks_json_rejected(slack, http):
    response = http.post(slack.api_url + "chat.postMessage", data={"token": TOKEN, "channel": CHANNEL, "blocks": "[{"})

    assert response.json() == {"ok": False, "error": "invalid_blocks_format"}


@pytest.mark.parametrize(
    ("content", "error"),
    [(b"{not json", "invalid_json"), (b"[1, 2]", "json_not_object")],
    ids=["broken", "array"],
)
def test_post_message_bad_json_body_rejected(slack, http, content, error):
    response = http.post(
        slack.api_url + "chat.postMessage",
        content=content,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )

    assert response.json() == {"ok": False, "error": error}
    assert len(slack.calls("chat.postMessage")) == 1


def test_post_message_to_user_posts_dm(slack, client):
    response = client.chat_postMessage(channel="U0ALICE", text="hi")

    assert response["channel"] == "D0ALICE"
    assert slack.messages("D0ALICE")[0]["text"] == "hi"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"text": ""}, "no_text"),
        ({"text": "x" * 40_001}, "msg_too_long"),
        ({"text": "t", "blocks": [section("b")] * 51}, "invalid_blocks"),
        ({"text": "t", "blocks": [section("x" * 3001)]}, "invalid_blocks"),
        ({"text": "t", "blocks": [{"text": {"type": "mrkdwn", "text": "no type"}}]}, "invalid_blocks"),
        (
            {"text": "t", "blocks": [{"type": "actions", "elements": [button(f"b{i}", f"a{i}") for i in range(26)]}]},
            "invalid_blocks",
        ),
        (
            {"text": "t", "blocks": [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}]},
            "invalid_blocks",
        ),
        ({"text": "t", "blocks": [{"type": "actions", "elements": [button("x" * 76, "long")]}]}, "invalid_blocks"),
        ({"text": "t", "thread_ts": "1733337600.999900"}, "thread_not_found"),
    ],
    ids=[
        "no-text",
        "text-too-long",
        "51-blocks",
        "section-3001",
        "block-without-type",
        "26-actions",
        "header-151",
        "button-text-76",
        "unknown-thread",
    ],
)
def test_post_message_rejects_invalid(slack, client, kwargs, error):
    # api_call skips slack_sdk's own warning about a missing text.
    arguments = {"channel": CHANNEL, **kwargs}
    response = slack_error(lambda: client.api_call("chat.postMessage", json=arguments))

    assert response.status_code == 200
    assert response["error"] == error
    assert slack.messages() == []


def test_post_message_invalid_blocks_names_pointer(client):
    response = slack_error(lambda: client.chat_postMessage(channel=CHANNEL, text="t", blocks=[section("x" * 3001)]))

    assert response["errors"] == ["must be less than 3001 characters [json-pointer:/blocks/0/text/text]"]


def test_post_message_accepts_limits(slack, client):
    client.chat_postMessage(channel=CHANNEL, text="x" * 40_000)
    client.chat_postMessage(channel=CHANNEL, text="t", blocks=[section("s")] * 50)
    client.chat_postMessage(channel=CHANNEL, text="t", blocks=[section("x" * 3000)])
    client.chat_postMessage(
        channel=CHANNEL,
        text="t",
        blocks=[{"type": "actions", "elements": [button(f"b{i}", f"a{i}") for i in range(25)]}],
    )

    assert len(slack.messages()) == 4


@pytest.mark.parametrize(
    ("configure", "error"),
    [
        (lambda s: s.missing_channels.add("C0GONE"), "channel_not_found"),
        (lambda s: s.outside_channels.add("C0GONE"), "not_in_channel"),
    ],
    ids=["missing", "outside"],
)
def test_post_message_channel_errors(slack, client, configure, error):
    configure(slack)

    response = slack_error(lambda: client.chat_postMessage(channel="C0GONE", text="x"))

    assert response["error"] == error


def test_post_message_thread_reply(slack, client):
    parent = client.chat_postMessage(channel=CHANNEL, text="parent")["ts"]
    first = client.chat_postMessage(channel=CHANNEL, text="one", thread_ts=parent)
    client.chat_postMessage(channel=CHANNEL, text="two", thread_ts=parent, reply_broadcast=True)
    client.chat_postMessage(channel=CHANNEL, text="elsewhere")

    replies = slack.thread(CHANNEL, parent)
    assert [reply["text"] for reply in replies] == ["one", "two"]
    assert first["message"]["thread_ts"] == parent
    assert replies[1]["reply_broadcast"] is True


def test_post_message_thread_in_other_channel_fails(client):
    parent = client.chat_postMessage(channel=CHANNEL, text="parent")["ts"]

    response = slack_error(lambda: client.chat_postMessage(channel="C0ALERTS", text="x", thread_ts=parent))

    assert response["error"] == "thread_not_found"


# -- chat.update and chat.delete ---------------------------------------------------------------


def test_update_keeps_edit_history(slack, client):
    ts = client.chat_postMessage(channel=CHANNEL, text="v1", blocks=[section("v1")])["ts"]

    client.chat_update(channel=CHANNEL, ts=ts, text="v2", blocks=[section("v2")])
    response = client.chat_update(channel=CHANNEL, ts=ts, text="v3", blocks=[section("v3")])

    assert response["ts"] == ts
    message = slack.message(CHANNEL, ts)
    assert message["text"] == "v3"
    assert render_text(message) == "v3"
    assert message["original"]["text"] == "v1"
    assert [edit["text"] for edit in message["edits"]] == ["v2", "v3"]
    assert message["edits"][0]["blocks"][0]["text"]["text"] == "v2"
    assert message["edits"][0]["time"] <= message["edits"][1]["time"]


def test_update_text_only_removes_blocks(slack, client):
    ts = client.chat_postMessage(channel=CHANNEL, text="v1", blocks=proposal_blocks())["ts"]

    client.chat_update(channel=CHANNEL, ts=ts, text="decided")

    assert slack.message(CHANNEL, ts)["blocks"] == []


def test_update_metadata_replaced(slack, client):
    ts = client.chat_postMessage(channel=CHANNEL, text="v1")["ts"]

    client.chat_update(channel=CHANNEL, ts=ts, text="v2", metadata={"event_type": "done", "event_payload": {}})

    assert slack.message(CHANNEL, ts)["metadata"]["event_type"] == "done"


@pytest.mark.parametrize(
    ("target", "kwargs", "error"),
    [
        ("missing", {"text": "x"}, "message_not_found"),
        ("human", {"text": "x"}, "cant_update_message"),
        ("bot", {}, "no_text"),
        ("bot", {"text": "t", "blocks": [section("b")] * 51}, "invalid_blocks"),
    ],
    ids=["missing", "not-bot-message", "no-text", "too-many-blocks"],
)
def test_update_rejects_invalid(slack, client, target, kwargs, error):
    bot_ts = client.chat_postMessage(channel=CHANNEL, text="bot")["ts"]
    human_ts = slack.post_user_message(CHANNEL, "hi", user="U0ALICE")["ts"]
    ts = {"missing": "1733337699.000100", "human": human_ts, "bot": bot_ts}[target]

    arguments = {"channel": CHANNEL, "ts": ts, **kwargs}
    response = slack_error(lambda: client.api_call("chat.update", json=arguments))

    assert response["error"] == error
    assert slack.message(CHANNEL, bot_ts)["edits"] == []


def test_delete_hides_message(slack, client):
    ts = client.chat_postMessage(channel=CHANNEL, text="bye")["ts"]

    client.chat_delete(channel=CHANNEL, ts=ts)

    assert slack.messages() == []
    assert slack_error(lambda: client.chat_delete(channel=CHANNEL, ts=ts))["error"] == ("message_not_found")


# -- chat.postEphemeral ------------------------------------------------------------------------


def test_post_ephemeral_records_message(slack, client):
    response = client.chat_postEphemeral(channel=CHANNEL, user="U0ALICE", text="only you", blocks=[section("only you")])

    [ephemeral] = slack.ephemerals()
    assert ephemeral["message_ts"] == response["message_ts"]
    assert ephemeral["user"] == "U0ALICE"
    assert ephemeral["channel"] == CHANNEL
    assert ephemeral["text"] == "only you"
    assert slack.messages() == []


def test_post_ephemeral_unknown_user_fails(client):
    response = slack_error(lambda: client.chat_postEphemeral(channel=CHANNEL, user="U0NOBODY", text="x"))

    assert response["error"] == "user_not_found"


# -- views -------------------------------------------------------------------------------------


def test_views_open_records_view(slack, client):
    trigger_id = slack.new_trigger_id(user="U0ALICE")

    response = client.views_open(trigger_id=trigger_id, view=modal())

    view_id = response["view"]["id"]
    assert view_id.startswith("V")
    assert response["view"]["callback_id"] == "propose"
    [view] = slack.views()
    assert view["id"] == view_id
    assert view["private_metadata"] == '{"channel": "C0DEPLOYS"}'
    assert view["user"] == "U0ALICE"
    assert view["trigger_id"] == trigger_id
    assert view["state"] == {"values": {}}


def test_views_open_trigger_used_twice_fails(slack, client):
    trigger_id = slack.new_trigger_id()
    client.views_open(trigger_id=trigger_id, view=modal())

    response = slack_error(lambda: client.views_open(trigger_id=trigger_id, view=modal()))

    assert response["error"] == "exchanged_trigger_id"
    assert len(slack.views()) == 1


def test_views_open_expired_trigger_fails(slack, client):
    slack.trigger_ttl = 0.0
    trigger_id = slack.new_trigger_id()

    response = slack_error(lambda: client.views_open(trigger_id=trigger_id, view=modal()))

    assert response["error"] == "expired_trigger_id"


@pytest.mark.parametrize(
    "view",
    [
        modal(title="x" * 25),
        modal(blocks=[section("s")] * 101),
        {"type": "sheet", "title": {"type": "plain_text", "text": "t"}, "blocks": []},
    ],
    ids=["title-25", "101-blocks", "bad-type"],
)
def test_views_open_rejects_invalid_view(slack, client, view):
    response = slack_error(lambda: client.views_open(trigger_id=slack.new_trigger_id(), view=view))

    assert response["error"] == "invalid_arguments"
    assert response["response_metadata"]["messages"]


def test_views_update_replaces_blocks(slack, client):
    opened = client.views_open(trigger_id=slack.new_trigger_id(), view=modal())["view"]

    updated = client.views_update(
        view_id=opened["id"], hash=opened["hash"], view=modal(blocks=[section("checking...")])
    )["view"]

    assert updated["hash"] != opened["hash"]
    [view] = slack.views()
    assert render_text(view["blocks"]) == "checking..."


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [({"view_id": "V0NONE"}, "not_found"), ({"hash": "stale"}, "hash_conflict")],
    ids=["unknown-view", "stale-hash"],
)
def test_views_update_rejects_invalid(slack, client, kwargs, error):
    opened = client.views_open(trigger_id=slack.new_trigger_id(), view=modal())["view"]
    arguments = {"view_id": opened["id"], **kwargs}

    response = slack_error(lambda: client.views_update(view=modal(), **arguments))

    assert response["error"] == error


def test_views_push_records_second_view(slack, client):
    client.views_open(trigger_id=slack.new_trigger_id(), view=modal())

    client.views_push(trigger_id=slack.new_trigger_id(), view=modal(title="Confirm"))

    assert [render_text(view).splitlines()[0] for view in slack.views()] == ["== Propose rollout ==", "== Confirm =="]


# -- users and user groups ---------------------------------------------------------------------


def test_users_info_returns_profile(client):
    user = client.users_info(user="U0BOB")["user"]

    assert user["id"] == "U0BOB"
    assert user["name"] == "bob"
    assert user["real_name"] == "Bob Brown"
    assert user["tz"] == "Europe/Berlin"
    assert user["profile"]["display_name"] == "bob"


def test_users_info_unknown_user_fails(client):
    assert slack_error(lambda: client.users_info(user="U0NOBODY"))["error"] == "user_not_found"


def test_users_configurable():
    users = [{"id": "U1", "name": "zed", "tz": "UTC"}]
    with SlackSandbox(users=users, usergroups={"S1": ["U1"]}) as sandbox:
        client = WebClient(token="xoxb-sandbox", base_url=sandbox.api_url)

        assert client.users_info(user="U1")["user"]["real_name"] == "zed"
        assert client.usergroups_users_list(usergroup="S1")["users"] == ["U1"]
        assert slack_error(lambda: client.users_info(user="U0ALICE"))["error"] == ("user_not_found")


def test_usergroups_users_list_returns_members(client):
    assert client.usergroups_users_list(usergroup="S0SRE")["users"] == ["U0CAROL", "U0DAVE"]


def test_usergroups_users_list_unknown_fails(client):
    response = slack_error(lambda: client.usergroups_users_list(usergroup="S0NONE"))

    assert response["error"] == "no_such_subteam"


# -- conversations -----------------------------------------------------------------------------


def post_thread(client):
    """Post a parent with metadata, two replies (one broadcast) and a later top-level message."""
    parent = client.chat_postMessage(
        channel=CHANNEL, text="parent", metadata={"event_type": "rollout", "event_payload": {"id": "r-1"}}
    )["ts"]
    client.chat_postMessage(channel=CHANNEL, text="reply 1", thread_ts=parent)
    client.chat_postMessage(channel=CHANNEL, text="reply 2", thread_ts=parent, reply_broadcast=True)
    client.chat_postMessage(channel=CHANNEL, text="later")
    return parent


def test_conversations_replies_parent_first(client):
    parent = post_thread(client)

    response = client.conversations_replies(channel=CHANNEL, ts=parent)

    assert [m["text"] for m in response["messages"]] == ["parent", "reply 1", "reply 2"]
    assert response["messages"][0]["reply_count"] == 2
    assert response["messages"][1]["thread_ts"] == parent
    assert "metadata" not in response["messages"][0]


def test_conversations_replies_includes_metadata_on_request(client):
    parent = post_thread(client)

    response = client.conversations_replies(channel=CHANNEL, ts=parent, include_all_metadata=True)

    assert response["messages"][0]["metadata"]["event_payload"] == {"id": "r-1"}


def test_conversations_replies_unknown_thread_fails(client):
    response = slack_error(lambda: client.conversations_replies(channel=CHANNEL, ts="1733337600.999900"))

    assert response["error"] == "thread_not_found"


def test_conversations_history_newest_first(client):
    post_thread(client)

    response = client.conversations_history(channel=CHANNEL)

    assert [m["text"] for m in response["messages"]] == ["later", "reply 2", "parent"]
    assert response["messages"][1]["subtype"] == "thread_broadcast"
    assert response["has_more"] is False


def test_conversations_history_metadata_on_request(client):
    post_thread(client)

    plain = client.conversations_history(channel=CHANNEL)["messages"]
    full = client.conversations_history(channel=CHANNEL, include_all_metadata=True)["messages"]

    assert "metadata" not in plain[-1]
    assert full[-1]["metadata"]["event_type"] == "rollout"


def test_conversations_history_pages(client):
    stamps = [client.chat_postMessage(channel=CHANNEL, text=str(n))["ts"] for n in range(5)]

    first = client.conversations_history(channel=CHANNEL, limit=2)
    second = client.conversations_history(channel=CHANNEL, limit=2, cursor=first["response_metadata"]["next_cursor"])
    window = client.conversations_history(channel=CHANNEL, oldest=stamps[1], latest=stamps[3])

    assert [m["text"] for m in first["messages"]] == ["4", "3"]
    assert first["has_more"] is True
    assert [m["text"] for m in second["messages"]] == ["2", "1"]
    assert [m["text"] for m in window["messages"]] == ["2"]


def test_conversations_history_channel_errors(slack, client):
    slack.outside_channels.add("C0PRIVATE")

    response = slack_error(lambda: client.conversations_history(channel="C0PRIVATE"))

    assert response["error"] == "not_in_channel"


# -- fault injection ---------------------------------------------------------------------------


def test_fail_next_rate_limit_429(slack, client):
    slack.fail_next("chat.postMessage", retry_after=7)

    response = slack_error(lambda: client.chat_postMessage(channel=CHANNEL, text="x"))

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert response["error"] == "ratelimited"
    assert client.chat_postMessage(channel=CHANNEL, text="x")["ok"]
    assert [call["status"] for call in slack.calls("chat.postMessage")] == [429, 200]


def test_fail_next_server_error_500(slack, client):
    slack.fail_next("chat.update", status=500)
    ts = client.chat_postMessage(channel=CHANNEL, text="x")["ts"]

    response = slack_error(lambda: client.chat_update(channel=CHANNEL, ts=ts, text="y"))

    assert response.status_code == 500
    assert isinstance(slack.calls("chat.update")[0]["response"], str)
    assert slack.message(CHANNEL, ts)["edits"] == []


def test_fail_next_slack_error_200(slack, client):
    slack.fail_next("chat.postMessage", error="channel_not_found")

    response = slack_error(lambda: client.chat_postMessage(channel=CHANNEL, text="x"))

    assert response.status_code == 200
    assert response["error"] == "channel_not_found"


def test_fail_next_count_and_after(slack, client):
    slack.fail_next("chat.postMessage", count=2, after=1, error="fatal_error")

    outcomes = []
    for _ in range(4):
        try:
            client.chat_postMessage(channel=CHANNEL, text="x")
            outcomes.append("ok")
        except SlackApiError as exc:
            outcomes.append(exc.response["error"])

    assert outcomes == ["ok", "fatal_error", "fatal_error", "ok"]


def test_fail_next_counts_from_now(slack, client):
    client.chat_postMessage(channel=CHANNEL, text="before")

    slack.fail_next("chat.postMessage")

    assert slack_error(lambda: client.chat_postMessage(channel=CHANNEL, text="x")).status_code == 429


def test_fail_next_only_that_method(slack, client):
    slack.fail_next("chat.update")

    assert client.chat_postMessage(channel=CHANNEL, text="x")["ok"]


@pytest.mark.parametrize(("count", "after"), [(0, 0), (1, -1)])
def test_fail_next_rejects_bad_counts(slack, count, after):
    with pytest.raises(ValueError, match="count >= 1"):
        slack.fail_next("chat.update", count=count, after=after)


def test_delay_slows_method(slack, client):
    slack.delay("auth.test", 0.05)
    started = time.monotonic()
    client.auth_test()
    slowed = time.monotonic() - started

    slack.delay("auth.test", 0)
    started = time.monotonic()
    client.auth_test()

    assert slowed >= 0.05
    assert time.monotonic() - started < 0.05


# -- response URLs -----------------------------------------------------------------------------


def test_response_url_records_post(slack):
    url = slack.new_response_url(channel=CHANNEL, user="U0ALICE")

    response = WebhookClient(url).send(text="Working on it", response_type="ephemeral")

    assert response.status_code == 200
    assert url.startswith(slack.url + "/response/")
    [recorded] = slack.responses()
    assert recorded["url"] == url
    assert recorded["text"] == "Working on it"
    assert recorded["response_type"] == "ephemeral"
    assert recorded["replace_original"] is False
    assert slack.messages() == []


def test_response_url_in_channel_posts_message(slack):
    url = slack.new_response_url(channel=CHANNEL)

    WebhookClient(url).send(text="Proposal posted", response_type="in_channel")

    [message] = slack.messages()
    assert message["channel"] == CHANNEL
    assert message["text"] == "Proposal posted"
    assert message["bot_id"] == BOT_ID


def test_response_url_replace_original_edits_message(slack, client):
    ts = client.chat_postMessage(channel=CHANNEL, text="pending", blocks=proposal_blocks())["ts"]
    url = slack.new_response_url(channel=CHANNEL, message_ts=ts)

    WebhookClient(url).send(text="Approved by bob", replace_original=True)

    message = slack.message(CHANNEL, ts)
    assert message["text"] == "Approved by bob"
    assert message["blocks"] == []
    assert len(message["edits"]) == 1


def test_response_url_delete_original_deletes(slack, client):
    ts = client.chat_postMessage(channel=CHANNEL, text="pending")["ts"]
    url = slack.new_response_url(channel=CHANNEL, message_ts=ts)

    WebhookClient(url).send_dict({"delete_original": True})

    assert slack.messages() == []


def test_response_url_unknown_id_404(slack, http):
    response = http.post(slack.url + "/response/R99999", json={"text": "x"})

    assert response.status_code == 404
    assert slack.responses() == []


def test_response_url_can_fail(slack):
    url = slack.new_response_url()
    slack.fail_next("response_url", status=500)

    assert WebhookClient(url).send(text="x").status_code == 500
    assert WebhookClient(url).send(text="x").status_code == 200
    assert len(slack.responses()) == 1


# -- recording and transcript ------------------------------------------------------------------


def test_calls_record_order_and_failures(slack, client):
    slack.fail_next("chat.update", error="cant_update_message")
    client.auth_test()
    ts = client.chat_postMessage(channel=CHANNEL, text="parent")["ts"]
    client.chat_postMessage(channel=CHANNEL, text="reply", thread_ts=ts)
    with pytest.raises(SlackApiError):
        client.chat_update(channel=CHANNEL, ts=ts, text="edited")
    client.chat_update(channel=CHANNEL, ts=ts, text="edited")

    calls = slack.calls()

    assert [call["method"] for call in calls] == [
        "auth.test",
        "chat.postMessage",
        "chat.postMessage",
        "chat.update",
        "chat.update",
    ]
    assert [call["status"] for call in calls] == [200] * 5
    assert calls[3]["response"] == {"ok": False, "error": "cant_update_message"}
    assert calls[2]["params"]["thread_ts"] == ts
    assert "token" not in calls[1]["params"]
    assert [call["time"] for call in calls] == sorted(call["time"] for call in calls)
    assert len(slack.calls("chat.update")) == 2


def test_messages_filter_by_channel(slack, client):
    client.chat_postMessage(channel="C1", text="one")
    client.chat_postMessage(channel="C2", text="two")

    assert [m["text"] for m in slack.messages("C2")] == ["two"]
    assert [m["text"] for m in slack.messages()] == ["one", "two"]


def test_message_unknown_raises(slack):
    with pytest.raises(KeyError, match="no message"):
        slack.message(CHANNEL, "1.0")


def test_returned_records_are_copies(slack, client):
    client.chat_postMessage(channel=CHANNEL, text="x")

    slack.messages()[0]["text"] = "changed"

    assert slack.messages()[0]["text"] == "x"


def test_transcript_indents_replies(slack, client):
    ts = client.chat_postMessage(channel=CHANNEL, text="Rollout", blocks=proposal_blocks())["ts"]
    client.chat_postMessage(channel=CHANNEL, text="worker 1 drained", thread_ts=ts)
    slack.post_user_message(CHANNEL, "nice", user="U0BOB")

    lines = slack.transcript(CHANNEL).splitlines()

    assert lines[0] == f"[{CHANNEL} {ts}] rollcall:"
    assert lines[1:4] == ["  Rollout proposal", "  *qwen-chat*: MODEL_NAME=Qwen/Qwen3-14B", "  [Approve] [Reject]"]
    assert lines[4].startswith("    [")
    assert lines[5] == "      worker 1 drained"
    assert lines[6].endswith("] bob:")


def test_wait_for_returns_value(slack, client):
    def post_later():
        time.sleep(0.005)
        client.chat_postMessage(channel=CHANNEL, text="late")

    thread = threading.Thread(target=post_later)
    thread.start()
    messages = slack.wait_for(lambda s: s.messages(CHANNEL), timeout=5)
    thread.join()

    assert messages[0]["text"] == "late"


def test_wait_for_times_out_with_summary(slack, client):
    client.chat_postMessage(channel=CHANNEL, text="x")

    with pytest.raises(AssertionError, match=r"within 0.02 s.*chat.postMessage.*messages: 1"):
        slack.wait_for(lambda s: len(s.messages()) > 1, timeout=0.02)


# -- HTTP control routes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "key", "expected"),
    [
        ("calls?method=chat.postMessage", "calls", 1),
        ("messages?channel=C0DEPLOYS", "messages", 1),
        ("messages?channel=C0OTHER", "messages", 0),
        ("ephemerals", "ephemerals", 1),
        ("responses", "responses", 1),
        ("views", "views", 1),
    ],
)
def test_control_route_lists_state(slack, client, http, route, key, expected):
    client.chat_postMessage(channel=CHANNEL, text="x")
    client.chat_postEphemeral(channel=CHANNEL, user="U0ALICE", text="e")
    client.views_open(trigger_id=slack.new_trigger_id(), view=modal())
    WebhookClient(slack.new_response_url()).send(text="r")

    response = http.get(f"{slack.url}/_sandbox/{route}")

    assert response.status_code == 200
    assert len(response.json()[key]) == expected


def test_control_route_transcript_is_text(slack, client, http):
    client.chat_postMessage(channel=CHANNEL, text="hello")

    response = http.get(f"{slack.url}/_sandbox/transcript")

    assert response.headers["content-type"].startswith("text/plain")
    assert response.text.splitlines()[1] == "  hello"


def test_control_route_fail_scripts_failure(slack, client, http):
    response = http.post(f"{slack.url}/_sandbox/fail", json={"method": "chat.postMessage", "error": "not_in_channel"})

    assert response.json() == {"ok": True}
    assert slack_error(lambda: client.chat_postMessage(channel=CHANNEL, text="x"))["error"] == ("not_in_channel")


def test_control_route_delay_sets_delay(slack, client, http):
    http.post(f"{slack.url}/_sandbox/delay", json={"method": "auth.test", "seconds": 0.03})
    started = time.monotonic()

    client.auth_test()

    assert time.monotonic() - started >= 0.03


@pytest.mark.parametrize(
    "body",
    [{}, {"method": "chat.update", "count": 0}, {"method": "chat.update", "colour": "red"}],
    ids=["no-method", "zero-count", "unknown-field"],
)
def test_control_route_fail_rejects_bad_request(slack, http, body):
    response = http.post(f"{slack.url}/_sandbox/fail", json=body)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize("path", ["/_sandbox/nothing", "/elsewhere"])
def test_unknown_route_404(slack, http, path):
    assert http.get(slack.url + path).status_code == 404


# -- Block Kit helpers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (proposal_blocks(), "Rollout proposal\n*qwen-chat*: MODEL_NAME=Qwen/Qwen3-14B\n[Approve] [Reject]"),
        (
            [{"type": "section", "fields": [{"type": "mrkdwn", "text": "*A*"}, {"type": "mrkdwn", "text": "*B*"}]}],
            "*A*\n*B*",
        ),
        (
            [
                {
                    "type": "context",
                    "elements": [{"type": "mrkdwn", "text": "by alice"}, {"type": "image", "alt_text": "ok"}],
                }
            ],
            "by alice  ok",
        ),
        ([{"type": "divider"}, section("after")], "---\nafter"),
        (
            [
                section("Pick"),
                {
                    "type": "actions",
                    "elements": [{"type": "static_select", "placeholder": {"type": "plain_text", "text": "Endpoint"}}],
                },
            ],
            "Pick\n[Endpoint ▾]",
        ),
        ([{**section("Retry?"), "accessory": button("Retry", "retry")}], "Retry?\n[Retry]"),
        (
            [
                {
                    "type": "rich_text",
                    "elements": [
                        {
                            "type": "rich_text_section",
                            "elements": [{"type": "text", "text": "hi "}, {"type": "user", "user_id": "U0BOB"}],
                        }
                    ],
                }
            ],
            "hi <@U0BOB>",
        ),
        ({"text": "plain fallback", "blocks": []}, "plain fallback"),
        (modal(), "== Propose rollout ==\nEndpoint:"),
    ],
    ids=["proposal", "fields", "context", "divider", "select", "accessory", "rich-text", "text-only", "modal"],
)
def test_render_text_flattens_blocks(source, expected):
    assert render_text(source) == expected


def test_render_text_rejects_other_types():
    with pytest.raises(TypeError, match="list of blocks or a dict"):
        render_text("text")


def test_validate_blocks_accepts_valid():
    assert validate_blocks(proposal_blocks(), 50) == []
