"""Button clicks on proposal and alert messages."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App

from bot.app import Rollcall
from bot.errors import UserError
from handlers.common import reply_errors

logger = logging.getLogger(__name__)


def _proposal_id(action: dict[str, Any]) -> int:
    try:
        return int(action.get("value") or "")
    except ValueError:
        raise UserError("This button carries no valid proposal id; use `/rollout history` to find it.") from None


def register(app: App, rollcall: Rollcall) -> None:
    """Register the Approve, Reject and Cancel buttons."""

    def ephemeral(client: Any, body: dict[str, Any]) -> Any:
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
        user = body["user"]["id"]

        def send(message: str) -> None:
            client.chat_postEphemeral(channel=channel, user=user, text=message)

        return send

    @app.action("approve")
    def approve(ack: Ack, action: dict[str, Any], body: dict[str, Any], client: Any, context: dict[str, Any]) -> None:
        """Approve a proposal; the proposal message shows the result, errors come back ephemerally."""
        ack()
        user = body["user"]["id"]
        retried = bool(context.get("slack_retry"))

        def work() -> str | None:
            try:
                rollcall.proposals.approve(_proposal_id(action), user)
            except UserError:
                if retried:
                    # A redelivery of a click that was already handled: stay quiet.
                    return None
                raise
            return None

        reply_errors("approve", ephemeral(client, body), work)

    @app.action("reject")
    def reject(ack: Ack, action: dict[str, Any], body: dict[str, Any], client: Any) -> None:
        """Reject a proposal."""
        ack()
        user = body["user"]["id"]
        reply_errors(
            "reject", ephemeral(client, body), lambda: (rollcall.proposals.reject(_proposal_id(action), user), None)[1]
        )

    @app.action("cancel_proposal")
    def cancel(ack: Ack, action: dict[str, Any], body: dict[str, Any], client: Any) -> None:
        """Withdraw a proposal (its proposer only)."""
        ack()
        user = body["user"]["id"]
        reply_errors(
            "cancel", ephemeral(client, body), lambda: (rollcall.proposals.cancel(_proposal_id(action), user), None)[1]
        )
