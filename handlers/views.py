"""Modal submissions: the proposal form and the rejection reason."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App

from bot import forms
from bot.app import Rollcall
from bot.errors import MAX_ID, UserError
from bot.vast import VastError
from handlers.common import UNEXPECTED, reply_errors

logger = logging.getLogger(__name__)


def register(app: App, rollcall: Rollcall) -> None:
    """Register the listeners for the proposal and rejection modals."""

    @app.view(forms.PROPOSE_CALLBACK)
    def submit_proposal(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        """Validate the form; errors are shown next to their field and keep the modal open."""
        user = body["user"]["id"]
        request, errors = forms.read_propose_form(view["state"]["values"])
        if errors:
            ack(response_action="errors", errors=errors)
            return
        assert request is not None
        channel_id = forms.metadata(view).get("channel_id") or user
        try:
            rollcall.proposals.propose(request, user, channel_id)
        except UserError as error:
            ack(response_action="errors", errors={"target": str(error)[:2000]})
            return
        except VastError as error:
            logger.warning("Proposal form failed on the Vast API: %s", error)
            ack(response_action="errors", errors={"target": f"{error}. Try again in a minute."[:2000]})
            return
        except Exception:
            logger.exception("Proposal form failed")
            ack(response_action="errors", errors={"target": UNEXPECTED})
            return
        ack()

    @app.view(forms.REJECT_CALLBACK)
    def submit_rejection(ack: Ack, body: dict[str, Any], view: dict[str, Any], client: Any) -> None:
        """Reject the proposal named in the modal's metadata, with the optional reason."""
        ack()
        user = body["user"]["id"]
        proposal_id = forms.metadata(view).get("proposal_id")
        reason = forms.reason_from(view["state"]["values"])

        def reply(message: str) -> None:
            proposal = None
            if isinstance(proposal_id, int) and 0 < proposal_id < MAX_ID:
                proposal = rollcall.store.proposal(proposal_id)
            channel = proposal["channel_id"] if proposal else user
            client.chat_postEphemeral(channel=channel, user=user, text=message)

        def work() -> None:
            if not isinstance(proposal_id, int) or not 0 < proposal_id < MAX_ID:
                raise UserError("This form does not name a proposal; use the Reject button on the proposal.")
            rollcall.proposals.reject(proposal_id, user, reason)

        reply_errors("reject form", reply, work)
