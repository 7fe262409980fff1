"""Fixtures shared by every test: a clean environment, the sandbox servers and a running bot."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from bot.app import Rollcall
from bot.config import Settings, load_settings
from handlers.app import create_app
from handlers.server import HttpServer
from sandbox.slack_client import SlackDriver
from sandbox.slack_server import SlackSandbox
from sandbox.vast_server import VastSandbox

SIGNING_SECRET = "test-signing-secret"
BOT_TOKEN = "xoxb-sandbox"
VAST_KEY = "test-vast-key"
CHANNEL = "C0DEPLOYS"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's own Slack, Vast and Rollcall variables out of every test."""
    for name in list(os.environ):
        if name.startswith(("SLACK_", "VAST_", "ROLLCALL_")):
            monkeypatch.delenv(name)


def wait_until(condition: Callable[[], Any], timeout: float = 15.0, message: str = "condition") -> Any:
    """Poll `condition` every 20 ms until it is truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {message}")
        time.sleep(0.02)


@pytest.fixture
def vast() -> Iterator[VastSandbox]:
    sandbox = VastSandbox(api_key=VAST_KEY, speed=400.0, seed=3).start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def slack() -> Iterator[SlackSandbox]:
    sandbox = SlackSandbox(bot_token=BOT_TOKEN).start()
    yield sandbox
    sandbox.stop()


def bot_settings(vast: VastSandbox, slack: SlackSandbox, db_path: str, **overrides: str) -> Settings:
    env = {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url,
        "VAST_API_KEY": VAST_KEY,
        "VAST_API_URL": vast.url,
        "VAST_ROUTER_URL": vast.url,
        "ROLLCALL_DB": db_path,
        "ROLLCALL_POLL_SECONDS": "0.05",
        "ROLLCALL_VAST_MIN_INTERVAL": "0",
        "ROLLCALL_VAST_BACKOFF": "0.01",
        "ROLLCALL_SLACK_BACKOFF": "0.01",
        "ROLLCALL_VAST_TIMEOUT": "2",
    }
    env.update(overrides)
    return load_settings(env)


@dataclass
class Bot:
    """A running bot: its services, its HTTP server and a driver that plays Slack towards it."""

    rollcall: Rollcall
    server: HttpServer
    driver: SlackDriver
    slack: SlackSandbox
    vast: VastSandbox

    def stop(self) -> None:
        self.driver.close()
        self.server.stop()
        self.rollcall.stop()

    @property
    def store(self):
        return self.rollcall.store

    def propose(self, text: str, user: str = "U0ALICE") -> dict[str, Any]:
        """Send `/rollout propose TEXT` and return the proposal message once it is posted."""
        before = {message["ts"] for message in self.slack.messages(CHANNEL)}
        response = self.driver.command("/rollout", f"propose {text}", user=user, channel=CHANNEL)
        assert response.status_code == 200
        return self.slack.wait_for(
            lambda s: next((m for m in s.messages(CHANNEL) if m["ts"] not in before and not m.get("thread_ts")), None),
            timeout=10,
        )

    def latest(self, message: dict[str, Any]) -> dict[str, Any]:
        return self.slack.message(message["channel"], message["ts"])

    def click(self, message: dict[str, Any], action_id: str, user: str) -> None:
        response = self.driver.click(self.latest(message), action_id=action_id, user=user)
        assert response.status_code == 200

    def ephemeral_texts(self, user: str | None = None) -> list[str]:
        texts = [
            entry.get("text", "") for entry in self.slack.ephemerals() if user is None or entry.get("user") == user
        ]
        texts += [entry.get("text", "") for entry in self.slack.responses()]
        return texts


@pytest.fixture
def start_bot(tmp_path, vast: VastSandbox, slack: SlackSandbox) -> Iterator[Callable[..., Bot]]:
    """Start the real bot (services, bolt App, HTTP server) against the sandboxes."""
    running: list[Bot] = []

    def start(db_name: str = "rollcall.db", **overrides: str) -> Bot:
        settings = bot_settings(vast, slack, str(tmp_path / db_name), **overrides)
        rollcall = Rollcall(settings)
        app = create_app(rollcall)
        server = HttpServer(app, host="127.0.0.1", port=0).start()
        rollcall.start()
        driver = SlackDriver(
            bot_url=f"http://127.0.0.1:{server.port}/slack/events", signing_secret=SIGNING_SECRET, slack=slack
        )
        bot = Bot(rollcall, server, driver, slack, vast)
        running.append(bot)
        return bot

    yield start
    for bot in running:
        bot.stop()


@pytest.fixture
def qwen(vast: VastSandbox) -> Any:
    """The demo's endpoint: 8 workers on Qwen/Qwen3-8B, 3 of them inactive."""
    return vast.world.add_endpoint(
        "qwen-chat",
        workers=8,
        inactive=3,
        model="Qwen/Qwen3-8B",
        vllm_args="--max-model-len 8192",
        image="vllm/vllm-openai",
        tag="v0.11.0",
        search="gpu_ram>=24 num_gpus=1 verified=True",
    )
