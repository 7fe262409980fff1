"""Proposals: creating them against the live worker group, approving, rejecting, expiring."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from bot import render
from bot.changes import (
    PROPOSE_EXAMPLE,
    PROPOSE_USAGE,
    Change,
    ProposeRequest,
    apply_change,
    diff_templates,
)
from bot.context import Context
from bot.drift import drift, group_search
from bot.errors import UserError
from bot.notify import proposal_key, proposal_message_for, refresh_proposal
from bot.policy import allowed, describe

logger = logging.getLogger(__name__)


def _usage() -> str:
    return f"Usage: `{PROPOSE_USAGE}`\nExample: `{PROPOSE_EXAMPLE}`"


class Proposals:
    """Creates and decides proposals; `start_rollout` is called once one is approved."""

    def __init__(self, ctx: Context, start_rollout: Any) -> None:
        self.ctx = ctx
        self.start_rollout = start_rollout

    # Resolving the target -------------------------------------------------------------------

    def resolve(self, endpoint: str, group_id: int | None) -> tuple[dict[str, Any], dict[str, Any]]:
        """Find the endpoint (by name or id) and the worker group a proposal is about.

        Raises:
            UserError: unknown endpoint, unknown group, or several groups and none named.
        """
        endpoints = self.ctx.vast.list_endpoints()
        match = [ep for ep in endpoints if str(ep.get("endpoint_name")) == endpoint]
        if not match and endpoint.isdigit():
            match = [ep for ep in endpoints if int(ep.get("id", -1)) == int(endpoint)]
        if not match:
            names = ", ".join(f"`{render.escape(ep.get('endpoint_name'))}`" for ep in endpoints[:20])
            raise UserError(
                f"Endpoint `{render.escape(endpoint)}` was not found in Vast. "
                f"Known endpoints: {names or 'none'}. `/rollout list` shows them with their groups."
            )
        found = match[0]
        groups = [wg for wg in self.ctx.vast.list_workergroups() if int(wg.get("endpoint_id", -1)) == int(found["id"])]
        if group_id is not None:
            chosen = [wg for wg in groups if int(wg["id"]) == group_id]
            if not chosen:
                ids = ", ".join(str(wg["id"]) for wg in groups)
                raise UserError(
                    f"Worker group {group_id} is not part of endpoint `{render.escape(found['endpoint_name'])}`; "
                    f"its groups are {ids or 'none'}."
                )
            return found, chosen[0]
        if not groups:
            raise UserError(f"Endpoint `{render.escape(found['endpoint_name'])}` has no worker groups to update.")
        if len(groups) > 1:
            ids = ", ".join(f"`{render.escape(found['endpoint_name'])}/{wg['id']}`" for wg in groups)
            raise UserError(
                f"Endpoint `{render.escape(found['endpoint_name'])}` has {len(groups)} worker groups; "
                f"name one: {ids}.\n{_usage()}"
            )
        return found, groups[0]

    # Proposing ------------------------------------------------------------------------------

    def propose(
        self,
        request: ProposeRequest,
        user_id: str,
        channel_id: str,
        *,
        kind: str = "change",
        rollback_of: int | None = None,
        base_override: tuple[str, int | None, dict[str, Any]] | None = None,
    ) -> int:
        """Record a proposal against the live worker group and post its message.

        Args:
            request: the parsed proposal.
            user_id: the proposer.
            channel_id: where the proposal message goes.
            kind: "change", or "rollback" for a return to an earlier template.
            rollback_of: the rollout a rollback undoes.
            base_override: for a rollback, the (template hash, template id, search filter) to
                return to, instead of applying `request.change`.

        Returns:
            The proposal id.

        Raises:
            UserError: the proposer is not allowed, the group is busy, or nothing would change.
        """
        settings = self.ctx.settings
        if kind == "change":
            self.check_proposer(user_id)
        endpoint, group = self.resolve(request.endpoint, request.group_id)
        running = self.ctx.store.running_rollout(int(group["id"]))
        if running:
            raise UserError(
                f"Rollout #{running['id']} is running on {render.escape(endpoint['endpoint_name'])} / group "
                f"{group['id']} ({self.rollout_link(running)}); propose again when it has finished."
            )
        base_hash = str(group.get("template_hash") or "")
        template = self.ctx.vast.find_template(base_hash) if base_hash else None
        if template is None:
            raise UserError(
                f"The template `{render.escape(base_hash)}` of worker group {group['id']} was not found in Vast."
            )
        base_search = group_search(group)

        if base_override is not None:
            target_hash, _target_id, target_search = base_override
            target_template = self.ctx.vast.find_template(target_hash)
            if target_template is None:
                raise UserError(f"The earlier template `{render.escape(target_hash)}` no longer exists in Vast.")
            change = Change()
        else:
            change = request.change
            target_template = apply_change(template, change) if change.touches_template else dict(template)
            target_search = change.search if change.search is not None else base_search

        diff = diff_templates(template, target_template, base_search, target_search)
        if not diff:
            raise UserError(
                f"This proposal changes nothing: worker group {group['id']} already runs that "
                f"configuration.\n{_usage()}"
            )
        required = settings.approvals_required if kind == "change" else settings.rollback_approvals
        now = self.ctx.clock()
        proposal_id = self.ctx.store.create_proposal(
            kind=kind,
            status="pending",
            endpoint_id=int(endpoint["id"]),
            endpoint_name=str(endpoint["endpoint_name"]),
            workergroup_id=int(group["id"]),
            channel_id=channel_id,
            proposer_id=user_id,
            reason=request.reason,
            change=change.to_dict(),
            base_template_hash=base_hash,
            base_template_id=template.get("id"),
            base_search=base_search,
            target_template=dict(target_template),
            target_search=target_search,
            diff=[_diff_dict(line) for line in diff],
            approvals_required=required,
            rollback_of=rollback_of,
            created_at=now,
            expires_at=now + settings.proposal_ttl_hours * 3600 if required else None,
        )
        self.ctx.store.audit(proposal_id, "proposed", user_id, render.summary([_diff_dict(line) for line in diff]))
        logger.info(
            "Proposal %s created by %s for endpoint %s group %s", proposal_id, user_id, endpoint["id"], group["id"]
        )
        proposal = self.ctx.store.proposal(proposal_id)
        assert proposal is not None
        text, blocks = proposal_message_for(self.ctx, proposal)
        self.ctx.outbox.post(proposal_key(proposal_id), channel_id, text, blocks)
        if required == 0:
            self.ctx.store.move_proposal(proposal_id, ("pending",), "approved", decided_at=now)
            self.ctx.store.audit(
                proposal_id, "started without approval", user_id, "no approvals required for rollbacks"
            )
            refresh_proposal(self.ctx, proposal_id)
            self.start_rollout(proposal_id)
        elif proposal["expires_at"]:
            self.ctx.jobs.once(f"expire-{proposal_id}", self.expire, proposal_id, at=proposal["expires_at"])
        return proposal_id

    def rollout_link(self, rollout: dict[str, Any]) -> str:
        message = self.ctx.store.message(proposal_key(rollout["proposal_id"]))
        return render.thread_link(rollout["channel_id"], message["ts"] if message else None)

    # Deciding -------------------------------------------------------------------------------

    def check_proposer(self, user_id: str) -> None:
        """Raise UserError when ROLLCALL_PROPOSERS is set and does not include the user."""
        proposers = self.ctx.settings.proposers
        if not allowed(user_id, proposers, self.ctx.membership):
            raise UserError(f"Only {describe(proposers)} may propose changes; ask one of them.")

    def open_proposal(self, proposal_id: int) -> dict[str, Any]:
        """Return a pending proposal.

        Raises:
            UserError: it does not exist or is no longer pending.
        """
        proposal = self.ctx.store.proposal(proposal_id)
        if proposal is None:
            raise UserError(f"Proposal #{proposal_id} does not exist.")
        if proposal["status"] != "pending":
            label = render.STATUS_LABELS.get(proposal["status"], proposal["status"]).lower()
            raise UserError(f"Proposal #{proposal_id} is no longer open ({label}); nothing was changed.")
        return proposal

    def approve(self, proposal_id: int, user_id: str) -> str:
        """Record an approval; the last one needed starts the rollout.

        Returns:
            A confirmation for the approver.

        Raises:
            UserError: the proposal is closed, the user is the proposer or not an approver,
                already approved, or the worker group changed since the proposal.
        """
        proposal = self.open_proposal(proposal_id)
        settings = self.ctx.settings
        if user_id == proposal["proposer_id"]:
            raise UserError(
                f"You proposed #{proposal_id}, so your approval does not count; ask a teammate to approve it."
            )
        if not allowed(user_id, settings.approvers, self.ctx.membership):
            raise UserError(f"Only {describe(settings.approvers)} may approve proposals; nothing was changed.")
        if any(row["user_id"] == user_id for row in self.ctx.store.decisions(proposal_id)):
            raise UserError(f"You already approved #{proposal_id}; it needs another teammate.")
        running = self.ctx.store.running_rollout(proposal["workergroup_id"])
        if running:
            raise UserError(
                f"Rollout #{running['id']} is still running on worker group {proposal['workergroup_id']}; "
                "approve again when it has finished."
            )
        self.check_drift(proposal)
        if not self.ctx.store.add_decision(proposal_id, user_id, "approve"):
            raise UserError(f"You already approved #{proposal_id}; it needs another teammate.")
        self.ctx.store.audit(proposal_id, "approved", user_id)
        count = len(self.ctx.store.decisions(proposal_id))
        needed = proposal["approvals_required"]
        logger.info("Proposal %s approved by %s (%d of %d)", proposal_id, user_id, count, needed)
        if count >= needed:
            if not self.ctx.store.move_proposal(proposal_id, ("pending",), "approved", decided_at=self.ctx.clock()):
                # Another approval completed it at the same moment; that one starts the rollout.
                return f"You approved #{proposal_id}; it already had the approvals it needed."
            self.ctx.jobs.cancel(f"expire-{proposal_id}")
            refresh_proposal(self.ctx, proposal_id)
            self.start_rollout(proposal_id)
            return f"You approved #{proposal_id}; the rollout is starting."
        refresh_proposal(self.ctx, proposal_id)
        return f"You approved #{proposal_id} ({count} of {needed} approvals)."

    def reject(self, proposal_id: int, user_id: str, reason: str = "") -> str:
        """Close a pending proposal as rejected and record who did it and why."""
        self.open_proposal(proposal_id)
        if not self.ctx.store.move_proposal(proposal_id, ("pending",), "rejected", decided_at=self.ctx.clock()):
            raise UserError(f"Proposal #{proposal_id} is no longer open; nothing was changed.")
        self.ctx.store.add_decision(proposal_id, user_id, "reject", reason)
        self.ctx.store.audit(proposal_id, "rejected", user_id, reason)
        self.ctx.jobs.cancel(f"expire-{proposal_id}")
        refresh_proposal(self.ctx, proposal_id)
        return f"You rejected #{proposal_id}."

    def cancel(self, proposal_id: int, user_id: str) -> str:
        """Withdraw a pending proposal; only its proposer may."""
        proposal = self.open_proposal(proposal_id)
        if user_id != proposal["proposer_id"]:
            raise UserError(
                f"Only <@{proposal['proposer_id']}>, who proposed #{proposal_id}, can cancel it; "
                "use Reject to turn it down."
            )
        if not self.ctx.store.move_proposal(
            proposal_id,
            ("pending",),
            "cancelled",
            decided_at=self.ctx.clock(),
            status_detail=f"withdrawn by <@{user_id}>",
        ):
            raise UserError(f"Proposal #{proposal_id} is no longer open; nothing was changed.")
        self.ctx.store.audit(proposal_id, "cancelled", user_id)
        self.ctx.jobs.cancel(f"expire-{proposal_id}")
        refresh_proposal(self.ctx, proposal_id)
        return f"You cancelled #{proposal_id}."

    def withdraw_undelivered(self, proposal_id: int, reason: str) -> None:
        """Cancel a proposal whose message Slack rejected, so it cannot be approved unseen."""
        if self.ctx.store.move_proposal(
            proposal_id,
            ("pending", "approved"),
            "cancelled",
            decided_at=self.ctx.clock(),
            status_detail=f"the proposal message could not be posted ({reason})",
        ):
            self.ctx.store.audit(proposal_id, "withdrawn", None, f"message not delivered: {reason}")
            self.ctx.jobs.cancel(f"expire-{proposal_id}")

    def expire(self, proposal_id: int) -> None:
        """Close a proposal that waited longer than ROLLCALL_PROPOSAL_TTL_HOURS."""
        hours = self.ctx.settings.proposal_ttl_hours
        if self.ctx.store.move_proposal(
            proposal_id,
            ("pending",),
            "expired",
            decided_at=self.ctx.clock(),
            status_detail=f"no decision within {hours:g} hours; propose it again if it is still wanted.",
        ):
            self.ctx.store.audit(proposal_id, "expired")
            logger.info("Proposal %s expired", proposal_id)
            refresh_proposal(self.ctx, proposal_id)

    def reschedule_expiry(self) -> None:
        """Re-create the expiry jobs of pending proposals after a restart."""
        for proposal in self.ctx.store.proposals(statuses=("pending",), limit=10_000):
            if proposal["expires_at"]:
                self.ctx.jobs.once(
                    f"expire-{proposal['id']}",
                    self.expire,
                    proposal["id"],
                    at=max(proposal["expires_at"], self.ctx.clock()),
                )

    # Drift ----------------------------------------------------------------------------------

    def check_drift(self, proposal: dict[str, Any]) -> None:
        """Invalidate the proposal when the worker group changed since it was made.

        Raises:
            UserError: when the proposal was invalidated.
        """
        changes = drift(self.ctx.vast, proposal)
        if changes:
            self.invalidate(proposal, "the worker group changed since the proposal was made: " + "; ".join(changes))
            raise UserError(
                f"Proposal #{proposal['id']} was made against a configuration that has since changed "
                f"({'; '.join(changes)}). It is now invalid; <@{proposal['proposer_id']}> needs to propose again."
            )

    def invalidate(self, proposal: dict[str, Any], detail: str) -> bool:
        moved = self.ctx.store.move_proposal(
            proposal["id"],
            ("pending", "approved"),
            "invalidated",
            decided_at=self.ctx.clock(),
            status_detail=f"{detail}. <@{proposal['proposer_id']}>, please propose again.",
        )
        if moved:
            self.ctx.store.audit(proposal["id"], "invalidated", None, detail)
            self.ctx.jobs.cancel(f"expire-{proposal['id']}")
            refresh_proposal(self.ctx, proposal["id"])
        return moved


def _diff_dict(line: Any) -> dict[str, Any]:
    data = asdict(line)
    data["flags"] = [dict(flag) for flag in data["flags"]]
    return data
