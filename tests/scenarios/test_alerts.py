"""When a rollout goes wrong: stuck workers, capacity, abort, rollback and keep waiting."""

import re
from collections import Counter

from tests.conftest import CHANNEL, wait_until

NEW_MODEL = "Qwen/Qwen3-14B"


def alerts(slack, channel=CHANNEL):
    return [message for message in slack.messages(channel) if ":rotating_light:" in message["text"]]


def wait_alert(slack, fragment, timeout=20):
    return wait_until(
        lambda: next((message for message in alerts(slack) if fragment in message["text"]), None),
        timeout=timeout,
        message=f"an alert with {fragment!r}",
    )


def counters(vast):
    return vast.world.snapshot()["counters"]


def group_of(vast, endpoint):
    group_id = endpoint.workergroup_ids[0]
    return next(group for group in vast.world.snapshot()["workergroups"] if group["id"] == group_id)


def worker_list_calls(vast):
    calls = counters(vast)["calls"]
    return sum(count for route, count in calls.items() if "workergroup_workers" in route)


def start_rollout(bot, text=f"qwen-chat MODEL_NAME={NEW_MODEL}"):
    proposal = bot.propose(text)
    bot.click(proposal, "approve", user="U0BOB")
    return proposal


def test_hung_model_one_stuck_alert_per_worker(start_bot, qwen, vast, slack):
    vast.world.hang_models.add(NEW_MODEL)
    bot = start_bot(ROLLCALL_STUCK_MINUTES="0.01")
    start_rollout(bot)
    wait_alert(slack, "has been in MODEL_LOADING")
    hung = {w["id"] for w in vast.world.snapshot()["workers"] if w["status"] == "MODEL_LOADING"}
    # Let at least 20 more polls pass: the alerts must not repeat.
    polls = worker_list_calls(vast)
    wait_until(lambda: worker_list_calls(vast) >= polls + 20, message="more polls")
    wait_until(
        lambda: sum(m["text"].count("has been in MODEL_LOADING") for m in alerts(slack)) >= len(hung),
        message="an alert per hung worker",
    )
    stuck = Counter(
        int(number)
        for message in alerts(slack)
        for number in re.findall(r"worker (\d+) has been in MODEL_LOADING", message["text"])
    )
    assert set(stuck) == hung
    assert all(count == 1 for count in stuck.values())
    assert "<@U0ALICE>" in alerts(slack)[0]["text"]
    assert "<@U0BOB>" in alerts(slack)[0]["text"]
    assert {"Abort", "Roll back", "Keep waiting"} <= {
        element["text"]["text"] for element in alerts(slack)[0]["blocks"][-1]["elements"]
    }


def test_timeout_marks_rollout_failed(start_bot, qwen, vast, slack):
    vast.world.hang_models.add(NEW_MODEL)
    bot = start_bot(ROLLCALL_ROLLOUT_TIMEOUT_MINUTES="0.03")
    start_rollout(bot)
    alert = wait_alert(slack, "did not finish within 0.03 minutes and is marked failed")
    wait_until(lambda: bot.store.rollout_for_proposal(1)["status"] == "failed", message="failed rollout")
    assert bot.store.proposal(1)["status"] == "failed"
    assert [element["text"]["text"] for element in alert["blocks"][-1]["elements"]] == ["Roll back"]


def test_capacity_alert_shows_before_and_now(start_bot, vast, slack):
    vast.world.add_endpoint("qwen-chat", workers=6, model="Qwen/Qwen3-8B", parallel_updates=6)
    bot = start_bot()
    start_rollout(bot)
    alert = wait_alert(slack, "critical")
    assert "ready capacity fell to 0 IDLE workers (6 before the rollout; the minimum is 1)" in alert["text"]
    wait_until(lambda: bot.store.proposal(1)["status"] == "completed", timeout=30, message="completion")
    assert len([m for m in alerts(slack) if "critical" in m["text"]]) == 1


