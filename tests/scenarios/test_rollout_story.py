"""The whole story through the real app over HTTP: propose, approve, both steps, progress."""

from bot.templates import parse_env
from tests.conftest import CHANNEL, wait_until


def workergroup(vast, group_id):
    return next(group for group in vast.world.snapshot()["workergroups"] if group["id"] == group_id)


def test_rollout_completes_after_teammate_approval(start_bot, qwen, vast, slack):
    bot = start_bot()
    proposal = bot.propose('qwen-chat MODEL_NAME=Qwen/Qwen3-14B reason="bigger model"')
    assert "Proposal #1" in proposal["text"]

    bot.click(proposal, "approve", user="U0ALICE")
    wait_until(lambda: any("does not count" in text for text in bot.ephemeral_texts("U0ALICE")), message="refusal")
    assert bot.store.proposal(1)["status"] == "pending"
    assert bot.store.rollout_for_proposal(1) is None

    bot.click(proposal, "approve", user="U0BOB")
    wait_until(lambda: bot.store.proposal(1)["status"] == "completed", timeout=30, message="completion")
    wait_until(lambda: bot.store.outbox() == [], message="every message delivered")
    assert "8/8" in str(bot.latest(proposal)["blocks"])
    assert "Completed" in str(bot.latest(proposal)["blocks"])

    group_id = qwen.workergroup_ids[0]
    group = workergroup(vast, group_id)
    template = next(t for t in vast.world.snapshot()["templates"] if t["hash_id"] == group["template_hash"])
    assert parse_env(template["env"]).variables["MODEL_NAME"] == "Qwen/Qwen3-14B"
    workers = [w for w in vast.world.snapshot()["workers"] if w["workergroup_id"] == group_id]
    assert len(workers) == 8
    assert all(w["template_hash"] == group["template_hash"] and w["status"] == "IDLE" for w in workers)

    replies = slack.thread(CHANNEL, proposal["ts"])
    text = "\n".join(reply["text"] for reply in replies)
    for worker in workers:
        assert f"worker {worker['id']} rejoined" in text
    assert "Step 1 of 2" in text
    assert "Step 2 of 2" in text
    assert replies[-1]["reply_broadcast"]
    assert "complete" in replies[-1]["text"]
