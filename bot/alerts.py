"""Alerts about a rollout: failed, stuck or errored workers, lost capacity, time-outs.

An alert is posted once per rollout, subject (a worker, or the rollout) and cause. It mentions the
proposer and the approvers, links the rollout thread, states what happened in one sentence and
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

# Keep waiting on one of these silences the same cause for every worker of the rollout, because
# the team has chosen to let the rollout go on. The thread still reports every worker.
SILENCED_TOGETHER = {"stuck", "capacity", "error"}
CAUSE_LABELS = {
    "error": "workers in ERROR",
    "stuck": "stuck workers",
    "capacity": "ready capacity",
    "timeout": "the time-out",
    "failed": "the failure",
}
# Workers named in one alert; the rest are counted.
MAX_NAMED_WORKERS = 5


def alert_key(rollout_id: int, subject: str, cause: str) -> str:
    return f"alert:{rollout_id}:{subject}:{cause}"


def alert_value(rollout_id: int, subject: str, cause: str) -> str:
    return f"{rollout_id}|{subject}|{cause}"


def parse_alert_value(value: str) -> tuple[int, str, str]:
    """Split an alert button's value; raises ValueError when it is malformed."""
    rollout_id, subject, cause = value.split("|", 2)
    return int(rollout_id), subject, cause


class Alerts:
    """Raises alerts for a rollout and records how people responded to them."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def claim(self, rollout_id: int, subjects: list[str], cause: str) -> list[str]:
        """Record alerts for these subjects; return the ones not alerted (or silenced) before."""
        store = self.ctx.store
        if cause in SILENCED_TOGETHER and store.cause_acknowledged(rollout_id, cause):
            return []
        return [subject for subject in subjects if store.record_alert(rollout_id, subject, cause)]

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
        if not self.claim(rollout["id"], [subject], cause):
            return False
        self.post(rollout, proposal, subject, cause, headline, running=running)
        return True

    def post(
        self,
        rollout: dict[str, Any],
        proposal: dict[str, Any],
        subject: str,
        cause: str,
        headline: str,
        *,
        running: bool = True,
    ) -> None:
        """Post an alert already claimed; `subject` names it for its buttons."""
        store = self.ctx.store
        channel = self.ctx.settings.alert_channel or proposal["channel_id"]
        message = store.message(proposal_key(proposal["id"]))
        link = render.thread_link(proposal["channel_id"], message["ts"] if message else None)
        if running:
            choices = (
                "*Abort* stops Vast's rolling update, *Roll back* aborts it and proposes a return to the "
                "previous template, *Keep waiting* silences alerts of this kind for the rollout."
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

    def close(self, rollout_id: int, subject: str, cause: str, note: str) -> None:
        """Replace an alert's buttons with a note on how people responded."""
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

    def worker_errors(self, rollout: dict[str, Any], proposal: dict[str, Any], transitions: list[Any]) -> None:
        """Raise one alert for the workers that went into ERROR during this poll.

        A worker already in ERROR when the rollout first saw it is reported in the thread but
        not alerted on: the rollout did not cause it.
        """
        failed = {t.worker_id: t.status_msg for t in transitions if t.new_phase == "error" and t.old_phase}
        new = self.claim(rollout["id"], [f"worker-{worker_id}" for worker_id in sorted(failed)], "error")
        if not new:
            return
        ids = [int(subject.split("-", 1)[1]) for subject in new]
        reasons = {worker_id: failed[worker_id] or self._status_msg(worker_id) for worker_id in ids[:MAX_NAMED_WORKERS]}
        endpoint = render.escape(proposal["endpoint_name"])
        if len(ids) == 1:
            headline = f"worker {ids[0]} of endpoint {endpoint} went into ERROR"
            if reasons[ids[0]]:
                headline += f": {render.escape(reasons[ids[0]])}"
        else:
            named = [
                f"{worker_id} ({render.escape(reason)})" if reason else str(worker_id)
                for worker_id, reason in reasons.items()
            ]
            more = f" and {len(ids) - MAX_NAMED_WORKERS} more" if len(ids) > MAX_NAMED_WORKERS else ""
            headline = f"{len(ids)} workers of endpoint {endpoint} went into ERROR: {', '.join(named)}{more}"
        self.post(rollout, proposal, new[0], "error", headline)

    def _status_msg(self, worker_id: int) -> str:
        # The worker list often lacks the reason; the instance carries Vast's status_msg.
        try:
            return str(self.ctx.vast.instance(worker_id).get("status_msg") or "")
        except VastError as error:
            logger.warning("Could not read instance %s for its status message: %s", worker_id, error)
            return ""

    def stuck_workers(
        self, rollout: dict[str, Any], proposal: dict[str, Any], rows: list[dict[str, Any]], now: float
    ) -> None:
        """Raise one alert for the workers that stayed loading or updating too long, each once."""
        minutes = self.ctx.settings.stuck_minutes
        stuck = {
            row["worker_id"]: row
            for row in rows
            if row["status"] in LOADING_STATUSES and now - row["status_since"] > minutes * 60
        }
        new = self.claim(rollout["id"], [f"worker-{worker_id}" for worker_id in sorted(stuck)], "stuck")
        if not new:
            return
        rows_new = [stuck[int(subject.split("-", 1)[1])] for subject in new]
        named = [
            f"worker {row['worker_id']} has been in {row['status']} for {render.duration(now - row['status_since'])}"
            for row in rows_new[:MAX_NAMED_WORKERS]
        ]
        more = (
            f" and {len(rows_new) - MAX_NAMED_WORKERS} more workers are stuck"
            if len(rows_new) > MAX_NAMED_WORKERS
            else ""
        )
        headline = f"{'; '.join(named)}{more}, longer than the {minutes:g} minutes allowed"
        self.post(rollout, proposal, new[0], "stuck", headline)

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
