"""Who may approve, and what clicks on closed proposals do."""

from tests.conftest import CHANNEL, wait_until


def texts_for(bot, user):
    return [entry["text"] for entry in bot.slack.ephemerals() if entry.get("user") == user]


def wait_ephemeral(bot, user, fragment):
    return wait_until(
        lambda: any(fragment in text for text in texts_for(bot, user)), message=f"{fragment!r} for {user}"
    )


def test_proposer_approval_does_not_start(start_bot, qwen, vast):
    bot = start_bot()
    proposal = bot.propose("qwen-chat MODEL_NAME=Qwen/Qwen3-14B")
    bot.click(proposal, "approve", user="U0ALICE")
    wait_ephemeral(bot, "U0ALICE", "You proposed #1, so your approval does not count")
    assert bot.store.proposal(1)["status"] == "pending"
    assert bot.store.decisions(1) == []
    assert vast.world.snapshot()["counters"]["template_saves"] == 0


def test_second_approval_needs_another_person(start_bot, qwen):
    bot = start_bot(ROLLCALL_APPROVALS_REQUIRED="2")
    proposal = bot.propose("qwen-chat MODEL_NAME=Qwen/Qwen3-14B")
    bot.click(proposal, "approve", user="U0BOB")
    wait_until(lambda: "1 of 2" in str(bot.latest(proposal)["blocks"]), message="1 of 2 approvals")
    bot.click(proposal, "approve", user="U0BOB")
    wait_ephemeral(bot, "U0BOB", "You already approved #1")
    assert [row["user_id"] for row in bot.store.decisions(1)] == ["U0BOB"]
    assert bot.store.proposal(1)["status"] == "pending"


def test_reject_asks_reason_and_shows_who(start_bot, qwen, vast):
    bot = start_bot()
    proposal = bot.propose("qwen-chat MODEL_NAME=Qwen/Qwen3-14B")
    bot.click(proposal, "reject", user="U0CAROL")
    view = wait_until(lambda: next(iter(bot.slack.views()), None), message="the rejection modal")
    assert bot.store.proposal(1)["status"] == "pending"
    response = bot.driver.submit_view(view, {"reason": {"value": "not during the launch"}}, user="U0CAROL")
    assert response.status_code == 200
    wait_until(lambda: "Rejected by* <@U0CAROL>" in str(bot.latest(proposal)["blocks"]), message="rejection shown")
    assert "not during the launch" in str(bot.latest(proposal)["blocks"])
    assert bot.store.proposal(1)["status"] == "rejected"
    assert "actions" not in [block["type"] for block in bot.latest(proposal)["blocks"]]
    assert bot.store.decisions(1, "reject")[0]["reason"] == "not during the launch"

    bot.driver.click(proposal, action_id="approve", user="U0BOB")
    wait_ephemeral(bot, "U0BOB", "Proposal #1 is no longer open (rejected); nothing was changed.")
    assert bot.store.rollout_for_proposal(1) is None
    assert vast.world.snapshot()["counters"]["template_saves"] == 0


def test_approved_message_names_approver(start_bot, qwen):
    bot = start_bot()
    proposal = bot.propose("qwen-chat MODEL_NAME=Qwen/Qwen3-14B")
    bot.click(proposal, "approve", user="U0BOB")
    wait_until(lambda: "Approved by* <@U0BOB>" in str(bot.latest(proposal)["blocks"]), message="approver shown")
    wait_until(lambda: bot.store.proposal(1)["status"] == "completed", timeout=30, message="completion")
    bot.driver.click(proposal, action_id="approve", user="U0CAROL")
    wait_ephemeral(bot, "U0CAROL", "is no longer open (completed)")


def test_forged_signature_is_rejected(start_bot, qwen):
    bot = start_bot()
    response = bot.driver.command("/rollout", "propose qwen-chat MODEL_NAME=x", channel=CHANNEL, bad_signature=True)
    assert response.status_code == 401
    stale = bot.driver.command("/rollout", "propose qwen-chat MODEL_NAME=x", channel=CHANNEL, timestamp=1_000_000)
    assert stale.status_code == 401
    assert bot.store.proposals() == []


def test_healthz_answers(start_bot):
    import httpx

    bot = start_bot()
    assert httpx.get(f"http://127.0.0.1:{bot.server.port}/healthz").status_code == 200


def test_malformed_requests_get_400(start_bot):
    import httpx

    bot = start_bot()
    url = f"http://127.0.0.1:{bot.server.port}/slack/events"
    bad_timestamp = httpx.post(
        url, content=b"command=/rollout", headers={"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=00"}
    )
    assert bad_timestamp.status_code == 401
    not_utf8 = httpx.post(
        url, content=b"\xff\xfe\xfd", headers={"X-Slack-Request-Timestamp": "1", "X-Slack-Signature": "v0=00"}
    )
    assert not_utf8.status_code == 401


def test_huge_ids_are_not_found(start_bot, qwen, slack):
    bot = start_bot()
    bot.driver.command("/rollout", "history 12345678901234567890123", user="U0ALICE", channel=CHANNEL)
    wait_until(lambda: any("does not exist" in r["text"] for r in slack.responses()), message="the reply")
