"""Rollouts that lose nothing when Slack or Vast misbehave for a while."""

from collections import Counter

from tests.conftest import CHANNEL, wait_until

NEW_MODEL = "Qwen/Qwen3-14B"


def start_rollout(bot):
    proposal = bot.propose(f"qwen-chat MODEL_NAME={NEW_MODEL}")
    bot.click(proposal, "approve", user="U0BOB")
    return proposal


def thread(slack, proposal):
    return [m for m in slack.thread(CHANNEL, proposal["ts"]) if m["ts"] != proposal["ts"]]


def message_keys(messages):
    return [((m.get("metadata") or {}).get("event_payload") or {}).get("key") for m in messages]


def test_slack_outage_keeps_full_transcript_in_order(start_bot, qwen, vast, slack):
    bot = start_bot()
    proposal = bot.propose(f"qwen-chat MODEL_NAME={NEW_MODEL}")
    slack.fail_next("chat.postMessage", count=3, after=1, error="ratelimited", retry_after=1)
    slack.fail_next("chat.postMessage", count=2, after=6, status=500, error="internal_error")
    slack.fail_next("chat.update", count=3, after=1, status=500, error="internal_error")
    bot.click(proposal, "approve", user="U0BOB")
    wait_until(lambda: bot.store.proposal(1)["status"] == "completed", timeout=40, message="completion")
    wait_until(lambda: bot.store.outbox() == [], timeout=20, message="an empty outbox")

    replies = thread(slack, proposal)
    keys = message_keys(replies)
    assert None not in keys
    assert len(keys) == len(set(keys)), Counter(keys).most_common(3)
    queued = [row[0] for row in bot.store.db.execute("select key from outbox where op = 'post' order by id").fetchall()]
    assert keys == [key for key in queued if key in set(keys)]
    assert set(queued) - {"proposal:1"} == set(keys)
    texts = "\n".join(reply["text"] for reply in replies)
    assert texts.index("Step 1 of 2") < texts.index("Step 2 of 2") < texts.index("complete")
    workers = [w["id"] for w in vast.world.snapshot()["workers"]]
    for worker_id in workers:
        assert texts.count(f"worker {worker_id} rejoined") == 1
    assert "8/8" in str(bot.latest(proposal)["blocks"])
    statuses = Counter(call["status"] for call in slack.calls("chat.postMessage"))
    assert statuses[429] == 3
    assert statuses[500] == 2


def test_permanent_slack_error_reported_to_alert_channel(start_bot, qwen, slack):
    slack.missing_channels.add(CHANNEL)
    bot = start_bot(ROLLCALL_ALERT_CHANNEL="C0ALERTS")
    bot.driver.command("/rollout", f"propose qwen-chat MODEL_NAME={NEW_MODEL}", user="U0ALICE", channel=CHANNEL)
    note = wait_until(lambda: next(iter(slack.messages("C0ALERTS")), None), message="the delivery alert")
    assert "could not post to <#C0DEPLOYS>: `channel_not_found`" in note["text"]
    assert bot.store.db.execute("select state, error from outbox where key = 'proposal:1'").fetchall() == [
        ("failed", "channel_not_found")
    ]


def test_vast_faults_do_not_fail_rollout(start_bot, qwen, vast, slack):
    vast.world.set_config({"faults": {"rate": 0.3, "kinds": ["429", "503", "timeout"], "timeout_seconds": 0.6}})
    bot = start_bot(ROLLCALL_VAST_TIMEOUT="0.3")
    proposal = bot.propose(f"qwen-chat MODEL_NAME={NEW_MODEL}")
    bot.click(proposal, "approve", user="U0BOB")
    wait_until(lambda: bot.store.proposal(1)["status"] == "completed", timeout=60, message="completion")
    wait_until(lambda: bot.store.outbox() == [], timeout=20, message="every message delivered")
    assert vast.world.counters["template_saves"] == 1
    assert vast.world.counters["workergroup_updates"] == 1
    texts = "\n".join(reply["text"] for reply in thread(slack, proposal))
    assert "complete" in texts


def test_unreachable_warning_and_recovery_once(start_bot, qwen, vast, slack):
    bot = start_bot(ROLLCALL_VAST_ATTEMPTS="1")
    proposal = start_rollout(bot)
    wait_until(
        lambda: bot.store.rollout_for_proposal(1) and bot.store.rollout_for_proposal(1)["phase"] == "rolling",
        message="rolling",
    )
    vast.world.fail_next("/get_workergroup_workers/", "503", count=8)
    wait_until(lambda: bot.store.proposal(1)["status"] == "completed", timeout=40, message="completion")
    wait_until(lambda: bot.store.outbox() == [], timeout=20, message="every message delivered")
    texts = [reply["text"] for reply in thread(slack, proposal)]
    assert len([text for text in texts if "Vast API unreachable since" in text]) == 1
    assert len([text for text in texts if "Vast API answers again" in text]) == 1
    warning = next(i for i, text in enumerate(texts) if "unreachable" in text)
    recovery = next(i for i, text in enumerate(texts) if "answers again" in text)
    assert warning < recovery


def test_bot_spaces_calls_under_rate_limit(start_bot, qwen, vast, caplog):
    vast.world.set_config({"rate_limit_seconds": 0.2})
    bot = start_bot(ROLLCALL_VAST_MIN_INTERVAL="0.25", ROLLCALL_POLL_SECONDS="0.1")
    start_rollout(bot)
    wait_until(lambda: bot.store.proposal(1)["status"] == "completed", timeout=60, message="completion")
    assert "HTTP 429" not in caplog.text


def test_bot_backs_off_when_rate_limited(start_bot, qwen, vast, caplog):
    vast.world.set_config({"rate_limit_seconds": 0.2})
    bot = start_bot(ROLLCALL_VAST_MIN_INTERVAL="0", ROLLCALL_VAST_BACKOFF="0.1", ROLLCALL_POLL_SECONDS="0.05")
    start_rollout(bot)
    wait_until(lambda: bot.store.proposal(1)["status"] == "completed", timeout=60, message="completion")
    assert "HTTP 429: API requests too frequent" in caplog.text


def test_proposal_in_channel_without_bot_is_withdrawn(start_bot, qwen, slack):
    slack.outside_channels.add(CHANNEL)
    bot = start_bot()
    bot.driver.command("/rollout", f"propose qwen-chat MODEL_NAME={NEW_MODEL}", user="U0ALICE", channel=CHANNEL)
    reply = wait_until(lambda: next(iter(slack.responses()), None), message="the reply")
    assert "could not post proposal #1 in this channel (`not_in_channel`)" in reply["text"]
    assert "/invite @rollcall" in reply["text"]
    assert bot.store.proposal(1)["status"] == "cancelled"
