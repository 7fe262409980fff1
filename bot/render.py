"""Slack messages as pure functions from stored records to `(text, blocks)`.

Every user-supplied string goes through `escape` (or `code`), so it cannot ping `@channel`,
form a link or break the layout. Slack limits a message to 50 blocks and a section to 3,000
characters; the builders stay under both.
"""

from __future__ import annotations

import time
from typing import Any

MAX_SECTION = 3000
MAX_WORKER_LINES = 25
MAX_STATUS_MSG = 200
BAR_WIDTH = 16

STATUS_LABELS = {
    "pending": "Waiting for approval",
    "approved": "Approved, starting",
    "running": "Rolling out",
    "completed": "Completed",
    "failed": "Failed",
    "aborted": "Aborted",
    "rejected": "Rejected",
    "expired": "Expired",
    "cancelled": "Cancelled",
    "invalidated": "Invalidated",
}


def escape(text: object) -> str:
    """Escape Slack's control characters (`&`, `<`, `>`) and nothing else."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def code(value: object | None, limit: int = 300) -> str:
    """Show a value as inline code; backticks inside would end the code span, so they are swapped."""
    if value is None:
        return "_(unset)_"
    text = str(value)
    if text == "":
        return "_(empty)_"
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return "`" + escape(text).replace("`", "ˋ") + "`"


def mention(user_id: str) -> str:
    return f"<@{user_id}>"


def slack_date(epoch: float) -> str:
    """Format a date that Slack shows in each reader's time zone, with a UTC fallback."""
    fallback = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(epoch))
    return f"<!date^{int(epoch)}^{{date_short_pretty}} {{time}}|{fallback}>"


def duration(seconds: float) -> str:
    """Format seconds as `1h02m`, `3m12s` or `45s`."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def thread_link(channel_id: str, ts: str | None) -> str:
    if not ts:
        return "the rollout thread"
    return f"<https://slack.com/archives/{channel_id}/p{ts.replace('.', '')}|rollout thread>"


def section(text: str) -> dict[str, Any]:
    if len(text) > MAX_SECTION:
        text = text[: MAX_SECTION - 1] + "…"
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:MAX_SECTION]}]}


def target_label(proposal: dict[str, Any]) -> str:
    return f"{escape(proposal['endpoint_name'])} / group {proposal['workergroup_id']}"


# Proposals ------------------------------------------------------------------------------------


def diff_lines(diff: list[dict[str, Any]]) -> list[str]:
    """Render a proposal's diff as mrkdwn lines: `old → new`, VLLM_ARGS flag by flag."""
    lines = []
    for item in diff:
        label = item["label"]
        name = {"image": "Image", "search": "Search filter"}.get(label, f"`{escape(label)}`")
        if item.get("flags"):
            lines.append(f"• {name}:")
            for flag in item["flags"]:
                if flag.get("added"):
                    lines.append(f"      + {code(_flag_text(flag['flag'], flag['new']))}")
                elif flag.get("removed"):
                    lines.append(f"      − {code(_flag_text(flag['flag'], flag['old']))}")
                else:
                    lines.append(f"      {code(flag['flag'])}: {code(flag['old'])} → {code(flag['new'])}")
        else:
            lines.append(f"• {name}: {code(item.get('old'))} → {code(item.get('new'))}")
    return lines


def _flag_text(flag: str, value: str | None) -> str:
    return flag if value is None else f"{flag} {value}"


def summary(diff: list[dict[str, Any]]) -> str:
    """Summarize a change in one line, for fallback text and the thread."""
    parts = []
    for item in diff[:3]:
        label = item["label"]
        if label == "VLLM_ARGS":
            parts.append("VLLM_ARGS changed")
        else:
            parts.append(f"{label} → {item.get('new') if item.get('new') is not None else '(removed)'}")
    if len(diff) > 3:
        parts.append(f"and {len(diff) - 3} more")
    return escape(", ".join(parts))


