"""`rollcall demo`: a whole rollout on the local Vast and Slack sandbox, printed as a chat.

It starts the Vast sandbox (one endpoint, 8 workers, 3 of them inactive), the Slack sandbox and
the bot itself in HTTP mode as a separate process, all on free loopback ports. Then alice
proposes a new MODEL_NAME, bob approves it, and the conversation is printed as it unfolds
until the rollout completes. With `--fail` the new model fails to load: the alert goes out, alice
clicks Roll back on it, bob approves the rollback, and the old model comes back.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from sandbox.slack_client import SlackDriver
from sandbox.slack_server import SlackSandbox
from sandbox.vast_server import VastSandbox

CHANNEL = "C0DEPLOYS"
NEW_MODEL = "Qwen/Qwen3-14B"
FAILURE = f"vLLM failed to load {NEW_MODEL}: CUDA out of memory (tried to allocate 2.50 GiB)"
SIGNING_SECRET = "sandbox-signing-secret"
BOT_TOKEN = "xoxb-sandbox"
VAST_KEY = "sandbox-vast-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bot_environment(vast_url: str, slack_api_url: str, db_path: str, port: int, poll_seconds: float) -> dict[str, str]:
    """Build the environment for a bot process that talks to the sandbox servers only."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SLACK_", "VAST_", "ROLLCALL_"))}
    env.update(
        {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack_api_url,
            "VAST_API_KEY": VAST_KEY,
            "VAST_API_URL": vast_url,
            "VAST_ROUTER_URL": vast_url,
            "ROLLCALL_DB": db_path,
            "PORT": str(port),
            "ROLLCALL_POLL_SECONDS": str(poll_seconds),
            "ROLLCALL_VAST_MIN_INTERVAL": "0",
            "ROLLCALL_VAST_BACKOFF": "0.2",
            "ROLLCALL_SLACK_BACKOFF": "0.2",
        }
    )
    return env


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the bot exited with status {process.returncode} before it was ready")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the bot did not respond on {url} within {timeout:.0f} s")


_USER = re.compile(r"<@(U[A-Z0-9]+)>")
_DATE = re.compile(r"<!date\^\d+\^[^|>]*\|([^>]*)>")
_LINK = re.compile(r"<(https?://[^|>]+)\|([^>]*)>")


