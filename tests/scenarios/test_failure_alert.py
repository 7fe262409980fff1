"""A template whose model cannot load sends workers to ERROR and raises an alert."""

import re

from tests.conftest import CHANNEL, wait_until

FAILURE = "vLLM failed to load Qwen/Qwen3-14B: CUDA out of memory"


def test_error_worker_raises_alert(start_bot, qwen, vast, slack):
    vast.world.fail_models["Qwen/Qwen3-14B"] = FAILURE
    bot = start_bot()
    proposal = bot.propose("qwen-chat MODEL_NAME=Qwen/Qwen3-14B")
    bot.click(proposal, "approve", user="U0BOB")

    alert = wait_until(
        lambda: next((m for m in slack.messages(CHANNEL) if ":rotating_light:" in m["text"]), None),
        timeout=30,
        message="an alert",
    )
    assert "<@U0ALICE>" in alert["text"]
    assert "<@U0BOB>" in alert["text"]
    assert "went into ERROR" in alert["text"]
    assert "qwen-chat" in alert["text"]
    assert FAILURE in alert["text"]
    assert not alert.get("thread_ts")
    named = {int(number) for number in re.findall(r"\b(44\d\d)\b", alert["text"])}
    assert named and named <= qwen_worker_ids(vast, qwen)


def test_alert_goes_to_alert_channel(start_bot, qwen, vast, slack):
    vast.world.fail_models["Qwen/Qwen3-14B"] = FAILURE
    bot = start_bot(ROLLCALL_ALERT_CHANNEL="C0ALERTS")
    proposal = bot.propose("qwen-chat MODEL_NAME=Qwen/Qwen3-14B")
    bot.click(proposal, "approve", user="U0BOB")
    alert = wait_until(lambda: next(iter(slack.messages("C0ALERTS")), None), timeout=30, message="an alert")
    assert "went into ERROR" in alert["text"]
    assert "rollout thread" in alert["text"]


def qwen_worker_ids(vast, endpoint):
    return {w["id"] for w in vast.world.snapshot()["workers"] if w["workergroup_id"] == endpoint.workergroup_ids[0]}