def test_abort_cancels_once(start_bot, qwen, vast, slack):
    vast.world.hang_models.add(NEW_MODEL)
    bot = start_bot(ROLLCALL_STUCK_MINUTES="0.01")
    proposal = start_rollout(bot)
    alert = wait_alert(slack, "MODEL_LOADING")
    bot.driver.click(alert, action_id="alert_abort", user="U0CAROL")
    wait_until(lambda: bot.store.rollout_for_proposal(1)["status"] == "aborted", message="aborted")
    assert counters(vast)["cancels"] == 1
    assert bot.store.proposal(1)["status"] == "aborted"
    thread = wait_until(
        lambda: next((m for m in slack.thread(CHANNEL, proposal["ts"]) if "aborted by <@U0CAROL>" in m["text"]), None),
        message="the abort note",
    )
    assert "already run the new configuration" in thread["text"] or "No worker had switched" in thread["text"]
    wait_until(lambda: "Aborted by <@U0CAROL>" in str(bot.latest(alert)["blocks"]), message="alert closed")
    assert "actions" not in [block["type"] for block in bot.latest(alert)["blocks"]]

    bot.driver.click(alert, action_id="alert_abort", user="U0DAVE")
    wait_until(
        lambda: any("is not running" in e["text"] for e in slack.ephemerals() if e.get("user") == "U0DAVE"),
        message="second abort refused",
    )
    assert counters(vast)["cancels"] == 1


def test_rollback_returns_to_exact_previous_configuration(start_bot, qwen, vast, slack):
    vast.world.fail_models[NEW_MODEL] = "vLLM: CUDA out of memory"
    before = group_of(vast, qwen)
    bot = start_bot()
    start_rollout(bot, f'qwen-chat MODEL_NAME={NEW_MODEL} search="gpu_ram>=48 num_gpus=1 verified=True"')
    alert = wait_alert(slack, "went into ERROR")
    assert "vLLM: CUDA out of memory" in alert["text"]

    bot.driver.click(alert, action_id="alert_rollback", user="U0ALICE")
    wait_until(lambda: bot.store.proposal(2), message="the rollback proposal")
    assert bot.store.rollout_for_proposal(1)["status"] == "aborted"
    rollback = wait_until(
        lambda: next((m for m in slack.messages(CHANNEL) if m["text"].startswith("Rollback #2")), None),
        message="the rollback message",
    )
    bot.click(rollback, "approve", user="U0BOB")
    wait_until(lambda: bot.store.proposal(2)["status"] == "completed", timeout=40, message="rollback completion")

    after = group_of(vast, qwen)
    assert after["template_hash"] == before["template_hash"]
    assert after["search_query"] == before["search_query"]
    workers = [w for w in vast.world.snapshot()["workers"] if w["workergroup_id"] == after["id"]]
    assert workers and all(w["template_hash"] == before["template_hash"] for w in workers)
    assert all(w["status"] == "IDLE" for w in workers)


def test_rollback_without_approval_starts_at_once(start_bot, qwen, vast, slack):
    vast.world.fail_models[NEW_MODEL] = "vLLM: CUDA out of memory"
    before = group_of(vast, qwen)
    bot = start_bot(ROLLCALL_ROLLBACK_APPROVALS="0")
    start_rollout(bot)
    alert = wait_alert(slack, "went into ERROR")
    bot.driver.click(alert, action_id="alert_rollback", user="U0CAROL")
    wait_until(lambda: bot.store.proposal(2) and bot.store.rollout_for_proposal(2), message="rollback rollout")
    wait_until(lambda: bot.store.proposal(2)["status"] == "completed", timeout=40, message="rollback completion")
    assert group_of(vast, qwen)["template_hash"] == before["template_hash"]
    message = next(m for m in slack.messages(CHANNEL) if m["text"].startswith("Rollback #2"))
    wait_until(lambda: "Started at once by* <@U0CAROL>" in str(bot.latest(message)["blocks"]), message="who started")


def test_keep_waiting_silences_alert(start_bot, qwen, vast, slack):
    vast.world.hang_models.add(NEW_MODEL)
    bot = start_bot(ROLLCALL_STUCK_MINUTES="0.01")
    start_rollout(bot)
    alert = wait_alert(slack, "MODEL_LOADING")
    bot.driver.click(alert, action_id="alert_keep_waiting", user="U0DAVE")
    wait_until(lambda: "<@U0DAVE> chose to keep waiting" in str(bot.latest(alert)["blocks"]), message="ack shown")
    acknowledged = bot.store.db.execute("select acknowledged_by from alerts where cause = 'stuck'").fetchall()
    assert ("U0DAVE",) in acknowledged
    assert bot.store.rollout_for_proposal(1)["status"] == "running"


def test_cancel_command_aborts_running(start_bot, qwen, vast, slack):
    vast.world.hang_models.add(NEW_MODEL)
    bot = start_bot()
    start_rollout(bot)
    wait_until(
        lambda: bot.store.rollout_for_proposal(1) and bot.store.rollout_for_proposal(1)["phase"] == "rolling",
        message="rolling",
    )
    bot.driver.command("/rollout", "cancel 1", user="U0CAROL", channel=CHANNEL)
    wait_until(lambda: bot.store.rollout_for_proposal(1)["status"] == "aborted", message="aborted")
    assert counters(vast)["cancels"] == 1


