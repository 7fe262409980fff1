"""Kill the real bot process with SIGKILL during a rollout, start it again, and check the outcome.

Each test runs `python -m bot run` in HTTP mode against the Vast and Slack sandboxes, proposes
`MODEL_NAME=Qwen/Qwen3-14B` as alice and approves it as bob. To stop the bot at an exact point,
the Vast sandbox holds one request (`VastWorld.hold`), or the Slack sandbox delays or rate limits
posts, so the bot is blocked inside that call when the test kills it. A second process on the
same database and port must then finish the rollout and deliver its messages, with exactly one
template save and one worker group update in Vast, and a Slack thread that has every message once.
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.demo import bot_environment, free_port
from sandbox.slack_client import SlackDriver
from sandbox.slack_server import SlackSandbox
from sandbox.vast_server import VastSandbox
from sandbox.vast_sim import Hold

CHANNEL = "C0DEPLOYS"
BOT_TOKEN = "xoxb-sandbox"
SIGNING_SECRET = "sandbox-signing-secret"
VAST_KEY = "sandbox-vast-key"
NEW_MODEL = "Qwen/Qwen3-14B"
WORKERS = 8
POLL_SECONDS = 0.1
# Seconds after which a wait fails the test, far longer than a passing run needs.
START_TIMEOUT = 20.0
STEP_TIMEOUT = 15.0
COMPLETE_TIMEOUT = 30.0


def without_proxies(env: dict[str, str]) -> dict[str, str]:
    """Drop proxy variables, so that the bot reaches the loopback sandboxes directly."""
    return {name: value for name, value in env.items() if not name.upper().endswith("_PROXY")}


class BotProcesses:
    """Runs `python -m bot run` processes one after another on one database and one port."""

    def __init__(self, vast: VastSandbox, slack: SlackSandbox, workdir: Path) -> None:
        self.workdir = workdir
        self.db_path = workdir / "rollcall.db"
        self.port = free_port()
        self.env = without_proxies(
            bot_environment(vast.url, slack.api_url, str(self.db_path), self.port, poll_seconds=POLL_SECONDS)
        )
        self.processes: list[subprocess.Popen[bytes]] = []
        self.log_paths: list[Path] = []

    @property
    def current(self) -> subprocess.Popen[bytes]:
        return self.processes[-1]

    def start(self) -> subprocess.Popen[bytes]:
        """Start a bot process and wait until `GET /healthz` returns 200."""
        log_path = self.workdir / f"bot-{len(self.processes) + 1}.log"
        # The working directory has no .env file, so the bot reads only this environment.
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "bot", "run"],
                env=self.env,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.processes.append(process)
        self.log_paths.append(log_path)
        self._wait_healthy(process)
        return process

    def _wait_healthy(self, process: subprocess.Popen[bytes]) -> None:
        url = f"http://127.0.0.1:{self.port}/healthz"
        deadline = time.monotonic() + START_TIMEOUT
        with httpx.Client(timeout=1.0, trust_env=False) as http:
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    raise AssertionError(f"the bot exited with status {process.returncode}\n{self.logs()}")
                with contextlib.suppress(httpx.TransportError):
                    if http.get(url).status_code == 200:
                        return
                time.sleep(0.05)
        raise AssertionError(f"the bot did not answer {url} within {START_TIMEOUT:.0f} s\n{self.logs()}")

    def kill(self) -> None:
        """Send SIGKILL to the running bot and reap it."""
        self.current.kill()
        self.current.wait(timeout=10)

    def restart(self) -> subprocess.Popen[bytes]:
        self.kill()
        return self.start()

    def stop(self) -> None:
        """End every process still running: SIGTERM first, SIGKILL after 10 s."""
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    def logs(self) -> str:
        parts = []
        for number, path in enumerate(self.log_paths, start=1):
            text = path.read_text(errors="replace") if path.exists() else ""
            parts.append(f"--- bot process {number} ---\n{text}")
        return "\n".join(parts)


@dataclass
class Rig:
    """The sandboxes, the bot processes and a driver that sends Slack requests to the bot."""

    vast: VastSandbox
    slack: SlackSandbox
    bots: BotProcesses
    driver: SlackDriver

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Read the bot's database, which a running bot may be writing at the same time."""
        with contextlib.closing(sqlite3.connect(self.bots.db_path, timeout=10)) as connection:
            return connection.execute(sql, params).fetchall()

    def journal(self) -> list[str]:
        return [step for (step,) in self.query("SELECT step FROM journal ORDER BY id")]

    def thread(self, proposal: dict[str, Any]) -> list[dict[str, Any]]:
        return self.slack.thread(CHANNEL, proposal["ts"])

    def wait_for_thread(
        self,
        condition: Callable[[list[dict[str, Any]]], bool],
        proposal: dict[str, Any],
        description: str,
        timeout: float,
    ) -> None:
        """Wait until `condition` is true for the proposal's replies, or fail with the bot logs."""
        try:
            self.slack.wait_for(lambda slack: condition(slack.thread(CHANNEL, proposal["ts"])), timeout=timeout)
        except AssertionError as error:
            raise AssertionError(f"{description}: {error}\n{self.bots.logs()}") from None

    def wait_held(self, hold: Hold, description: str) -> None:
        if not hold.wait_held(STEP_TIMEOUT):
            raise AssertionError(f"the bot never reached {description} within {STEP_TIMEOUT:.0f} s\n{self.bots.logs()}")


