"""Read-only replies: `/rollout status`, `list`, `history` and `help`."""

from __future__ import annotations

from collections import Counter
from typing import Any

from bot import render
from bot.changes import PROPOSE_EXAMPLE, PROPOSE_USAGE, env_variable
from bot.context import Context
from bot.drift import group_search
from bot.errors import UserError, parse_id
from bot.notify import proposal_key
from bot.progress import normalize_status
from bot.templates import format_search
from bot.vast import VastWorkersLoading

HELP = f"""*Rollcall* proposes, approves and follows zero-downtime updates of Vast serverless endpoints.
• `{PROPOSE_USAGE}`: propose a change; upper-case keys are template environment variables, `-KEY` removes one. With no arguments it opens a form.
  Example: `{PROPOSE_EXAMPLE}`
• `/rollout status [ENDPOINT]`: live configuration, worker states and the running rollout
• `/rollout list`: endpoints, worker groups, current model and open proposals
• `/rollout history [ENDPOINT]`: the last 10 proposals; `/rollout history ID`: one proposal's audit trail
• `/rollout cancel ID`: withdraw a pending proposal or abort a running rollout
• `/rollout rollback ENDPOINT[/GROUP_ID]`: propose a return to the configuration before the last rollout
• `/rollout help`: this message
A teammate other than the proposer approves with the Approve button; Rollcall then saves the template, points the worker group at it and reports each worker in the proposal's thread."""


def _group_line(ctx: Context, group: dict[str, Any]) -> str:
    template = ctx.vast.find_template(str(group.get("template_hash") or "")) or {}
    model = env_variable(template, "MODEL_NAME")
    image = f"{template.get('image') or '?'}:{template.get('tag') or 'latest'}"
    search = format_search(group_search(group))
    return (
        f"group {group['id']}: model {render.code(model)}, image {render.code(image)}, "
        f"search {render.code(search or '(none)')}, template {render.code(group.get('template_hash'))}"
    )


def _open_items(ctx: Context, workergroup_id: int) -> list[str]:
    lines = []
    running = ctx.store.running_rollout(workergroup_id)
    if running:
        message = ctx.store.message(proposal_key(running["proposal_id"]))
        link = render.thread_link(running["channel_id"], message["ts"] if message else None)
        progress = running.get("progress") or {}
        lines.append(
            f"    running: rollout #{running['id']} of proposal #{running['proposal_id']}, "
            f"{progress.get('rejoined', 0)}/{progress.get('total', 0)} updated ({link})"
        )
    for proposal in ctx.store.proposals(statuses=("pending", "approved"), workergroup_id=workergroup_id):
        lines.append(
            f"    {proposal['status']}: proposal #{proposal['id']} by <@{proposal['proposer_id']}>: "
            f"{render.summary(proposal['diff'])}"
        )
    return lines


def endpoint_list(ctx: Context) -> str:
    """List every endpoint with its worker groups, current model and image, and open proposals."""
    endpoints = ctx.vast.list_endpoints()
    groups = ctx.vast.list_workergroups()
    if not endpoints:
        return "This Vast account has no serverless endpoints."
    lines = ["*Endpoints*"]
    for endpoint in endpoints:
        lines.append(
            f"*{render.escape(endpoint.get('endpoint_name'))}* (id {endpoint['id']}, "
            f"{render.escape(endpoint.get('endpoint_state') or 'active')})"
        )
        mine = [group for group in groups if int(group.get("endpoint_id", -1)) == int(endpoint["id"])]
        if not mine:
            lines.append("  no worker groups")
        for group in mine:
            lines.append("  • " + _group_line(ctx, group))
            lines.extend(_open_items(ctx, int(group["id"])))
    return "\n".join(lines)


