"""Approval rules a team can rely on: form, approvers, expiry, drift, locks, history."""

import threading

import httpx
import pytest

from bot.templates import parse_env
from tests.conftest import CHANNEL, VAST_KEY, wait_until


def ephemeral_texts(bot, user):
    return [entry["text"] for entry in bot.slack.ephemerals() if entry.get("user") == user]


def wait_ephemeral(bot, user, fragment):
    return wait_until(
        lambda: next((text for text in ephemeral_texts(bot, user) if fragment in text), None),
        message=f"{fragment!r} for {user}",
    )


def command_reply(bot, text, user="U0ALICE"):
    before = len(bot.slack.responses())
    assert bot.driver.command("/rollout", text, user=user, channel=CHANNEL).status_code == 200
    wait_until(lambda: len(bot.slack.responses()) > before, message=f"a reply to {text!r}")
    return bot.slack.responses()[-1]["text"]


def blocks_text(bot, message):
    return str(bot.latest(message)["blocks"])


def counters(vast):
    return vast.world.snapshot()["counters"]


def change_group_behind_bot(vast, qwen, search):
    group_id = qwen.workergroup_ids[0]
    response = httpx.put(
        f"{vast.url}/api/v0/autojobs/{group_id}/",
        json={"endpoint_id": qwen.id, "search_params": search},
        headers={"Authorization": f"Bearer {VAST_KEY}"},
    )
    assert response.status_code == 200, response.text


# Form ---------------------------------------------------------------------------------------


def open_form(bot):
    assert bot.driver.command("/rollout", "propose", user="U0ALICE", channel=CHANNEL).status_code == 200
    return wait_until(lambda: next(iter(bot.slack.views()), None), message="the proposal form")


def test_form_lists_endpoints_from_vast(start_bot, qwen):
    bot = start_bot()
    view = open_form(bot)
    select = next(block for block in view["blocks"] if block["block_id"] == "target")["element"]
    assert [option["value"] for option in select["options"]] == [f"qwen-chat/{qwen.workergroup_ids[0]}"]


def test_form_shows_errors_next_to_fields(start_bot, qwen):
    bot = start_bot()
    view = open_form(bot)
    target = {"type": "static_select", "selected_option": {"value": f"qwen-chat/{qwen.workergroup_ids[0]}"}}
    response = bot.driver.submit_view(
        view,
        {"target": {"value": target}, "image": {"value": "Bad Image!"}, "env": {"value": "1BAD=x"}},
        user="U0ALICE",
    )
    assert response.status_code == 200
    body = response.json()
    assert body["response_action"] == "errors"
    assert "is not a valid image" in body["errors"]["image"]
    assert "not a valid environment variable name" in body["errors"]["env"]
    assert bot.store.proposals() == []


def test_form_no_change_error_on_target(start_bot, qwen):
    bot = start_bot()
    view = open_form(bot)
    target = {"type": "static_select", "selected_option": {"value": f"qwen-chat/{qwen.workergroup_ids[0]}"}}
    response = bot.driver.submit_view(view, {"target": {"value": target}}, user="U0ALICE")
    assert "changes nothing" in response.json()["errors"]["target"]


def test_form_submission_posts_proposal(start_bot, qwen):
    bot = start_bot()
    view = open_form(bot)
    target = {"type": "static_select", "selected_option": {"value": f"qwen-chat/{qwen.workergroup_ids[0]}"}}
    response = bot.driver.submit_view(
        view,
        {
            "target": {"value": target},
            "model": {"value": "Qwen/Qwen3-14B"},
            "vllm_args": {"value": "--max-model-len 16384"},
            "env": {"value": "HF_HUB_OFFLINE=1\n-UNUSED"},
            "reason": {"value": "from the form"},
        },
        user="U0ALICE",
    )
    assert response.status_code == 200
    assert response.text in ("", "null") or response.json().get("response_action") != "errors"
    message = wait_until(lambda: next(iter(bot.slack.messages(CHANNEL)), None), message="the proposal")
    assert "Proposal #1" in message["text"]
    proposal = bot.store.proposal(1)
    assert proposal["change"]["env_set"] == {
        "MODEL_NAME": "Qwen/Qwen3-14B",
        "VLLM_ARGS": "--max-model-len 16384",
        "HF_HUB_OFFLINE": "1",
    }
    assert proposal["reason"] == "from the form"


# Approval rules -----------------------------------------------------------------------------