@pytest.fixture
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    """Start the sandboxes and the qwen-chat endpoint. An indirect parameter sets Vast's speed."""
    speed = getattr(request, "param", 400)
    vast = VastSandbox(api_key=VAST_KEY, speed=speed, seed=3).start()
    slack = SlackSandbox(bot_token=BOT_TOKEN).start()
    bots = BotProcesses(vast, slack, tmp_path)
    driver = SlackDriver(
        bot_url=f"http://127.0.0.1:{bots.port}/slack/events", signing_secret=SIGNING_SECRET, slack=slack
    )
    try:
        vast.world.add_endpoint(
            "qwen-chat",
            workers=WORKERS,
            inactive=3,
            model="Qwen/Qwen3-8B",
            vllm_args="--max-model-len 8192",
            image="vllm/vllm-openai",
            tag="v0.11.0",
            search="gpu_ram>=24 num_gpus=1 verified=True",
        )
        yield Rig(vast, slack, bots, driver)
    finally:
        bots.stop()
        driver.close()
        slack.stop()
        vast.stop()


# -- steps of a test ------------------------------------------------------------------------


def propose(rig: Rig) -> dict[str, Any]:
    """Propose the new model as alice and return the proposal message."""
    response = rig.driver.command(
        "/rollout", f"propose qwen-chat MODEL_NAME={NEW_MODEL}", user="U0ALICE", channel=CHANNEL
    )
    assert response.status_code == 200
    return rig.slack.wait_for(
        lambda slack: next(
            (m for m in slack.messages(CHANNEL) if not m["thread_ts"] and "Proposal #1" in m["text"]), None
        ),
        timeout=STEP_TIMEOUT,
    )


def approve(rig: Rig, proposal: dict[str, Any]) -> None:
    response = rig.driver.click(proposal, "approve", user="U0BOB")
    assert response.status_code == 200


def has_reply(start: str) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda replies: any(reply["text"].startswith(start) for reply in replies)


def completion_count(replies: list[dict[str, Any]]) -> int:
    return sum("complete:" in reply["text"] for reply in replies)


def rejoined_count(replies: list[dict[str, Any]]) -> int:
    return sum(reply["text"].count(" rejoined") for reply in replies)


def wait_complete(rig: Rig, proposal: dict[str, Any]) -> None:
    """Wait for the completion reply, then for the proposal message to show the outcome."""
    rig.wait_for_thread(lambda replies: completion_count(replies) > 0, proposal, "completion", COMPLETE_TIMEOUT)
    rig.slack.wait_for(
        lambda slack: "Completed" in str(slack.message(CHANNEL, proposal["ts"])["blocks"]), timeout=STEP_TIMEOUT
    )


def message_key(message: dict[str, Any]) -> str | None:
    return ((message.get("metadata") or {}).get("event_payload") or {}).get("key")