def status(ctx: Context, endpoint_name: str | None) -> str:
    """Live configuration and worker states of one endpoint, or a short list of all of them."""
    if not endpoint_name:
        return endpoint_list(ctx)
    endpoints = [
        ep
        for ep in ctx.vast.list_endpoints()
        if str(ep.get("endpoint_name")) == endpoint_name or str(ep.get("id")) == endpoint_name
    ]
    if not endpoints:
        raise UserError(
            f"Endpoint `{render.escape(endpoint_name)}` was not found in Vast; `/rollout list` shows the endpoints."
        )
    endpoint = endpoints[0]
    lines = [f"*{render.escape(endpoint['endpoint_name'])}* (id {endpoint['id']})"]
    for group in ctx.vast.list_workergroups():
        if int(group.get("endpoint_id", -1)) != int(endpoint["id"]):
            continue
        lines.append("• " + _group_line(ctx, group))
        try:
            workers = ctx.vast.workergroup_workers(int(group["id"]))
            counts = Counter(normalize_status(worker.get("status")) for worker in workers)
            states = ", ".join(f"{count} {name}" for name, count in sorted(counts.items())) or "no workers"
            lines.append(f"    workers: {states}")
        except VastWorkersLoading as error:
            lines.append(f"    workers: not available yet ({render.escape(error.detail)})")
        lines.extend(_open_items(ctx, int(group["id"])))
    return "\n".join(lines)


def history(ctx: Context, argument: str | None) -> str:
    """List the last 10 proposals (of one endpoint), or the audit trail of one proposal id."""
    if argument and argument.lstrip("#").isdigit():
        return audit_trail(ctx, parse_id(argument, "proposal", "`/rollout history ID`"))
    endpoint_id = None
    if argument:
        matches = [ep for ep in ctx.vast.list_endpoints() if str(ep.get("endpoint_name")) == argument]
        if not matches:
            raise UserError(
                f"Endpoint `{render.escape(argument)}` was not found in Vast; "
                "use `/rollout history` for every endpoint or `/rollout history ID` for one proposal."
            )
        endpoint_id = int(matches[0]["id"])
    proposals = ctx.store.proposals(endpoint_id=endpoint_id, limit=10)
    if not proposals:
        return "No proposals yet."
    lines = ["*Recent proposals* (newest first)"]
    for proposal in proposals:
        approvers = ", ".join(f"<@{row['user_id']}>" for row in ctx.store.decisions(proposal["id"])) or "none"
        rollout = ctx.store.rollout_for_proposal(proposal["id"])
        timing = ""
        if rollout:
            timing = f", started {render.slack_date(rollout['started_at'])}"
            if rollout.get("finished_at"):
                timing += f", took {render.duration(rollout['finished_at'] - rollout['started_at'])}"
        lines.append(
            f"• #{proposal['id']} {render.escape(proposal['endpoint_name'])}/{proposal['workergroup_id']}: "
            f"*{proposal['status']}*, by <@{proposal['proposer_id']}>, approved by {approvers}{timing}. "
            f"{render.summary(proposal['diff'])}"
        )
    return "\n".join(lines)


def audit_trail(ctx: Context, proposal_id: int) -> str:
    proposal = ctx.store.proposal(proposal_id)
    if proposal is None:
        raise UserError(f"Proposal #{proposal_id} does not exist.")
    entries: list[tuple[float, int, str]] = []
    for entry in ctx.store.audit_trail(proposal_id):
        who = f" by <@{entry['user_id']}>" if entry["user_id"] else ""
        detail = f": {render.escape(entry['detail'])}" if entry["detail"] else ""
        entries.append((entry["at"], len(entries), f"{entry['action']}{who}{detail}"))
    rollout = ctx.store.rollout_for_proposal(proposal_id)
    if rollout:
        for entry in ctx.store.journal_entries(rollout["id"]):
            detail = f": {render.escape(entry['detail'])}" if entry["detail"] else ""
            entries.append((entry["at"], len(entries), f"rollout #{rollout['id']} {entry['step']}{detail}"))
    lines = [f"*Proposal #{proposal_id}* ({proposal['status']}): {render.summary(proposal['diff'])}"]
    lines += [f"• {render.slack_date(at)} {text}" for at, _, text in sorted(entries)]
    return "\n".join(lines)
