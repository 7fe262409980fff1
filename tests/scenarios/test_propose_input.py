"""Bad input to /rollout gets an ephemeral message that names the problem, never a post."""

import pytest

from tests.conftest import CHANNEL, wait_until


@pytest.fixture
def bot(start_bot, qwen, vast):
    vast.world.add_endpoint("llama-batch", workers=2, model="meta-llama/Llama-3.1-8B")
    endpoint_id = next(e["id"] for e in vast.world.snapshot()["endpoints"] if e["endpoint_name"] == "llama-batch")
    vast.world.add_workergroup(endpoint_id, workers=2)
    return start_bot()


def reply_to(bot, text, user="U0ALICE"):
    before = len(bot.slack.responses())
    response = bot.driver.command("/rollout", text, user=user, channel=CHANNEL)
    assert response.status_code == 200
    wait_until(lambda: len(bot.slack.responses()) > before, message=f"a reply to {text!r}")
    reply = bot.slack.responses()[-1]
    assert reply.get("response_type", "ephemeral") == "ephemeral"
    return reply["text"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "propose nope MODEL_NAME=x",
            "Endpoint `nope` was not found in Vast. Known endpoints: `qwen-chat`, `llama-batch`",
        ),
        ("propose llama-batch MODEL_NAME=x", "has 2 worker groups; name one: `llama-batch/"),
        ("propose qwen-chat/999 MODEL_NAME=x", "Worker group 999 is not part of endpoint `qwen-chat`"),
        ("propose qwen-chat MODEL_NAME=Qwen/Qwen3-8B", "This proposal changes nothing"),
        ('propose qwen-chat MODEL_NAME="Qwen', "Cannot read the arguments"),
        ("propose qwen-chat model=x", "`model` is not an option"),
        ("propose qwen-chat search=fast", "Invalid search filter"),
        ("frobnicate", "`frobnicate` is not a /rollout command"),
    ],
)
def test_bad_proposal_gets_ephemeral_explanation(bot, text, expected):
    reply = reply_to(bot, text)
    assert expected in reply
    assert "Traceback" not in reply
    assert bot.slack.messages(CHANNEL) == []
    assert bot.store.proposals() == []


def test_usage_shown_with_parse_errors(bot):
    reply = reply_to(bot, "propose qwen-chat MODEL_NAME")
    assert "Usage: `/rollout propose ENDPOINT[/GROUP_ID]" in reply


def test_user_text_cannot_ping_channel(bot):
    proposal = bot.propose('qwen-chat MODEL_NAME="<!channel> x" reason="<!here> & <https://evil|click>"')
    body = str(proposal["blocks"]) + proposal["text"]
    assert "<!channel>" not in body
    assert "<!here>" not in body
    assert "<https://evil" not in body
    assert "&lt;!channel&gt;" in body


def test_help_lists_commands(bot):
    reply = reply_to(bot, "help")
    for command in ("propose", "status", "list", "history", "cancel", "rollback", "help"):
        assert f"/rollout {command}" in reply


def test_status_shows_live_configuration(bot):
    reply = reply_to(bot, "status qwen-chat")
    assert "Qwen/Qwen3-8B" in reply
    assert "vllm/vllm-openai:v0.11.0" in reply
    assert "gpu_ram&gt;=24" in reply
    assert "workers:" in reply


def test_status_unknown_endpoint(bot):
    assert "Endpoint `nope` was not found" in reply_to(bot, "status nope")
