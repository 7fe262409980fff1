"""Building and running Rollcall's services, without Slack's listener layer."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
from slack_sdk import WebClient

from bot import forms
from bot.alerts import CAUSE_LABELS, parse_alert_value
from bot.changes import Change, ProposalInputError, ProposeRequest, parse_propose
from bot.config import Settings
from bot.context import Context
from bot.errors import MAX_ID, UserError
from bot.notify import proposal_key
from bot.outbox import Outbox
from bot.policy import Membership, allowed, describe
from bot.proposals import Proposals
from bot.rollouts import RolloutEngine
from bot.scheduler import Jobs
from bot.store import Store
from bot.vast import VastClient

logger = logging.getLogger(__name__)


class Rollcall:
    """Everything the Slack handlers call into.

    Args:
        settings: the configuration.
        slack_client: the Web API client (its token and base URL come from the settings when
            None).
        http: the httpx client for Vast (one is created and owned when None).
        clock: returns epoch seconds; tests may pass their own.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        slack_client: WebClient | None = None,
        http: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._owns_http = http is None
        self.http = http or httpx.Client(timeout=settings.vast_timeout)
        self.slack = slack_client or WebClient(
            token=settings.slack_bot_token,
            base_url=settings.slack_api_url,
            timeout=15,
            # The outbox retries on its own schedule, so the client must not sleep in-line.
            retry_handlers=[],
        )
        store = Store(settings.db_path, clock=clock)
        vast = VastClient(
            settings.vast_api_key,
            settings.vast_api_url,
            settings.vast_router_url,
            http=self.http,
            min_interval=settings.vast_min_interval,
            backoff=settings.vast_backoff,
            attempts=settings.vast_attempts,
        )
        outbox = Outbox(
            store, self.slack, alert_channel=settings.alert_channel, backoff=settings.slack_backoff, clock=clock
        )
        membership = Membership(self._usergroup_members)
        self.ctx = Context(
            settings=settings, store=store, vast=vast, outbox=outbox, jobs=Jobs(), membership=membership, clock=clock
        )
        self.proposals = Proposals(self.ctx, start_rollout=self._start_rollout)
        self.engine = RolloutEngine(self.ctx, invalidate=self.proposals.invalidate)

    def _start_rollout(self, proposal_id: int) -> None:
        self.engine.begin(proposal_id)

    def _usergroup_members(self, group_id: str) -> list[str]:
        response = self.slack.usergroups_users_list(usergroup=group_id)
        return list(response.get("users") or [])

    def form_targets(self) -> list[dict[str, Any]]:
        """Return the endpoint and worker group options of the proposal form."""
        return forms.target_options(self.ctx.vast.list_endpoints(), self.ctx.vast.list_workergroups())

    def check_posted(self, proposal_id: int, timeout: float = 2.5) -> None:
        """Wait briefly for the proposal message; withdraw the proposal if Slack rejected it.

        A command's response URL works even where the bot may not post, so this is the one chance
        to tell the proposer why no proposal appeared (most often: the bot is not in the channel).

        Raises:
            UserError: Slack rejected the proposal message for good.
        """
        deadline = time.monotonic() + timeout
        key = proposal_key(proposal_id)
        while time.monotonic() < deadline:
            row = self.ctx.store.outbox_latest(key)
            if row is None or row["state"] == "sent":
                return
            if row["state"] == "failed":
                self.proposals.withdraw_undelivered(proposal_id, row["error"])
                raise UserError(
                    f"Rollcall could not post proposal #{proposal_id} in this channel (`{row['error']}`), so it "
                    "was withdrawn. Invite the bot with `/invite @rollcall`, or propose from a channel it is in."
                )
            time.sleep(0.05)

    def cancel(self, proposal_id: int, user_id: str) -> str:
        """Withdraw a pending proposal, or abort the running rollout of an approved one.

        Raises:
            UserError: nothing pending or running has that id.
        """
        proposal = self.ctx.store.proposal(proposal_id)
        if proposal is None:
            raise UserError(f"Proposal #{proposal_id} does not exist; `/rollout history` lists recent ones.")
        if proposal["status"] == "running":
            rollout = self.ctx.store.rollout_for_proposal(proposal_id)
            assert rollout is not None
            self.check_may_steer(user_id, proposal)
            return self.engine.abort(rollout["id"], user_id)
        if proposal["status"] != "pending":
            raise UserError(f"Proposal #{proposal_id} is {proposal['status']}, so there is nothing to cancel.")
        return self.proposals.cancel(proposal_id, user_id)

    def rollback(self, target: str, user_id: str, channel_id: str) -> int:
        """Propose a return to the configuration before the group's last finished rollout.

        Raises:
            UserError: the target is unknown or has no completed, failed or aborted rollout.
        """
        try:
            request = parse_propose(target)
        except ProposalInputError as error:
            raise UserError(f"{error} Use `/rollout rollback ENDPOINT[/GROUP_ID]`.") from None
        if request.change.to_dict() != Change().to_dict():
            raise UserError(
                "`/rollout rollback` takes only ENDPOINT[/GROUP_ID]; it returns to the earlier configuration."
            )
        settings = self.settings
        if settings.proposers and not (
            allowed(user_id, settings.proposers, self.ctx.membership)
            or (settings.approvers and allowed(user_id, settings.approvers, self.ctx.membership))
        ):
            raise UserError(f"Only {describe(settings.proposers + settings.approvers)} may propose a rollback.")
        endpoint, group = self.proposals.resolve(request.endpoint, request.group_id)
        last = self.ctx.store.last_rollout(int(group["id"]), ("completed", "failed", "aborted"))
        if last is None:
            running = self.ctx.store.running_rollout(int(group["id"]))
            hint = (
                f" Rollout #{running['id']} is still running; abort it first with "
                f"`/rollout cancel {running['proposal_id']}`."
                if running
                else ""
            )
            raise UserError(
                f"Rollcall has no finished rollout of {endpoint['endpoint_name']} / group {group['id']} "
                f"to roll back.{hint}"
            )
        return self.propose_rollback(last, user_id, channel_id, endpoint=str(endpoint["endpoint_name"]))

    def propose_rollback(self, rollout: dict[str, Any], user_id: str, channel_id: str, *, endpoint: str) -> int:
        """Propose pointing the rollout's worker group back at the template and filter it had before."""
        for existing in self.ctx.store.proposals(
            statuses=("pending", "approved", "running"), workergroup_id=int(rollout["workergroup_id"])
        ):
            if existing["rollback_of"] == rollout["id"]:
                raise UserError(f"Rollback proposal #{existing['id']} for rollout #{rollout['id']} is already open.")
        request = ProposeRequest(
            endpoint, int(rollout["workergroup_id"]), Change(), f"roll back rollout #{rollout['id']}"
        )
        try:
            return self.proposals.propose(
                request,
                user_id,
                channel_id,
                kind="rollback",
                rollback_of=rollout["id"],
                base_override=(rollout["old_template_hash"], rollout["old_template_id"], rollout["old_search"]),
            )
        except UserError as error:
            if "changes nothing" in str(error):
                raise UserError(
                    f"There is nothing to roll back: worker group {rollout['workergroup_id']} already runs the "
                    f"configuration it had before rollout #{rollout['id']}."
                ) from None
            raise

    # Alert buttons --------------------------------------------------------------------------

    def check_may_steer(self, user_id: str, proposal: dict[str, Any]) -> None:
        """Allow the proposer and, when ROLLCALL_APPROVERS is set, only the approvers besides.

        Aborting, rolling back and silencing alerts change a live endpoint as much as approving.

        Raises:
            UserError: naming who may act instead.
        """
        approvers = self.settings.approvers
        if not approvers or user_id == proposal["proposer_id"] or allowed(user_id, approvers, self.ctx.membership):
            return
        raise UserError(
            f"Only <@{proposal['proposer_id']}>, who proposed #{proposal['id']}, or {describe(approvers)} may "
            "abort, roll back or silence alerts of its rollout; nothing was changed."
        )

    def _alert_rollout(self, value: str, user_id: str) -> tuple[dict[str, Any], str, str]:
        try:
            rollout_id, subject, cause = parse_alert_value(value)
            if rollout_id >= MAX_ID:
                raise ValueError(value)
        except ValueError:
            raise UserError("This alert button carries no valid rollout; use `/rollout history`.") from None
        rollout = self.ctx.store.rollout(rollout_id)
        if rollout is None:
            raise UserError(f"Rollout #{rollout_id} does not exist.")
        proposal = self.ctx.store.proposal(rollout["proposal_id"])
        assert proposal is not None
        self.check_may_steer(user_id, proposal)
        return rollout, subject, cause

    def abort_from_alert(self, value: str, user_id: str) -> str:
        """Cancel Vast's rolling update and mark the rollout aborted (the alert's Abort button)."""
        rollout, subject, cause = self._alert_rollout(value, user_id)
        message = self.engine.abort(rollout["id"], user_id)
        self.engine.alerts.close(rollout["id"], subject, cause, f"Aborted by <@{user_id}>.")
        return message

    def rollback_from_alert(self, value: str, user_id: str) -> str:
        """Abort the rollout if it runs, then propose the rollback (the alert's Roll back button)."""
        rollout, subject, cause = self._alert_rollout(value, user_id)
        if rollout["status"] == "running":
            self.engine.abort(rollout["id"], user_id)
        proposal = self.ctx.store.proposal(rollout["proposal_id"])
        assert proposal is not None
        rollback_id = self.propose_rollback(
            rollout, user_id, proposal["channel_id"], endpoint=proposal["endpoint_name"]
        )
        self.engine.alerts.close(rollout["id"], subject, cause, f"Rollback proposed by <@{user_id}> as #{rollback_id}.")
        return f"Rollback proposal #{rollback_id} posted."

    def keep_waiting(self, value: str, user_id: str) -> str:
        """Record who acknowledged the alert and silence it (the alert's Keep waiting button)."""
        rollout, subject, cause = self._alert_rollout(value, user_id)
        if not self.ctx.store.acknowledge_alert(rollout["id"], subject, cause, user_id):
            raise UserError("This alert was already acknowledged.")
        label = CAUSE_LABELS.get(cause, cause)
        self.ctx.store.journal(rollout["id"], "alert acknowledged", f"{subject} {cause}")
        self.ctx.store.audit(rollout["proposal_id"], "alert acknowledged", user_id, f"{subject} {cause}")
        self.engine.alerts.close(
            rollout["id"],
            subject,
            cause,
            f"<@{user_id}> chose to keep waiting, so no more alerts about {label} are posted for this "
            "rollout; the thread still reports every worker.",
        )
        return f"Alerts about {label} are silenced for rollout #{rollout['id']}; the thread still reports every worker."

    @property
    def store(self) -> Store:
        return self.ctx.store

    def start(self) -> None:
        """Start the scheduler and the outbox, then resume what a previous run left running."""
        self.ctx.jobs.start()
        self.ctx.outbox.start()
        self.proposals.reschedule_expiry()
        self.engine.resume_all()
        logger.info(
            "Rollcall started (database %s, poll every %.3g s)", self.settings.db_path, self.settings.poll_seconds
        )

    def stop(self) -> None:
        self.ctx.jobs.shutdown()
        self.ctx.outbox.stop()
        self.ctx.store.close()
        if self._owns_http:
            self.http.close()
        logger.info("Rollcall stopped")
