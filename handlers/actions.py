"""Button clicks on proposal messages."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App

from bot import forms
from bot.app import Rollcall
from bot.errors import UserError, parse_id
from handlers.common import reply_errors

logger = logging.getLogger(__name__)


def proposal_id_of(action: dict[str, Any]) -> int:
    """Read the proposal id that a button carries as its value."""
    return parse_id(str(action.get("value") or ""), "proposal", "`/rollout history` to find the proposal")


def ephemeral(client: Any, body: dict[str, Any]) -> Callable[[str], None]:
    """Return a function that replies privately to the clicking user in the message's channel."""
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
    user = body["user"]["id"]

    def send(message: str) -> None:
        client.chat_postEphemeral(channel=channel, user=user, text=message)

    return send


def register(app: App, rollcall: Rollcall) -> None:
    """Register the Approve, Reject and Cancel buttons."""

    @app.action("approve")
    def approve(ack: Ack, action: dict[str, Any], body: dict[str, Any], client: Any, context: dict[str, Any]) -> None:
        """Approve a proposal; the proposal message shows the result, refusals come back ephemerally."""
        ack()
        user = body["user"]["id"]
        retried = bool(context.get("slack_retry"))

        def work() -> None:
            try:
                rollcall.proposals.approve(proposal_id_of(action), user)
            except UserError:
                if not retried:
                    raise
                # A redelivery of a click that was already handled: stay quiet.

        reply_errors("approve", ephemeral(client, body), work)

    @app.action("reject")
    def reject(ack: Ack, action: dict[str, Any], body: dict[str, Any], client: Any) -> None:
        """Open the rejection modal, which requests an optional reason."""
        ack()

        def work() -> None:
            proposal = rollcall.proposals.open_proposal(proposal_id_of(action))
            client.views_open(trigger_id=body["trigger_id"], view=forms.reject_view(proposal))

        reply_errors("reject", ephemeral(client, body), work)

    def alert_button(name: str, run: Callable[[str, str], str]) -> Callable[..., None]:
        def listener(ack: Ack, action: dict[str, Any], body: dict[str, Any], client: Any) -> None:
            ack()
            user = body["user"]["id"]
            reply_errors(name, ephemeral(client, body), lambda: run(str(action.get("value") or ""), user))

        listener.__doc__ = f"Handle the alert's {name} button."
        return listener

    app.action("alert_abort")(alert_button("Abort", rollcall.abort_from_alert))
    app.action("alert_rollback")(alert_button("Roll back", rollcall.rollback_from_alert))
    app.action("alert_keep_waiting")(alert_button("Keep waiting", rollcall.keep_waiting))

    @app.action("cancel_proposal")
    def cancel(ack: Ack, action: dict[str, Any], body: dict[str, Any], client: Any) -> None:
        """Withdraw a proposal (its proposer only)."""
        ack()
        user = body["user"]["id"]

        def work() -> None:
            rollcall.proposals.cancel(proposal_id_of(action), user)

        reply_errors("cancel", ephemeral(client, body), work)