def test_rollback_command_with_nothing_to_roll_back(start_bot, qwen, slack):
    bot = start_bot()
    bot.driver.command("/rollout", "rollback qwen-chat", user="U0ALICE", channel=CHANNEL)
    wait_until(lambda: any("no finished rollout" in r["text"] for r in slack.responses()), message="refusal")


def test_abort_limited_to_proposer_and_approvers(start_bot, qwen, vast, slack):
    vast.world.hang_models.add(NEW_MODEL)
    bot = start_bot(ROLLCALL_STUCK_MINUTES="0.01", ROLLCALL_APPROVERS="U0BOB")
    start_rollout(bot)
    alert = wait_alert(slack, "MODEL_LOADING")
    for action in ("alert_abort", "alert_rollback", "alert_keep_waiting"):
        bot.driver.click(alert, action_id=action, user="U0DAVE")
    wait_until(
        lambda: len([e for e in slack.ephemerals() if e.get("user") == "U0DAVE" and "may abort" in e["text"]]) == 3,
        message="three refusals",
    )
    bot.driver.command("/rollout", "cancel 1", user="U0DAVE", channel=CHANNEL)
    wait_until(lambda: any("may abort" in r["text"] for r in slack.responses()), message="cancel refused")
    assert bot.store.rollout_for_proposal(1)["status"] == "running"
    assert counters(vast)["cancels"] == 0
    bot.driver.click(alert, action_id="alert_abort", user="U0ALICE")
    wait_until(lambda: bot.store.rollout_for_proposal(1)["status"] == "aborted", message="proposer's abort")


def test_rollback_clicked_twice_proposes_once(start_bot, qwen, vast, slack):
    vast.world.fail_models[NEW_MODEL] = "vLLM: CUDA out of memory"
    bot = start_bot()
    start_rollout(bot)
    alert = wait_alert(slack, "went into ERROR")
    bot.driver.click(alert, action_id="alert_rollback", user="U0ALICE")
    wait_until(lambda: bot.store.proposal(2), message="the rollback proposal")
    bot.driver.click(alert, action_id="alert_rollback", user="U0ALICE")
    wait_until(
        lambda: any("Rollback proposal #2 for rollout #1 is already open" in e["text"] for e in slack.ephemerals()),
        message="second click refused",
    )
    assert bot.store.proposal(3) is None


def test_keep_waiting_on_errors_silences_later_errors(start_bot, vast, slack):
    vast.world.add_endpoint("qwen-chat", workers=8, model="Qwen/Qwen3-8B", parallel_updates=1)
    vast.world.fail_models[NEW_MODEL] = "vLLM: CUDA out of memory"
    bot = start_bot()
    start_rollout(bot)
    alert = wait_alert(slack, "went into ERROR")
    bot.driver.click(alert, action_id="alert_keep_waiting", user="U0BOB")
    wait_until(lambda: "no more alerts about workers in ERROR" in str(bot.latest(alert)["blocks"]), message="ack")
    errors_before = sum(1 for w in vast.world.snapshot()["workers"] if w["status"] == "ERROR")
    wait_until(
        lambda: sum(1 for w in vast.world.snapshot()["workers"] if w["status"] == "ERROR") > errors_before + 1,
        timeout=20,
        message="more workers in ERROR",
    )
    wait_until(lambda: bot.store.outbox() == [], message="delivery")
    assert len([m for m in alerts(slack) if "went into ERROR" in m["text"]]) == 1


def test_rollback_command_respects_proposers(start_bot, qwen, vast, slack):
    vast.world.fail_models[NEW_MODEL] = "vLLM: CUDA out of memory"
    bot = start_bot(ROLLCALL_PROPOSERS="U0ALICE")
    proposal = bot.propose(f"qwen-chat MODEL_NAME={NEW_MODEL}")
    bot.click(proposal, "approve", user="U0BOB")
    wait_alert(slack, "went into ERROR")
    bot.driver.command("/rollout", "cancel 1", user="U0ALICE", channel=CHANNEL)
    wait_until(lambda: bot.store.rollout_for_proposal(1)["status"] == "aborted", message="abort")
    bot.driver.command("/rollout", "rollback qwen-chat", user="U0DAVE", channel=CHANNEL)
    wait_until(lambda: any("may propose a rollback" in r["text"] for r in slack.responses()), message="refusal")
    assert bot.store.proposal(2) is None
