"""Keeping the proposal message (which is also the rollout's parent message) up to date."""

from __future__ import annotations

from typing import Any

from bot import render
from bot.context import Context
from bot.outbox import post_payload
from bot.store import Batch


def proposal_key(proposal_id: int) -> str:
    return f"proposal:{proposal_id}"


def refresh_proposal(ctx: Context, proposal_id: int) -> None:
    """Queue an edit of the proposal message with its current state and progress."""
    proposal = ctx.store.proposal(proposal_id)
    if proposal is None:
        return
    text, blocks = proposal_message_for(ctx, proposal)
    ctx.outbox.update(proposal_key(proposal_id), proposal["channel_id"], text, blocks)


def proposal_message_for(ctx: Context, proposal: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    approvals = ctx.store.decisions(proposal["id"], "approve")
    rejections = ctx.store.decisions(proposal["id"], "reject")
    rollout = ctx.store.rollout_for_proposal(proposal["id"])
    progress = rollout.get("progress") if rollout else None
    return render.proposal_message(
        proposal,
        approvals,
        rejection=rejections[0] if rejections else None,
        progress=progress,
        rollout=rollout,
    )


def thread_post(
    ctx: Context,
    proposal: dict[str, Any],
    key: str,
    text: str,
    blocks: list[dict[str, Any]] | None = None,
    *,
    broadcast: bool = False,
    batch: Batch | None = None,
) -> None:
    """Queue a reply in the proposal's thread, within `batch` when one is given.

    With a batch, the reply commits together with the state change it reports; the caller
    wakes the outbox after the batch.
    """
    payload = post_payload(text, blocks or [render.section(text)], broadcast=broadcast)
    if batch is None:
        ctx.store.enqueue("post", key, proposal["channel_id"], payload, proposal_key(proposal["id"]))
        ctx.outbox.wake()
    else:
        batch.enqueue("post", key, proposal["channel_id"], payload, proposal_key(proposal["id"]))


def people(ctx: Context, proposal: dict[str, Any]) -> list[str]:
    """Return the proposer and the approvers, who are mentioned in alerts."""
    approvers = [row["user_id"] for row in ctx.store.decisions(proposal["id"], "approve")]
    return [proposal["proposer_id"], *approvers]