def test_two_approvals_with_user_group(start_bot, qwen):
    bot = start_bot(ROLLCALL_APPROVALS_REQUIRED="2", ROLLCALL_APPROVERS="S0SRE,U0BOB")
    proposal = bot.propose("qwen-chat MODEL_NAME=Qwen/Qwen3-14B")

    bot.click(proposal, "approve", user="U0ERIN")
    assert "may approve proposals" in wait_ephemeral(bot, "U0ERIN", "may approve")
    assert "<!subteam^S0SRE>" in wait_ephemeral(bot, "U0ERIN", "may approve")
    bot.click(proposal, "approve", user="U0ALICE")
    wait_ephemeral(bot, "U0ALICE", "does not count")
    assert bot.store.decisions(1) == []

    bot.click(proposal, "approve", user="U0CAROL")
    wait_until(lambda: "1 of 2" in blocks_text(bot, proposal), message="1 of 2")
    assert "<@U0CAROL>" in blocks_text(bot, proposal)
    assert bot.store.rollout_for_proposal(1) is None

    bot.click(proposal, "approve", user="U0BOB")
    wait_until(lambda: bot.store.rollout_for_proposal(1), message="the rollout")
    wait_until(lambda: "Approved by* <@U0CAROL>, <@U0BOB>" in blocks_text(bot, proposal), message="approvers")


def test_approve_button_asks_confirmation(start_bot, qwen):
    bot = start_bot()
    proposal = bot.propose("qwen-chat MODEL_NAME=Qwen/Qwen3-14B")
    actions = next(block for block in proposal["blocks"] if block["type"] == "actions")
    approve = next(element for element in actions["elements"] if element["action_id"] == "approve")
    assert approve["confirm"]["confirm"]["text"] == "Approve"


def test_proposers_restriction(start_bot, qwen):
    bot = start_bot(ROLLCALL_PROPOSERS="U0BOB")
    reply = command_reply(bot, "propose qwen-chat MODEL_NAME=Qwen/Qwen3-14B", user="U0ALICE")
    assert "Only <@U0BOB> may propose changes" in reply
    assert bot.store.proposals() == []


