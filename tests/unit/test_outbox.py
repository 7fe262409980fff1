"""The Slack outbox against the Slack sandbox: order, retries, collapsing, delivered once."""

import pytest
from slack_sdk import WebClient

from bot.outbox import METADATA_TYPE, Outbox
from bot.store import Store
from sandbox.slack_server import SlackSandbox

TOKEN = "xoxb-outbox"


@pytest.fixture
def slack():
    sandbox = SlackSandbox(bot_token=TOKEN).start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def store(tmp_path):
    db = Store(str(tmp_path / "outbox.db"))
    yield db
    db.close()


@pytest.fixture
def client(slack):
    return WebClient(token=TOKEN, base_url=slack.api_url, retry_handlers=[])


@pytest.fixture
def clock():
    return [1_000_000.0]


@pytest.fixture
def outbox(store, client, clock):
    return Outbox(store, client, alert_channel="C0ALERTS", backoff=1.0, clock=lambda: clock[0])


def drain(outbox, clock, rounds=20):
    """Deliver until nothing is left, moving the clock past each retry delay instead of sleeping."""
    for _ in range(rounds):
        wait = outbox.deliver()
        if wait is None:
            return
        clock[0] += wait + 0.001
    raise AssertionError("the outbox did not empty")


def test_thread_replies_follow_parent(outbox, slack, clock):
    outbox.post("parent", "C1", "parent")
    outbox.post("reply-1", "C1", "one", thread_key="parent")
    outbox.post("reply-2", "C1", "two", thread_key="parent")
    drain(outbox, clock)
    parent = slack.messages("C1")[0]
    replies = [m["text"] for m in slack.thread("C1", parent["ts"]) if m["ts"] != parent["ts"]]
    assert replies == ["one", "two"]


def test_rate_limit_waits_retry_after_and_keeps_order(outbox, slack, clock):
    outbox.post("parent", "C1", "parent")
    drain(outbox, clock)
    slack.fail_next("chat.postMessage", count=2, error="ratelimited", retry_after=7)
    outbox.post("reply-1", "C1", "one", thread_key="parent")
    outbox.post("reply-2", "C1", "two", thread_key="parent")
    assert outbox.deliver() == pytest.approx(7.0)
    clock[0] += 7.001
    assert outbox.deliver() == pytest.approx(7.0)
    clock[0] += 7.001
    assert outbox.deliver() is None
    parent = slack.messages("C1")[0]
    assert [m["text"] for m in slack.thread("C1", parent["ts"]) if m["ts"] != parent["ts"]] == ["one", "two"]


def test_edits_collapse_to_latest(outbox, slack, clock, store):
    outbox.post("parent", "C1", "v0")
    drain(outbox, clock)
    for version in range(1, 6):
        outbox.update("parent", "C1", f"v{version}", [])
    assert len(store.outbox()) == 1
    drain(outbox, clock)
    assert len(slack.calls("chat.update")) == 1
    assert slack.messages("C1")[0]["text"] == "v5"


def test_server_error_then_lookup_prevents_duplicate(outbox, slack, clock, store, client):
    outbox.post("parent", "C1", "parent")
    drain(outbox, clock)
    # Slack accepted this reply, but the bot died before recording it: the row is still "sending".
    parent_ts = store.message("parent")["ts"]
    client.chat_postMessage(
        channel="C1",
        text="one",
        thread_ts=parent_ts,
        metadata={"event_type": METADATA_TYPE, "event_payload": {"key": "reply-1"}},
    )
    row_id = store.enqueue("post", "reply-1", "C1", {"text": "one", "blocks": []}, thread_key="parent")
    store.mark_outbox(row_id, "sending", attempts=1)
    drain(outbox, clock)
    texts = [m["text"] for m in slack.thread("C1", parent_ts)]
    assert texts.count("one") == 1
    assert store.message("reply-1") is not None


def test_sending_row_not_found_is_posted(outbox, slack, clock, store):
    row_id = store.enqueue("post", "top", "C1", {"text": "top", "blocks": []})
    store.mark_outbox(row_id, "sending", attempts=1)
    drain(outbox, clock)
    assert [m["text"] for m in slack.messages("C1")] == ["top"]


def test_permanent_error_alerts_and_moves_on(outbox, slack, clock, store):
    slack.outside_channels.add("C9")
    outbox.post("lost", "C9", "lost")
    outbox.post("next", "C1", "next")
    drain(outbox, clock)
    assert store.db.execute("select state, error from outbox where key = 'lost'").fetchall() == [
        ("failed", "not_in_channel")
    ]
    assert [m["text"] for m in slack.messages("C1")] == ["next"]
    assert "could not post to <#C9>: `not_in_channel`" in slack.messages("C0ALERTS")[0]["text"]


def test_server_error_backs_off(outbox, slack, clock):
    slack.fail_next("chat.postMessage", count=2, status=500, error="internal_error")
    outbox.post("top", "C1", "top")
    first = outbox.deliver()
    clock[0] += first + 0.001
    second = outbox.deliver()
    assert second == pytest.approx(2 * first)
    clock[0] += second + 0.001
    assert outbox.deliver() is None
    assert [m["text"] for m in slack.messages("C1")] == ["top"]
