"""A 300-worker rollout: bounded Slack and Vast traffic per poll, messages within Slack's limits."""

import math

from tests.conftest import CHANNEL, wait_until

WORKERS = 300


def test_large_group_rollout_stays_bounded(start_bot, vast, slack):
    vast.world.add_endpoint("qwen-chat", workers=WORKERS, inactive=30, model="Qwen/Qwen3-8B", parallel_updates=100)
    bot = start_bot(ROLLCALL_POLL_SECONDS="0.3")
    proposal = bot.propose("qwen-chat MODEL_NAME=Qwen/Qwen3-14B")
    bot.click(proposal, "approve", user="U0BOB")
    wait_until(lambda: bot.store.proposal(1)["status"] == "completed", timeout=90, message="completion")
    wait_until(lambda: bot.store.outbox() == [], message="every message delivered")

    calls = vast.world.snapshot()["counters"]["calls"]
    polls = sum(count for route, count in calls.items() if "workergroup_workers" in route)
    instance_pages = sum(count for route, count in calls.items() if "/api/v1/instances" in route)
    single_instances = sum(count for route, count in calls.items() if "/api/v0/instances" in route)
    assert polls > 0
    assert single_instances == 0, calls
    # Workers are looked up when first seen and when they settle again, 100 to a page, so the pages
    # add up to at most two per 100 workers plus one partial page per poll.
    assert instance_pages <= 2 * math.ceil(WORKERS / 100) + polls

    replies = [m for m in slack.thread(CHANNEL, proposal["ts"]) if m["ts"] != proposal["ts"]]
    poll_replies = [
        m for m in replies if (m.get("metadata") or {}).get("event_payload", {}).get("key", "").count(":poll:")
    ]
    assert len(poll_replies) <= polls
    edits = len(slack.message(CHANNEL, proposal["ts"])["edits"])
    assert edits <= polls + 4
    for reply in replies:
        assert len(reply["blocks"]) <= 50
        for block in reply["blocks"]:
            assert len((block.get("text") or {}).get("text", "")) <= 3000
    assert any(" more rejoined" in reply["text"] for reply in poll_replies)
    assert f"{WORKERS}/{WORKERS}" in str(bot.latest(proposal)["blocks"])