def test_parallel_approvals_start_one_rollout(start_bot, qwen, vast):
    bot = start_bot()
    proposal = bot.latest(bot.propose("qwen-chat MODEL_NAME=Qwen/Qwen3-14B"))
    barrier = threading.Barrier(3)

    def click(user):
        barrier.wait()
        bot.driver.click(proposal, action_id="approve", user=user)

    threads = [threading.Thread(target=click, args=(user,)) for user in ("U0BOB", "U0CAROL", "U0DAVE")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wait_until(lambda: bot.store.proposal(1)["status"] == "completed", timeout=30, message="completion")
    assert len(bot.store.db.execute("select id from rollouts").fetchall()) == 1
    assert counters(vast)["template_saves"] == 1
    assert counters(vast)["workergroup_updates"] == 1


def test_retried_and_double_clicks_record_one_approval(start_bot, qwen):
    bot = start_bot(ROLLCALL_APPROVALS_REQUIRED="2")
    proposal = bot.latest(bot.propose("qwen-chat MODEL_NAME=Qwen/Qwen3-14B"))
    bot.driver.click(proposal, action_id="approve", user="U0BOB")
    bot.driver.click(proposal, action_id="approve", user="U0BOB", retry_num=1)
    bot.driver.click(proposal, action_id="approve", user="U0BOB")
    wait_ephemeral(bot, "U0BOB", "already approved")
    assert [row["user_id"] for row in bot.store.decisions(1)] == ["U0BOB"]
    assert bot.store.proposal(1)["status"] == "pending"


# Expiry, drift, locks -----------------------------------------------------------------------


def test_expiry_survives_restart(start_bot, qwen):
    ttl = "0.0006"  # about 2 seconds
    first = start_bot(ROLLCALL_PROPOSAL_TTL_HOURS=ttl)
    proposal = first.propose("qwen-chat MODEL_NAME=Qwen/Qwen3-14B")
    first.stop()
    second = start_bot(ROLLCALL_PROPOSAL_TTL_HOURS=ttl)
    wait_until(lambda: second.store.proposal(1)["status"] == "expired", timeout=10, message="expiry")
    wait_until(lambda: "Expired" in blocks_text(second, proposal), message="expired message")
    assert "actions" not in [block["type"] for block in second.latest(proposal)["blocks"]]
    second.driver.click(proposal, action_id="approve", user="U0BOB")
    wait_ephemeral(second, "U0BOB", "is no longer open (expired)")


def test_drift_invalidates_on_approval(start_bot, qwen, vast):
    bot = start_bot()
    proposal = bot.propose("qwen-chat MODEL_NAME=Qwen/Qwen3-14B")
    change_group_behind_bot(vast, qwen, "gpu_ram>=48 num_gpus=1 verified=True")
    bot.click(proposal, "approve", user="U0BOB")
    text = wait_ephemeral(bot, "U0BOB", "has since changed")
    assert "search filter: recorded" in text
    wait_until(lambda: "Invalidated" in blocks_text(bot, proposal), message="invalidated message")
    assert "gpu_ram&gt;=48" in blocks_text(bot, proposal)
    assert "propose again" in blocks_text(bot, proposal)
    assert bot.store.proposal(1)["status"] == "invalidated"
    assert counters(vast)["template_saves"] == 0


def test_completion_invalidates_other_pending(start_bot, qwen):
    bot = start_bot()
    first = bot.propose("qwen-chat MODEL_NAME=Qwen/Qwen3-14B")
    second = bot.propose("qwen-chat VLLM_ARGS=--enforce-eager", user="U0CAROL")
    bot.click(first, "approve", user="U0BOB")
    wait_until(lambda: bot.store.proposal(1)["status"] == "completed", timeout=30, message="completion")
    wait_until(lambda: bot.store.proposal(2)["status"] == "invalidated", message="invalidation")
    wait_until(lambda: "rollout of proposal #1 changed the worker group" in blocks_text(bot, second), message="why")


def test_propose_while_running_is_refused(start_bot, qwen, vast):
    vast.world.hang_models.add("Qwen/Qwen3-14B")
    bot = start_bot()
    proposal = bot.propose("qwen-chat MODEL_NAME=Qwen/Qwen3-14B")
    bot.click(proposal, "approve", user="U0BOB")
    wait_until(lambda: bot.store.rollout_for_proposal(1), message="the rollout")
    reply = command_reply(bot, "propose qwen-chat VLLM_ARGS=--enforce-eager", user="U0CAROL")
    assert "Rollout #1 is running on qwen-chat" in reply
    assert "rollout thread" in reply


# Withdraw and history -----------------------------------------------------------------------


def test_cancel_button_only_for_proposer(start_bot, qwen):
    bot = start_bot()
    proposal = bot.propose("qwen-chat MODEL_NAME=Qwen/Qwen3-14B")
    bot.click(proposal, "cancel_proposal", user="U0BOB")
    wait_ephemeral(bot, "U0BOB", "Only <@U0ALICE>, who proposed #1, can cancel it")
    bot.click(proposal, "cancel_proposal", user="U0ALICE")
    wait_until(lambda: bot.store.proposal(1)["status"] == "cancelled", message="cancellation")
    wait_until(lambda: "Cancelled" in blocks_text(bot, proposal), message="cancelled message")


def test_cancel_command(start_bot, qwen):
    bot = start_bot()
    bot.propose("qwen-chat MODEL_NAME=Qwen/Qwen3-14B")
    assert "`twelve` is not a proposal id" in command_reply(bot, "cancel twelve")
    assert "Proposal #9 does not exist" in command_reply(bot, "cancel 9")
    command_reply(bot, "cancel 1")
    assert bot.store.proposal(1)["status"] == "cancelled"
    assert "nothing to cancel" in command_reply(bot, "cancel 1")


def test_list_and_history(start_bot, qwen):
    bot = start_bot()
    proposal = bot.propose("qwen-chat MODEL_NAME=Qwen/Qwen3-14B")
    listing = command_reply(bot, "list")
    assert "qwen-chat" in listing
    assert "Qwen/Qwen3-8B" in listing
    assert "pending: proposal #1" in listing
    bot.click(proposal, "approve", user="U0BOB")
    wait_until(lambda: bot.store.proposal(1)["status"] == "completed", timeout=30, message="completion")
    history = command_reply(bot, "history qwen-chat")
    assert "#1 qwen-chat" in history
    assert "*completed*" in history
    assert "approved by <@U0BOB>" in history
    assert "took" in history
    trail = command_reply(bot, "history 1")
    for step in (
        "proposed by <@U0ALICE>",
        "approved by <@U0BOB>",
        "rollout started",
        "template saved",
        "group updated",
        "rollout completed",
    ):
        assert step in trail


# Hostile input ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["x -e EVIL=1", "x' -e EVIL='1", 'x" --privileged "'])
def test_injected_flags_stay_one_value(start_bot, qwen, vast, value):
    bot = start_bot()
    quoted = value.replace("\\", "\\\\").replace('"', '\\"')
    proposal = bot.propose(f'qwen-chat "MODEL_NAME={quoted}"')
    assert bot.store.proposal(1)["change"]["env_set"] == {"MODEL_NAME": value}
    bot.click(proposal, "approve", user="U0BOB")
    wait_until(
        lambda: bot.store.rollout_for_proposal(1) and bot.store.rollout_for_proposal(1)["new_template_hash"],
        message="the saved template",
    )
    new_hash = bot.store.rollout_for_proposal(1)["new_template_hash"]
    template = next(t for t in vast.world.snapshot()["templates"] if t["hash_id"] == new_hash)
    variables = parse_env(template["env"]).variables
    assert variables["MODEL_NAME"] == value
    assert "EVIL" not in variables
    assert "--privileged" not in parse_env(template["env"]).other_args