def plain(text: str, names: dict[str, str]) -> str:
    """Turn Slack mrkdwn into terminal text: names for mentions, labels for links and dates."""
    text = _USER.sub(lambda match: "@" + names.get(match.group(1), match.group(1)), text)
    text = _DATE.sub(lambda match: match.group(1), text)
    text = _LINK.sub(lambda match: match.group(2), text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def message_lines(message: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for block in message.get("blocks") or []:
        kind = block.get("type")
        if kind in ("section", "header"):
            lines.extend(str((block.get("text") or {}).get("text", "")).splitlines())
        elif kind == "context":
            lines.append(" ".join(str(element.get("text", "")) for element in block.get("elements", [])))
        elif kind == "actions":
            lines.append("  ".join(f"[{element['text']['text']}]" for element in block.get("elements", [])))
    return lines or str(message.get("text", "")).splitlines()


class Printer:
    """Prints new messages and changed lines of edited messages, thread replies indented."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names
        self.seen: dict[str, list[str]] = {}

    def show(self, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            lines = [plain(line, self.names) for line in message_lines(message)]
            key = message["ts"]
            indent = "      " if message.get("thread_ts") and message["thread_ts"] != message["ts"] else ""
            if key not in self.seen:
                stamp = time.strftime("%H:%M:%S")
                where = "thread" if indent else f"#{message['channel']}"
                print(f"{indent}{stamp} rollcall ({where}):")
                for line in lines:
                    print(f"{indent}    {line}")
            elif lines != self.seen[key]:
                changed = [line for line in lines if line not in self.seen[key]]
                for line in changed:
                    print(f"{indent}    (edited) {line}")
            self.seen[key] = lines
        sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rollcall demo", description=__doc__)
    parser.add_argument("--fail", action="store_true", help="make the new model fail to load")
    parser.add_argument("--speed", type=float, default=25.0, help="simulated Vast seconds per real second (default 25)")
    parser.add_argument("--timeout", type=float, default=90.0, help="give up after this many seconds")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="rollcall-demo-"))
    vast = VastSandbox(api_key=VAST_KEY, speed=args.speed, seed=7).start()
    slack = SlackSandbox(bot_token=BOT_TOKEN).start()
    endpoint = vast.world.add_endpoint(
        "qwen-chat",
        workers=8,
        inactive=3,
        model="Qwen/Qwen3-8B",
        vllm_args="--max-model-len 8192",
        image="vllm/vllm-openai",
        tag="v0.11.0",
        search="gpu_ram>=24 num_gpus=1 verified=True",
    )
    if args.fail:
        vast.world.fail_models[NEW_MODEL] = FAILURE
    port = free_port()
    log_path = workdir / "bot.log"
    env = bot_environment(vast.url, slack.api_url, str(workdir / "rollcall.db"), port, poll_seconds=1.0)
    with log_path.open("wb") as log:
        bot = subprocess.Popen([sys.executable, "-m", "bot", "run"], env=env, stdout=log, stderr=subprocess.STDOUT)
    names = {"U0ALICE": "alice", "U0BOB": "bob", "U0CAROL": "carol", "U0DAVE": "dave"}
    printer = Printer(names)
    status = 1
    try:
        wait_healthy(f"http://127.0.0.1:{port}/healthz", bot)
        driver = SlackDriver(
            bot_url=f"http://127.0.0.1:{port}/slack/events", signing_secret=SIGNING_SECRET, slack=slack
        )
        print(f"Vast sandbox {vast.url} · Slack sandbox {slack.url} · bot on port {port}")
        print(f"Endpoint qwen-chat (id {endpoint.id}): 8 workers on Qwen/Qwen3-8B, 3 of them inactive\n")
        text = f'propose qwen-chat MODEL_NAME={NEW_MODEL} reason="Move to the 14B model"'
        print(f"alice: /rollout {text}")
        driver.command("/rollout", text, user="U0ALICE", channel=CHANNEL)
        proposal = slack.wait_for(lambda s: next(iter(s.messages(CHANNEL)), None), timeout=20)
        printer.show(slack.messages(CHANNEL))
        print("bob clicks [Approve]")
        driver.click(proposal, action_id="approve", user="U0BOB")
        status = follow(slack, driver, printer, args.timeout, expect_failure=args.fail)
    except Exception as error:  # the demo reports any failure and the bot's log, then exits 1
        print(f"\nThe demo failed: {error}", file=sys.stderr)
        status = 1
    finally:
        bot.terminate()
        try:
            bot.wait(10)
        except subprocess.TimeoutExpired:
            bot.kill()
        slack.stop()
        vast.stop()
    if status:
        print(f"The bot's log is in {log_path}", file=sys.stderr)
    return status


def follow(slack: SlackSandbox, driver: SlackDriver, printer: Printer, timeout: float, *, expect_failure: bool) -> int:
    """Print the conversation until the rollout completes.

    Expecting a failure, wait for the alert, click Roll back as alice, approve the rollback
    proposal as bob, and follow the rollback until it completes.
    """
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    rolled_back = approved_rollback = False
    while time.monotonic() < deadline:
        messages = slack.messages(CHANNEL)
        printer.show(messages)
        completions = [message for message in messages if "complete:" in str(message.get("text", ""))]
        if not expect_failure and completions:
            print(f"\nRollout completed in {time.monotonic() - started:.1f} s.")
            return 0
        if expect_failure:
            alert = next((m for m in messages if ":rotating_light:" in str(m.get("text", ""))), None)
            if alert and not rolled_back:
                print("alice clicks [Roll back] on the alert")
                driver.click(alert, action_id="alert_rollback", user="U0ALICE")
                rolled_back = True
            rollback = next((m for m in messages if str(m.get("text", "")).startswith("Rollback #")), None)
            if rollback and not approved_rollback:
                print("bob clicks [Approve] on the rollback")
                driver.click(rollback, action_id="approve", user="U0BOB")
                approved_rollback = True
            if approved_rollback and completions:
                print(
                    f"\nThe alert went out and the rollback completed, {time.monotonic() - started:.1f} s "
                    "after the first approval."
                )
                return 0
        time.sleep(0.2)
    print(f"\nNothing finished within {timeout:.0f} s.", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
