"""The `/rollout` slash command."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App, Respond

from bot import forms, reports
from bot.app import Rollcall
from bot.changes import PROPOSE_EXAMPLE, PROPOSE_USAGE, ProposalInputError, parse_propose
from bot.errors import UserError, parse_id
from handlers.common import reply_errors

logger = logging.getLogger(__name__)

SUBCOMMANDS = ("propose", "status", "list", "history", "cancel", "rollback", "help")


def register(app: App, rollcall: Rollcall) -> None:
    """Register the `/rollout` command listener."""

    @app.command("/rollout")
    def rollout_command(ack: Ack, command: dict[str, Any], respond: Respond, client: Any) -> None:
        """Dispatch `/rollout SUBCOMMAND ...`; acks at once and sends errors as ephemeral messages."""
        ack()
        text = (command.get("text") or "").strip()
        name, _, rest = text.partition(" ")
        name = name.lower()
        user_id, channel_id = command["user_id"], command["channel_id"]
        logger.info("/rollout %s from %s in %s", name or "(empty)", user_id, channel_id)
        if name == "propose" and not rest.strip():
            reply_errors(
                "/rollout propose form",
                lambda message: respond(text=message, response_type="ephemeral", replace_original=False),
                lambda: open_form(rollcall, client, command["trigger_id"], user_id, channel_id),
            )
            return

        def reply(message: str) -> None:
            respond(text=message, response_type="ephemeral", replace_original=False)

        def work() -> str | None:
            if name in ("", "help"):
                return reports.HELP
            if name == "propose":
                return propose(rollcall, rest, user_id, channel_id)
            if name == "status":
                return reports.status(rollcall.ctx, rest.strip() or None)
            if name == "list":
                return reports.endpoint_list(rollcall.ctx)
            if name == "history":
                return reports.history(rollcall.ctx, rest.strip() or None)
            if name == "cancel":
                return cancel(rollcall, rest.strip(), user_id)
            if name == "rollback":
                return rollback(rollcall, rest.strip(), user_id, channel_id)
            raise UserError(
                f"`{name}` is not a /rollout command; use one of {', '.join(SUBCOMMANDS)}. "
                "`/rollout help` explains each."
            )

        reply_errors(f"/rollout {name}", reply, work)


def open_form(rollcall: Rollcall, client: Any, trigger_id: str, user_id: str, channel_id: str) -> None:
    """Open the proposal modal; Slack accepts the trigger_id for only 3 seconds."""
    rollcall.proposals.check_proposer(user_id)
    options = rollcall.form_targets()
    if not options:
        raise UserError("This Vast account has no endpoint with a worker group to change.")
    client.views_open(trigger_id=trigger_id, view=forms.propose_view(channel_id, options))


def propose(rollcall: Rollcall, text: str, user_id: str, channel_id: str) -> str | None:
    try:
        request = parse_propose(text)
    except ProposalInputError as error:
        raise UserError(f"{error}\n{_usage()}") from None
    proposal_id = rollcall.proposals.propose(request, user_id, channel_id)
    rollcall.check_posted(proposal_id)
    return None


def _usage() -> str:
    return f"Usage: `{PROPOSE_USAGE}`\nExample: `{PROPOSE_EXAMPLE}`"


def cancel(rollcall: Rollcall, argument: str, user_id: str) -> str:
    proposal_id = parse_id(argument, "proposal", "`/rollout cancel ID`, for example `/rollout cancel 12`")
    return rollcall.cancel(proposal_id, user_id)


def rollback(rollcall: Rollcall, argument: str, user_id: str, channel_id: str) -> str | None:
    if not argument:
        raise UserError("Name the endpoint to roll back: `/rollout rollback ENDPOINT[/GROUP_ID]`.")
    rollcall.rollback(argument, user_id, channel_id)
    return None
