"""The rollout story with the real bot process in Socket Mode: `python -m bot run` connects to the
Slack sandbox over a WebSocket, and the command and the click arrive as envelopes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.slack_server import SlackSandbox
from sandbox.slack_socket import SocketDriver
from sandbox.vast_server import VastSandbox

CHANNEL = "C0DEPLOYS"
BOT_TOKEN = "xoxb-sandbox"
APP_TOKEN = "xapp-1-A0ROLLCALL-1-sandbox"
VAST_KEY = "k"
# Variables that would point the bot elsewhere or route its WebSocket through a proxy.
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


@pytest.fixture
def vast() -> Iterator[VastSandbox]:
    sandbox = VastSandbox(api_key=VAST_KEY, speed=400, seed=3).start()
    sandbox.world.add_endpoint(
        "qwen-chat",
        workers=8,
        inactive=3,
        model="Qwen/Qwen3-8B",
        vllm_args="--max-model-len 8192",
        image="vllm/vllm-openai",
        tag="v0.11.0",
        search="gpu_ram>=24 num_gpus=1 verified=True",
    )
    yield sandbox
    sandbox.stop()


@pytest.fixture
def slack() -> Iterator[SlackSandbox]:
    sandbox = SlackSandbox(bot_token=BOT_TOKEN).start()
    yield sandbox
    sandbox.stop()


def bot_environment(vast: VastSandbox, slack: SlackSandbox, db_path: Path) -> dict[str, str]:
    """Build the bot's environment: this one without Slack, Vast, Rollcall and proxy variables,
    plus the sandbox settings. SLACK_SIGNING_SECRET stays unset because Socket Mode needs none."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("SLACK_", "VAST_", "ROLLCALL_")) and name not in PROXY_VARIABLES
    }
    env.update(
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_APP_TOKEN=APP_TOKEN,
        SLACK_API_URL=slack.api_url,
        VAST_API_KEY=VAST_KEY,
        VAST_API_URL=vast.url,
        VAST_ROUTER_URL=vast.url,
        ROLLCALL_DB=str(db_path),
        ROLLCALL_POLL_SECONDS="0.05",
        ROLLCALL_VAST_MIN_INTERVAL="0",
    )
    # NOTE: the bot also loads a .env file that python-dotenv finds upward from bot/config.py,
    # and its values fill in variables this environment leaves unset.
    return env


@pytest.fixture
def bot(tmp_path, vast, slack) -> Iterator[subprocess.Popen]:
    """Run `python -m bot run` in Socket Mode, with its output in tmp_path/bot.log."""
    log_path = tmp_path / "bot.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "run"],
            env=bot_environment(vast, slack, tmp_path / "rollcall.db"),
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    process.log_path = log_path
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def bot_log(process: subprocess.Popen) -> str:
    return process.log_path.read_text(errors="replace")


def wait_connected(driver: SocketDriver, bot: subprocess.Popen) -> dict:
    """Wait for the bot's WebSocket connection. On a timeout, fail with the bot's log."""
    try:
        return driver.wait_connected(timeout=15)
    except AssertionError as error:
        raise AssertionError(f"{error}\nbot exit code: {bot.poll()}\nbot log:\n{bot_log(bot)}") from None


def stop_bot(bot: subprocess.Popen) -> str:
    """Stop the bot with SIGTERM, check that it exits cleanly, and return its log."""
    bot.send_signal(signal.SIGTERM)
    assert bot.wait(timeout=10) == 0, bot_log(bot)
    log = bot_log(bot)
    assert "Connected to Slack in Socket Mode" in log
    assert "Traceback" not in log, log
    assert APP_TOKEN not in log
    return log


def test_rollout_over_socket_mode(bot, vast, slack):
    driver = SocketDriver(slack, timeout=10)
    connection = wait_connected(driver, bot)
    assert connection["id"] == 1
    assert len(slack.calls("apps.connections.open")) == 1

    proposed = driver.command(
        "/rollout", "propose qwen-chat MODEL_NAME=Qwen/Qwen3-14B", user="U0ALICE", channel=CHANNEL
    )

    assert proposed["seconds"] < 3, "Slack shows an error when a command is not acked within 3 seconds"
    proposal = slack.wait_for(
        lambda s: next((m for m in s.messages(CHANNEL) if not m["thread_ts"] and "Proposal #1" in m["text"]), None),
        timeout=10,
    )

    approved = driver.click(proposal, "approve", user="U0BOB")

    assert approved["seconds"] < 3
    slack.wait_for(
        lambda s: any("complete" in reply["text"] for reply in s.thread(CHANNEL, proposal["ts"])), timeout=30
    )
    assert slack.socket_mode.unexpected_messages() == []
    assert [ack["connection"] for ack in slack.socket_mode.acks()] == [1, 1]
    stop_bot(bot)


def test_bot_reconnects_after_refresh(bot, vast, slack):
    driver = SocketDriver(slack, timeout=10)
    wait_connected(driver, bot)

    slack.socket_mode.disconnect("refresh_requested")

    # slack_sdk opens the new connection first and closes the old one within its 3-second
    # receive timeout.
    connections = slack.socket_mode.wait_for(
        lambda s: len(s.connections()) == 2 and s.connections()[0]["closed"] and s.connections(), timeout=10
    )
    assert connections[1]["open"]
    assert len(slack.calls("apps.connections.open")) == 2
    listed = driver.command("/rollout", "list", user="U0ALICE", channel=CHANNEL)
    assert listed["connection"] == 2
    [response] = slack.wait_for(lambda s: s.responses(), timeout=10)
    assert "qwen-chat" in response["text"]
    stop_bot(bot)