def proposal_message(
    proposal: dict[str, Any],
    approvals: list[dict[str, Any]],
    *,
    rejection: dict[str, Any] | None = None,
    progress: dict[str, Any] | None = None,
    rollout: dict[str, Any] | None = None,
) -> tuple[str, list[dict[str, Any]]]:
    """Build the proposal message, which later also carries the rollout's progress bar."""
    status = proposal["status"]
    kind = "Rollback" if proposal.get("kind") == "rollback" else "Proposal"
    title = f"{kind} #{proposal['id']}: {target_label(proposal)}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
    ]
    who = f"*Proposed by* {mention(proposal['proposer_id'])}"
    if proposal.get("reason"):
        who += f"\n*Reason:* {escape(proposal['reason'])}"
    blocks.append(section(who))
    blocks.append(section("*Change*\n" + "\n".join(diff_lines(proposal["diff"]))))
    blocks.append(
        context(
            f"Base template {code(proposal['base_template_hash'])} · endpoint {proposal['endpoint_id']} · "
            f"status: *{STATUS_LABELS.get(status, status)}*"
        )
    )

    needed = proposal["approvals_required"]
    approvers = ", ".join(mention(row["user_id"]) for row in approvals)
    if status == "pending":
        line = f"*Approvals:* {len(approvals)} of {needed}"
        if approvers:
            line += f" ({approvers})"
        if proposal.get("expires_at"):
            line += f" · expires {slack_date(proposal['expires_at'])}"
        blocks.append(section(line))
        blocks.append(proposal_buttons(proposal))
    elif approvals:
        last = approvals[-1]
        blocks.append(section(f"*Approved by* {approvers} · {slack_date(last['at'])}"))
    elif needed == 0 and status not in ("cancelled", "invalidated", "expired", "rejected"):
        blocks.append(
            section(
                f"*Started at once by* {mention(proposal['proposer_id'])}: rollbacks need no approval "
                "(ROLLCALL_ROLLBACK_APPROVALS=0)."
            )
        )
    if rejection:
        line = f"*Rejected by* {mention(rejection['user_id'])} · {slack_date(rejection['at'])}"
        if rejection.get("reason"):
            line += f"\n*Reason:* {escape(rejection['reason'])}"
        blocks.append(section(line))
    if status in ("expired", "cancelled", "invalidated") and proposal.get("status_detail"):
        blocks.append(section(f"*{STATUS_LABELS[status]}:* {proposal['status_detail']}"))
    if progress is not None:
        blocks.append(section(progress_text(progress, rollout)))
    elif rollout and rollout.get("phase") in PHASE_LABELS and rollout.get("status") == "running":
        blocks.append(section(f"*Rollout #{rollout['id']}:* {PHASE_LABELS[rollout['phase']]}…"))
    if rollout and rollout.get("summary") and status in ("completed", "failed", "aborted"):
        # Summaries are written by Rollcall, with any text from Vast already escaped.
        blocks.append(context(rollout["summary"]))

    text = f"{title}: {STATUS_LABELS.get(status, status)}. {summary(proposal['diff'])}"
    return text, blocks


def proposal_buttons(proposal: dict[str, Any]) -> dict[str, Any]:
    value = str(proposal["id"])
    return {
        "type": "actions",
        # A new block_id per state, because Slack expects one for each version of a message.
        "block_id": f"proposal-{value}-{proposal['status']}",
        "elements": [
            {
                "type": "button",
                "action_id": "approve",
                "text": {"type": "plain_text", "text": "Approve"},
                "style": "primary",
                "value": value,
                "confirm": {
                    "title": {"type": "plain_text", "text": "Start this rollout?"},
                    "text": {
                        "type": "mrkdwn",
                        "text": (f"Approving can start the rolling update of {target_label(proposal)}."),
                    },
                    "confirm": {"type": "plain_text", "text": "Approve"},
                    "deny": {"type": "plain_text", "text": "Not yet"},
                },
            },
            {
                "type": "button",
                "action_id": "reject",
                "text": {"type": "plain_text", "text": "Reject"},
                "style": "danger",
                "value": value,
            },
            {
                "type": "button",
                "action_id": "cancel_proposal",
                "text": {"type": "plain_text", "text": "Cancel"},
                "value": value,
            },
        ],
    }


def progress_bar(done: int, total: int) -> str:
    filled = round(BAR_WIDTH * done / total) if total else 0
    return "█" * filled + "░" * (BAR_WIDTH - filled)


def progress_text(progress: dict[str, Any], rollout: dict[str, Any] | None = None) -> str:
    total, done = progress.get("total", 0), progress.get("rejoined", 0)
    line = f"*Progress:* `{progress_bar(done, total)}` *{done}/{total}* on the new configuration"
    details = (
        f"{progress.get('draining', 0)} draining · {progress.get('updating', 0)} updating · "
        f"{progress.get('errors', 0)} in error · {progress.get('ready', 0)} ready (IDLE)"
    )
    phase = (rollout or {}).get("phase")
    if phase and phase != "done":
        details += f" · step: {PHASE_LABELS.get(phase, phase)}"
    return f"{line}\n{details}"


PHASE_LABELS = {
    "saving_template": "saving the template",
    "pointing_group": "pointing the worker group at it",
    "rolling": "Vast is updating workers",
}


# Rollout thread -------------------------------------------------------------------------------

TRANSITION_VERBS = {
    "updating": "is updating",
    "rejoined": "rejoined on the new configuration",
    "error": "is in ERROR",
}