def assert_completed_once(rig: Rig, proposal: dict[str, Any]) -> None:
    """Check the database, Vast's counters and the Slack transcript after the restart."""
    assert rig.query("SELECT status FROM rollouts") == [("completed",)]
    counters = rig.vast.world.counters
    assert counters["template_saves"] == 1
    assert counters["workergroup_updates"] == 1

    snapshot = rig.vast.world.snapshot()
    [group] = snapshot["workergroups"]
    workers = [worker for worker in snapshot["workers"] if worker["workergroup_id"] == group["id"]]
    assert len(workers) == WORKERS
    assert all(worker["template_hash"] == group["template_hash"] for worker in workers)

    messages = rig.slack.messages(CHANNEL)
    keys = [message_key(message) for message in messages]
    assert None not in keys, "every message the bot posts carries its outbox key"
    duplicates = sorted(key for key, count in Counter(keys).items() if count > 1)
    assert duplicates == [], rig.slack.transcript(CHANNEL)

    replies = rig.thread(proposal)
    texts = [reply["text"] for reply in replies]
    assert sum(text.startswith("Step 1 of 2") for text in texts) == 1, texts
    assert sum(text.startswith("Step 2 of 2") for text in texts) == 1, texts
    for worker in workers:
        mentions = sum(text.count(f"worker {worker['id']} rejoined") for text in texts)
        assert mentions == 1, f"worker {worker['id']} rejoined {mentions} times in {texts}"
    assert rejoined_count(replies) == WORKERS, texts
    assert completion_count(replies) == 1, texts
    assert "complete:" in texts[-1]


def assert_clean_log(rig: Rig) -> None:
    """The restarted bot logged no unexpected error."""
    log = rig.bots.log_paths[-1].read_text(errors="replace")
    assert "Traceback" not in log, log


# -- the points of a crash ---------------------------------------------------------------


def test_kill_before_step_1(rig):
    rig.bots.start()
    proposal = propose(rig)
    # The approval's own drift check reads the worker groups first, so the rollout's check
    # right before the template save is the second read.
    hold = rig.vast.world.hold("/api/v0/autojobs/", method="GET", skip=1)
    approve(rig, proposal)
    rig.wait_held(hold, "the drift check before step 1")
    assert "template save requested" not in rig.journal()

    rig.bots.restart()

    wait_complete(rig, proposal)
    assert_completed_once(rig, proposal)
    assert "resumed" in rig.journal()
    assert_clean_log(rig)


def test_kill_between_step_1_and_step_2(rig):
    rig.bots.start()
    proposal = propose(rig)
    hold = rig.vast.world.hold("/api/v0/autojobs/", method="PUT", when="before")
    approve(rig, proposal)
    rig.wait_held(hold, "step 2")
    assert rig.vast.world.counters["template_saves"] == 1

    rig.bots.restart()

    wait_complete(rig, proposal)
    assert hold.dropped_count == 1, "the killed bot's step 2 request never reached Vast"
    assert_completed_once(rig, proposal)
    assert rig.journal().count("group update requested") == 2
    assert_clean_log(rig)


def test_kill_after_template_save_took_effect(rig):
    rig.bots.start()
    proposal = propose(rig)
    hold = rig.vast.world.hold("/api/v1/template/", method="PUT", when="after")
    approve(rig, proposal)
    rig.wait_held(hold, "the answer to step 1")
    assert rig.vast.world.counters["template_saves"] == 1
    assert "template saved" not in rig.journal()

    rig.bots.restart()

    wait_complete(rig, proposal)
    assert_completed_once(rig, proposal)
    assert "template found after restart" in rig.journal()
    assert_clean_log(rig)


def test_kill_after_group_update_took_effect(rig):
    rig.bots.start()
    proposal = propose(rig)
    hold = rig.vast.world.hold("/api/v0/autojobs/", method="PUT", when="after")
    approve(rig, proposal)
    rig.wait_held(hold, "the answer to step 2")
    assert rig.vast.world.counters["workergroup_updates"] == 1
    assert "group updated" not in rig.journal()

    rig.bots.restart()

    wait_complete(rig, proposal)
    assert_completed_once(rig, proposal)
    assert "group already updated before restart" in rig.journal()
    assert_clean_log(rig)


