"""Alerts about a rollout: failed, stuck or errored workers, lost capacity, time-outs.

An alert is posted once per rollout, subject (a worker, or the rollout) and cause. It mentions the
proposer and the approvers, links the rollout thread, says what happened in one sentence and
carries buttons: Abort, Roll back and Keep waiting while the rollout runs, Roll back after it
failed.
"""

from __future__ import annotations

import logging
from typing import Any

from bot import render
from bot.context import Context
from bot.notify import people, proposal_key
from bot.progress import LOADING_STATUSES
from bot.vast import VastError

logger = logging.getLogger(__name__)

# Keep waiting on one of these silences the same cause for every worker of the rollout: the team
# has accepted that loading is slow or capacity is low. ERROR alerts stay per worker.
SILENCED_TOGETHER = {"stuck", "capacity"}


def alert_key(rollout_id: int, subject: str, cause: str) -> str:
    return f"alert:{rollout_id}:{subject}:{cause}"


def alert_value(rollout_id: int, subject: str, cause: str) -> str:
    return f"{rollout_id}|{subject}|{cause}"


def parse_alert_value(value: str) -> tuple[int, str, str]:
    """Split an alert button's value; raises ValueError when it is malformed."""
    rollout_id, subject, cause = value.split("|", 2)
    return int(rollout_id), subject, cause


class Alerts:
    """Raises alerts for a rollout and records how people answered them."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def raise_alert(
        self,
        rollout: dict[str, Any],
        proposal: dict[str, Any],
        subject: str,
        cause: str,
        headline: str,
        *,
        running: bool = True,
    ) -> bool:
        """Post an alert once per rollout, subject and cause; False when it was not posted."""
        store = self.ctx.store
        if cause in SILENCED_TOGETHER and store.cause_acknowledged(rollout["id"], cause):
            return False
        if not store.record_alert(rollout["id"], subject, cause):
            return False
        channel = self.ctx.settings.alert_channel or proposal["channel_id"]
        message = store.message(proposal_key(proposal["id"]))
        link = render.thread_link(proposal["channel_id"], message["ts"] if message else None)
        if running:
            choices = (
                "*Abort* stops Vast's rolling update, *Roll back* aborts it and proposes a return to the "
                "previous template, *Keep waiting* silences this alert."
            )
        else:
            choices = "*Roll back* proposes a return to the previous template."
        text, blocks = render.alert_message(
            headline=headline,
            proposal=proposal,
            people=people(self.ctx, proposal),
            thread=link,
            choices=choices,
            buttons=render.alert_buttons(alert_value(rollout["id"], subject, cause), running=running),
        )
        self.ctx.outbox.post(alert_key(rollout["id"], subject, cause), channel, text, blocks)
        store.journal(rollout["id"], "alert", f"{cause}: {headline}")
        store.audit(proposal["id"], "alert", None, f"{cause}: {headline}")
        logger.warning("Rollout %s alert (%s %s): %s", rollout["id"], subject, cause, headline)
        return True

    def close(self, rollout_id: int, subject: str, cause: str, note: str) -> None:
        """Replace an alert's buttons with a note saying how it was answered."""
        key = alert_key(rollout_id, subject, cause)
        message = self.ctx.store.message(key)
        row = self.ctx.store.outbox_latest(key)
        if row is None:
            return
        text = row["payload"]["text"]
        blocks = [render.section(text), render.context(note)]
        channel = message["channel_id"] if message else row["channel_id"]
        self.ctx.outbox.update(key, channel, text, blocks)

    # Checks run on every poll -----------------------------------------------------------------

    def worker_error(self, rollout: dict[str, Any], proposal: dict[str, Any], worker_id: int, status_msg: str) -> None:
        detail = status_msg
        if not detail:
            # The worker list often lacks the reason; the instance carries Vast's status_msg.
            try:
                detail = str(self.ctx.vast.instance(worker_id).get("status_msg") or "")
            except VastError as error:
                logger.warning("Could not read instance %s for its status message: %s", worker_id, error)
        headline = f"worker {worker_id} of endpoint {render.escape(proposal['endpoint_name'])} went into ERROR"
        if detail:
            headline += f": {render.escape(detail)}"
        self.raise_alert(rollout, proposal, f"worker-{worker_id}", "error", headline)

    def stuck_workers(
        self, rollout: dict[str, Any], proposal: dict[str, Any], rows: list[dict[str, Any]], now: float
    ) -> None:
        minutes = self.ctx.settings.stuck_minutes
        for row in rows:
            waited = now - row["status_since"]
            if row["status"] in LOADING_STATUSES and waited > minutes * 60:
                self.raise_alert(
                    rollout,
                    proposal,
                    f"worker-{row['worker_id']}",
                    "stuck",
                    f"worker {row['worker_id']} has been in {row['status']} for {render.duration(waited)}, "
                    f"longer than the {minutes:g} minutes allowed",
                )

    def capacity(self, rollout: dict[str, Any], proposal: dict[str, Any], ready: int) -> None:
        minimum = self.ctx.settings.min_ready
        if ready >= minimum:
            return
        before = rollout.get("ready_before")
        was = f"{before} before the rollout" if before is not None else "unknown before the rollout"
        self.raise_alert(
            rollout,
            proposal,
            "rollout",
            "capacity",
            f":red_circle: *critical*: ready capacity fell to {ready} IDLE workers ({was}; the minimum is {minimum})",
        )
