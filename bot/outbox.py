"""Slack delivery through an outbox in SQLite.

Every message and edit is written to the `outbox` table first and delivered by one worker
thread, in order within each conversation thread, so a rate limit, a Slack outage or a restart
loses nothing. Rules:

- `ratelimited` (HTTP 429) waits for Retry-After; 5xx and network errors back off and retry.
- Queued edits of the same message collapse to the latest content.
- A row is marked `sending` before the call and `sent` together with the message's ts after it.
  A row found in `sending` after a restart may or may not have reached Slack, so the thread (or
  channel history) is searched for the message's metadata key before it is posted again.
- Errors that retrying cannot fix (`channel_not_found`, `not_in_channel`, `invalid_blocks`, ...)
  are logged with the channel and reason and reported to the alert channel when one is set.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.store import Store

logger = logging.getLogger(__name__)

METADATA_TYPE = "rollcall_message"
MAX_BACKOFF = 60.0


class Outbox:
    """Queues Slack posts and edits and delivers them.

    Args:
        store: the database holding the queue.
        client: a slack_sdk WebClient with the bot token.
        alert_channel: where to report messages Slack rejected for good ("" for nowhere).
        backoff: first delay after a server or network error, doubled per attempt.
    """

    def __init__(
        self,
        store: Store,
        client: WebClient,
        *,
        alert_channel: str = "",
        backoff: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.client = client
        self.alert_channel = alert_channel
        self.backoff = backoff
        self.clock = clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._deliver_lock = threading.Lock()

    # Queueing -------------------------------------------------------------------------------

    def post(
        self,
        key: str,
        channel_id: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        *,
        thread_key: str | None = None,
        broadcast: bool = False,
    ) -> None:
        """Queue a new message; `thread_key` names the parent message when it is a reply."""
        self.store.enqueue("post", key, channel_id, post_payload(text, blocks, broadcast=broadcast), thread_key)
        self.wake()

    def update(self, key: str, channel_id: str, text: str, blocks: list[dict[str, Any]]) -> None:
        """Queue an edit of a message posted earlier through the outbox."""
        self.store.enqueue("update", key, channel_id, {"text": text, "blocks": blocks})
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    # Worker ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="rollcall-outbox", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                wait = self.deliver()
            except Exception:
                logger.exception("Outbox delivery failed; trying again shortly")
                wait = 1.0
            if wait is None:
                wait = 5.0
            self._wake.wait(wait)

    def deliver(self) -> float | None:
        """Deliver every row that is due, in order per thread.

        Returns:
            Seconds until the next row is due, or None when nothing is left.
        """
        with self._deliver_lock:
            blocked: set[str] = set()
            next_due: float | None = None
            rows = self.store.outbox()
            for row in rows:
                group = row["thread_key"] or row["key"]
                if group in blocked:
                    continue
                now = self.clock()
                if row["not_before"] > now:
                    blocked.add(group)
                    wait = row["not_before"] - now
                    next_due = wait if next_due is None else min(next_due, wait)
                    continue
                if not self._deliver_row(row):
                    blocked.add(group)
                    refreshed = self.store.outbox_row(row["id"])
                    if refreshed and refreshed["state"] in ("pending", "sending"):
                        wait = max(0.0, refreshed["not_before"] - self.clock())
                        next_due = wait if next_due is None else min(next_due, wait)
            last_seen = rows[-1]["id"] if rows else 0
            if any(row["id"] > last_seen for row in self.store.outbox()):
                # Rows queued during this pass, such as a delivery-failure alert, are due now.
                return 0.0
            return next_due

    def _deliver_row(self, row: dict[str, Any]) -> bool:
        """Deliver one row; False when it must wait (and its thread with it)."""
        payload = row["payload"]
        channel = row["channel_id"]
        try:
            if row["op"] == "update":
                target = self.store.message(row["key"])
                if target is None:
                    return self._fail(row, "the message to edit was never posted")
                self.client.chat_update(
                    channel=target["channel_id"],
                    ts=target["ts"],
                    text=payload["text"],
                    blocks=payload["blocks"],
                )
                self.store.record_delivery(row["id"], row["key"], target["channel_id"], None)
                return True

            thread_ts = None
            if row["thread_key"]:
                parent = self.store.message(row["thread_key"])
                if parent is None:
                    return self._fail(row, "its thread's first message was never posted")
                thread_ts = parent["ts"]
                channel = parent["channel_id"]
            if row["state"] == "sending":
                found = self._find_posted(row, channel, thread_ts)
                if found:
                    logger.info("Outbox row %s was already delivered as %s; not posting again", row["id"], found)
                    self.store.record_delivery(row["id"], row["key"], channel, found)
                    return True
            self.store.mark_outbox(row["id"], "sending", attempts=row["attempts"] + 1)
            response = self.client.chat_postMessage(
                channel=channel,
                text=payload["text"],
                blocks=payload["blocks"] or None,
                thread_ts=thread_ts,
                reply_broadcast=payload.get("reply_broadcast") or None,
                unfurl_links=False,
                unfurl_media=False,
                metadata={"event_type": METADATA_TYPE, "event_payload": {"key": row["key"]}},
            )
            self.store.record_delivery(row["id"], row["key"], response["channel"], response["ts"])
            return True
        except SlackApiError as error:
            return self._handle_slack_error(row, channel, error)
        except OSError as error:
            return self._retry(row, f"network error ({type(error).__name__})", None, uncertain=True)

    def _find_posted(self, row: dict[str, Any], channel: str, thread_ts: str | None) -> str | None:
        """Search Slack for a message carrying this row's key; return its ts when found."""
        try:
            if thread_ts:
                response = self.client.conversations_replies(
                    channel=channel, ts=thread_ts, include_all_metadata=True, limit=200
                )
            else:
                oldest = str(row["created_at"] - 60)
                response = self.client.conversations_history(
                    channel=channel, oldest=oldest, include_all_metadata=True, limit=200
                )
        except (SlackApiError, OSError) as error:
            logger.warning("Could not check whether outbox row %s was delivered: %s", row["id"], error)
            raise
        for message in response.get("messages") or []:
            metadata = message.get("metadata") or {}
            if (metadata.get("event_payload") or {}).get("key") == row["key"]:
                return str(message["ts"])
        return None

    def _handle_slack_error(self, row: dict[str, Any], channel: str, error: SlackApiError) -> bool:
        status = error.response.status_code
        # A 5xx response is often not JSON, and slack_sdk then puts its parse error in "error".
        reason = f"HTTP {status}" if status >= 500 else str(error.response.get("error") or f"HTTP {status}")
        if status == 429 or reason in ("ratelimited", "rate_limited"):
            retry_after = _seconds(error.response.headers.get("Retry-After")) or 1.0
            return self._retry(row, "rate limited", retry_after, uncertain=False)
        if status >= 500 or reason in ("internal_error", "fatal_error", "service_unavailable", "request_timeout"):
            return self._retry(row, reason, None, uncertain=True)
        if row["op"] == "update" and reason in ("message_not_found", "cant_update_message", "edit_window_closed"):
            logger.warning("Slack rejected an edit of %s in %s: %s; dropping the edit", row["key"], channel, reason)
            self.store.mark_outbox(row["id"], "failed", error=reason)
            return True
        return self._fail(row, reason, channel=channel)

    def _retry(self, row: dict[str, Any], reason: str, retry_after: float | None, *, uncertain: bool) -> bool:
        attempts = row["attempts"] + 1
        delay = retry_after if retry_after is not None else min(self.backoff * 2 ** (attempts - 1), MAX_BACKOFF)
        logger.warning(
            "Slack delivery of %s %s failed: %s; retrying in %.1f s (attempt %d)",
            row["op"],
            row["key"],
            reason,
            delay,
            attempts,
        )
        # After a server or network error Slack may have posted the message all the same, so a
        # post stays "sending" and the next attempt looks for it first. A 429 surely posted nothing.
        state = "sending" if uncertain and row["op"] == "post" else "pending"
        self.store.mark_outbox(row["id"], state, attempts=attempts, not_before=self.clock() + delay, error=reason)
        return False

    def _fail(self, row: dict[str, Any], reason: str, channel: str | None = None) -> bool:
        channel = channel or row["channel_id"]
        logger.error("Slack rejected %s %s in channel %s for good: %s", row["op"], row["key"], channel, reason)
        self.store.mark_outbox(row["id"], "failed", error=reason)
        if self.alert_channel and channel != self.alert_channel and not row["key"].startswith("delivery-failure:"):
            text = (
                f":warning: Rollcall could not post to <#{channel}>: `{reason}`. "
                "Invite the bot to that channel or check the channel id."
            )
            self.store.enqueue(
                "post", f"delivery-failure:{row['id']}", self.alert_channel, {"text": text, "blocks": []}
            )
        # Its thread may go on: later rows are judged on their own.
        return True


def post_payload(text: str, blocks: list[dict[str, Any]] | None, *, broadcast: bool = False) -> dict[str, Any]:
    """Build the stored form of a new message."""
    payload: dict[str, Any] = {"text": text, "blocks": blocks or []}
    if broadcast:
        payload["reply_broadcast"] = True
    return payload


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None
