"""Comparing a worker group as Vast has it now with the base a proposal recorded."""

from __future__ import annotations

from typing import Any

from bot import render
from bot.templates import format_search, normalize_search
from bot.vast import VastClient


def live_group(vast: VastClient, workergroup_id: int) -> dict[str, Any] | None:
    """Return the worker group as Vast lists it now, or None when it no longer exists."""
    for group in vast.list_workergroups():
        if int(group["id"]) == workergroup_id:
            return group
    return None


def group_search(group: dict[str, Any]) -> dict[str, dict[str, object]]:
    """Return a worker group's search filter; Vast lists it as `search_query`."""
    return normalize_search(group.get("search_query", group.get("search_params")))


def drift(vast: VastClient, proposal: dict[str, Any]) -> list[str]:
    """Describe how the live worker group differs from the proposal's base; empty if not."""
    group = live_group(vast, proposal["workergroup_id"])
    if group is None:
        return [f"worker group {proposal['workergroup_id']} no longer exists"]
    changes = []
    live_hash = str(group.get("template_hash") or "")
    if live_hash != proposal["base_template_hash"]:
        changes.append(
            f"template: recorded {render.code(proposal['base_template_hash'])}, live {render.code(live_hash)}"
        )
    recorded = normalize_search(proposal["base_search"])
    if group_search(group) != recorded:
        changes.append(
            f"search filter: recorded {render.code(format_search(recorded))}, "
            f"live {render.code(format_search(group_search(group)))}"
        )
    return changes