def test_kill_mid_rollout(rig):
    rig.bots.start()
    proposal = propose(rig)
    approve(rig, proposal)
    rig.wait_for_thread(lambda replies: rejoined_count(replies) >= 2, proposal, "two rejoined workers", STEP_TIMEOUT)
    # The next poll stops at its worker read, so the kill lands inside a poll, before it stores anything.
    hold = rig.vast.world.hold("/get_workergroup_workers/", method="POST")
    rig.wait_held(hold, "the next poll")
    assert rig.query("SELECT status, phase FROM rollouts") == [("running", "rolling")]

    rig.bots.restart()

    wait_complete(rig, proposal)
    assert_completed_once(rig, proposal)
    assert_clean_log(rig)


def outbox_states(rig: Rig) -> Counter[str]:
    return Counter(state for (state,) in rig.query("SELECT state FROM outbox WHERE op = 'post'"))


def test_kill_mid_post_with_queued_messages(rig):
    rig.bots.start()
    proposal = propose(rig)
    approve(rig, proposal)
    rig.wait_for_thread(has_reply("Step 1 of 2"), proposal, "the step 1 reply", STEP_TIMEOUT)
    # The next post waits 1.5 s, is rate limited for 2 s, and its second attempt waits again,
    # so the thread's later messages queue up behind it meanwhile.
    rig.slack.fail_next("chat.postMessage", error="ratelimited", retry_after=2)
    rig.slack.delay("chat.postMessage", 1.5)
    sending_again = "SELECT key FROM outbox WHERE op = 'post' AND state = 'sending' AND attempts >= 2"
    deadline = time.monotonic() + STEP_TIMEOUT
    while not (blocked := rig.query(sending_again)):
        assert time.monotonic() < deadline, f"no post was retried within {STEP_TIMEOUT:.0f} s\n{rig.bots.logs()}"
        time.sleep(0.02)
    [(key,)] = blocked

    rig.bots.kill()
    rig.slack.delay("chat.postMessage", 0)
    assert outbox_states(rig)["pending"] >= 1, "messages were queued behind the blocked post"
    # Slack finishes the blocked post after the bot died: the restarted bot must find it.
    rig.slack.wait_for(lambda slack: key in map(message_key, slack.messages(CHANNEL)), timeout=STEP_TIMEOUT)
    # At 400 simulated seconds per second the first bot may have seen the rollout complete, so
    # the second bot may only have messages to deliver.
    rig.bots.start()

    wait_complete(rig, proposal)
    assert_completed_once(rig, proposal)
    assert "was already delivered" in rig.bots.logs()
    assert_clean_log(rig)


# At 100 simulated seconds per second the rollout runs for about 4 s after step 2, so it is
# still running when the bot is killed.
@pytest.mark.parametrize("rig", [100], indirect=True, ids=["speed100"])
def test_kill_while_rate_limited(rig):
    rig.bots.start()
    proposal = propose(rig)
    approve(rig, proposal)
    rig.wait_for_thread(has_reply("Step 1 of 2"), proposal, "the step 1 reply", STEP_TIMEOUT)
    # Two posts in a row are rate limited with Retry-After: 2, so the thread waits about 4 s.
    rig.slack.fail_next("chat.postMessage", count=2, error="ratelimited", retry_after=2)
    deadline = time.monotonic() + STEP_TIMEOUT
    while outbox_states(rig)["pending"] < 2:
        assert time.monotonic() < deadline, f"no messages queued behind the rate limit\n{rig.bots.logs()}"
        time.sleep(0.02)

    rig.bots.kill()
    assert rig.query("SELECT status FROM rollouts") == [("running",)]
    [(not_before,)] = rig.query("SELECT MAX(not_before) FROM outbox WHERE error = 'rate limited'")
    restarted_at = time.time()
    rig.bots.start()

    wait_complete(rig, proposal)
    assert_completed_once(rig, proposal)
    posted_after_restart = [call["time"] for call in rig.slack.calls("chat.postMessage") if call["time"] > restarted_at]
    assert min(posted_after_restart) >= not_before, "the restarted bot posted before the Retry-After ran out"
    assert_clean_log(rig)