def transition_line(transition: Any) -> str:
    worker = f"worker {transition.worker_id}"
    if transition.new_phase == "updating":
        if transition.old_phase == "draining":
            return f"{worker} drained and is updating ({transition.status})"
        if transition.old_phase == "waiting" and transition.status == "STARTING":
            return f"{worker} was inactive and is starting to update"
        return f"{worker} is updating ({transition.status})"
    if transition.new_phase == "rejoined":
        if transition.seconds_updating:
            return f"{worker} rejoined on the new configuration after {duration(transition.seconds_updating)}"
        return f"{worker} rejoined on the new configuration"
    if transition.new_phase == "error":
        line = f"{worker} is in ERROR" if transition.old_phase else f"{worker} was already in ERROR"
        if transition.status_msg:
            line += f": {escape(_shorten(transition.status_msg, MAX_STATUS_MSG))}"
        return line
    return f"{worker} is {transition.new_phase}"


def worker_updates(transitions: list[Any], progress: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """Build one thread reply for a poll: the first workers by name, the rest counted by phase."""
    order = {"error": 0, "rejoined": 1, "updating": 2}
    ordered = sorted(transitions, key=lambda item: (order.get(item.new_phase, 3), item.worker_id))
    shown = ordered[:MAX_WORKER_LINES]
    lines = [f"• {transition_line(item)}" for item in shown]
    rest: dict[str, int] = {}
    for item in ordered[MAX_WORKER_LINES:]:
        rest[item.new_phase] = rest.get(item.new_phase, 0) + 1
    for phase, count in rest.items():
        verb = TRANSITION_VERBS.get(phase, f"are {phase}")
        verb = {"is updating": "started updating", "is in ERROR": "went into ERROR"}.get(verb, verb)
        lines.append(f"• and {count} more {verb}")
    counts = f"{progress.get('rejoined', 0)}/{progress.get('total', 0)} on the new configuration"
    text = _shorten(f"{counts}: " + "; ".join(line[2:] for line in lines), MAX_SECTION)
    return text, [*pack_sections(lines), context(counts)]


def pack_sections(lines: list[str]) -> list[dict[str, Any]]:
    """Put lines into as few sections as Slack's 3,000-character limit per section allows."""
    sections: list[dict[str, Any]] = []
    current: list[str] = []
    for line in lines:
        if current and len("\n".join([*current, line])) > MAX_SECTION:
            sections.append(section("\n".join(current)))
            current = []
        current.append(line)
    if current:
        sections.append(section("\n".join(current)))
    return sections


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def completion_message(
    proposal: dict[str, Any], rollout: dict[str, Any], progress: dict[str, Any], seconds: float
) -> tuple[str, list[dict[str, Any]]]:
    text = (
        f":white_check_mark: Rollout of {target_label(proposal)} complete: "
        f"{progress.get('rejoined', 0)}/{progress.get('total', 0)} workers run the new configuration "
        f"(template {code(rollout.get('new_template_hash'))}) after {duration(seconds)}. "
        f"{summary(proposal['diff'])}"
    )
    return text, [section(text)]


def alert_message(
    *,
    headline: str,
    proposal: dict[str, Any],
    people: list[str],
    thread: str,
    choices: str = "",
    buttons: list[dict[str, Any]] | None = None,
) -> tuple[str, list[dict[str, Any]]]:
    """An alert: who should look, what happened in one sentence, and what they can do."""
    names = " ".join(mention(user) for user in dict.fromkeys(people))
    text = f":rotating_light: {names} {headline} ({target_label(proposal)}, {thread})."
    if choices:
        text += f" {choices}"
    blocks = [section(text)]
    if buttons:
        blocks.append({"type": "actions", "elements": buttons})
    return text, blocks


def alert_buttons(value: str, *, running: bool) -> list[dict[str, Any]]:
    """Abort, Roll back and Keep waiting for a running rollout; only Roll back after it ended."""
    rollback = {
        "type": "button",
        "action_id": "alert_rollback",
        "text": {"type": "plain_text", "text": "Roll back"},
        "value": value,
        "confirm": {
            "title": {"type": "plain_text", "text": "Roll back?"},
            "text": {
                "type": "mrkdwn",
                "text": "This proposes returning the worker group to the template and "
                "search filter it had before this rollout (and aborts the rollout if it still runs).",
            },
            "confirm": {"type": "plain_text", "text": "Roll back"},
            "deny": {"type": "plain_text", "text": "Cancel"},
        },
    }
    if not running:
        return [rollback]
    abort = {
        "type": "button",
        "action_id": "alert_abort",
        "text": {"type": "plain_text", "text": "Abort"},
        "style": "danger",
        "value": value,
        "confirm": {
            "title": {"type": "plain_text", "text": "Abort the rollout?"},
            "text": {
                "type": "mrkdwn",
                "text": "Vast stops the rolling update; workers already updated keep the new template.",
            },
            "confirm": {"type": "plain_text", "text": "Abort"},
            "deny": {"type": "plain_text", "text": "Cancel"},
        },
    }
    wait = {
        "type": "button",
        "action_id": "alert_keep_waiting",
        "text": {"type": "plain_text", "text": "Keep waiting"},
        "value": value,
    }
    return [abort, rollback, wait]
