"""Worker phases in a rolling update, worked out from Vast's worker list.

Vast reports a status token per worker; Rollcall turns it into one of these phases:

- waiting: still on the old configuration and not yet updating;
- draining: still on the old configuration, serving in-flight requests (`reqs_working` > 0);
- updating: between being picked for the update and being ready again (UPDATE_*, STARTING,
  LOADING, MODEL_LOADING, REBOOTING, ...);
- rejoined: ready (IDLE) or parked (STOPPED) on the new configuration;
- error: in ERROR;
- other: stopping, being destroyed, or a status Rollcall does not know.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

UPDATING_STATUSES = {
    "PENDING",
    "CREATING",
    "CREATED",
    "LOADING",
    "MODEL_LOADING",
    "STARTING",
    "UPDATE_READY",
    "UPDATE_REBOOTING",
    "UPDATE_STARTING",
    "REBOOTING",
}
# A worker stuck in one of these for too long is reported; PENDING and CREATING are excluded
# because recruiting a machine can legitimately take long.
LOADING_STATUSES = {
    "LOADING",
    "MODEL_LOADING",
    "STARTING",
    "UPDATE_READY",
    "UPDATE_REBOOTING",
    "UPDATE_STARTING",
    "REBOOTING",
}
SETTLED_STATUSES = {"IDLE", "STOPPED"}


def normalize_status(value: object) -> str:
    """Return Vast's status token in upper case; Vast's docs use upper case, its CLI lower."""
    text = str(value or "UNKNOWN").strip().upper()
    return text or "UNKNOWN"


def classify(status: str, on_new: bool, reqs_working: int) -> str:
    """Return the phase for a worker's status (see the module docstring)."""
    if status == "ERROR":
        return "error"
    if status in UPDATING_STATUSES:
        return "updating"
    if status in SETTLED_STATUSES:
        if on_new:
            return "rejoined"
        return "draining" if status == "IDLE" and reqs_working > 0 else "waiting"
    return "other"


def _number(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _count(value: Any) -> int:
    number = _number(value)
    return int(number) if number is not None else 0


@dataclass
class Progress:
    """Counts for the progress bar of one rollout."""

    total: int = 0
    rejoined: int = 0
    waiting: int = 0
    draining: int = 0
    updating: int = 0
    errors: int = 0
    ready: int = 0
    other: int = 0

    @property
    def done(self) -> bool:
        return self.total > 0 and self.rejoined == self.total

    def to_dict(self) -> dict[str, int]:
        return {
            name: getattr(self, name)
            for name in ("total", "rejoined", "waiting", "draining", "updating", "errors", "ready", "other")
        }


@dataclass
class Transition:
    """A worker that moved from one phase to another during a poll."""

    worker_id: int
    old_phase: str | None
    new_phase: str
    status: str
    seconds_updating: float | None = None
    drained_requests: int = 0
    status_msg: str = ""


@dataclass
class PollResult:
    """The result of one poll: rows to store, transitions to report and the new counts."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    progress: Progress = field(default_factory=Progress)
    checked_instances: int = 0


def updated_in_rollout(known: dict[str, Any] | None, triggered_at: float | None) -> bool:
    """True for a worker that the rollout saw updating after step 2 took effect.

    Such a worker reboots into the template that the group points at, so once it is settled
    again it runs the new configuration without an instance look-up.
    NOTE: a change to the group made outside Rollcall during the rollout would go unnoticed for
    these workers. Looking them up would cost 2 s per 100 workers at Vast's rate limit.
    """
    since = (known or {}).get("updating_since")
    return triggered_at is not None and since is not None and since >= triggered_at


def workers_to_check(
    workers: list[dict[str, Any]],
    previous: dict[int, dict[str, Any]],
    triggered_at: float | None = None,
) -> list[int]:
    """Return the workers whose template version must be read from their instance.

    Only settled workers that are new to this rollout, or whose status or `loaded_at` changed
    since the last poll, need a look-up. A worker confirmed on the new template stays confirmed,
    and one seen updating after `triggered_at` needs none. This keeps the number of instance
    look-ups proportional to the workers that changed, not to the size of the group.
    """
    wanted = []
    for worker in workers:
        worker_id = int(worker["id"])
        status = normalize_status(worker.get("status"))
        known = previous.get(worker_id)
        if status not in SETTLED_STATUSES or (known and known["on_new"]) or updated_in_rollout(known, triggered_at):
            continue
        loaded_at = _number(worker.get("loaded_at"))
        if known and known["status"] == status and known["loaded_at"] == loaded_at:
            continue
        wanted.append(worker_id)
    return wanted


def is_on_new(
    instance: dict[str, Any] | None,
    worker: dict[str, Any],
    new_hash: str | None,
    template_changed: bool,
    baseline_loaded_at: float | None,
) -> bool:
    """Decide whether a settled worker runs the new configuration.

    The instance's `template_hash_id` decides when the template changed and Vast reports it.
    Otherwise (a search-filter-only change, or an instance without the field) a worker runs the
    new configuration once it loaded again after the rollout first saw it; `baseline_loaded_at`
    is that first `loaded_at`, None for a worker that joined during the rollout. Comparing with
    the worker's own earlier value avoids comparing Vast's clock with ours.
    """
    if template_changed and instance and instance.get("template_hash_id"):
        return str(instance["template_hash_id"]) == new_hash
    loaded_at = _number(worker.get("loaded_at"))
    if loaded_at is None:
        return False
    return baseline_loaded_at is None or loaded_at > baseline_loaded_at


def advance(
    workers: list[dict[str, Any]],
    previous: dict[int, dict[str, Any]],
    instances: dict[int, dict[str, Any]],
    *,
    new_hash: str | None,
    template_changed: bool,
    now: float,
    triggered_at: float | None = None,
) -> PollResult:
    """Compare a fresh worker list with the stored one and return the changes.

    Args:
        workers: Vast's worker list for the group.
        previous: the stored rows of the last poll, by worker id.
        instances: instances read this poll, by id (see `workers_to_check`).
        new_hash: the template hash the group now points at.
        template_changed: False for a search-filter-only change.
        now: the time of this poll.
        triggered_at: when step 2 took effect, by the bot's clock (see `updated_in_rollout`).
    """
    result = PollResult(checked_instances=len(instances))
    progress = result.progress
    first_poll = not previous
    for worker in workers:
        worker_id = int(worker["id"])
        status = normalize_status(worker.get("status"))
        reqs = _count(worker.get("reqs_working"))
        loaded_at = _number(worker.get("loaded_at"))
        known = previous.get(worker_id)
        # A worker first seen on the first poll keeps its loaded_at as the baseline; one that
        # joined later has none, so any loaded_at counts as a reload.
        if known:
            baseline = known["baseline_loaded_at"]
        elif first_poll:
            baseline = loaded_at
        else:
            baseline = None
        on_new = bool(known and known["on_new"])
        if not on_new and status in SETTLED_STATUSES and template_changed and updated_in_rollout(known, triggered_at):
            on_new = True
        elif not on_new and status in SETTLED_STATUSES and (worker_id in instances or not template_changed):
            on_new = is_on_new(instances.get(worker_id), worker, new_hash, template_changed, baseline)
        phase = classify(status, on_new, reqs)
        status_msg = str(worker.get("status_msg") or (known or {}).get("status_msg") or "")

        row: dict[str, Any] = {
            "worker_id": worker_id,
            "status": status,
            "phase": phase,
            "loaded_at": loaded_at,
            "baseline_loaded_at": baseline,
            "reqs_working": reqs,
            "on_new": int(on_new),
            "first_seen": known["first_seen"] if known else now,
            # Since when the worker has had this status, so a worker hung in one state is found.
            "status_since": known["status_since"] if known and known["status"] == status else now,
            "updating_since": (known or {}).get("updating_since"),
            "rejoined_at": (known or {}).get("rejoined_at"),
            "status_msg": status_msg,
        }
        old_phase = known["phase"] if known else None
        if phase == "updating" and not row["updating_since"]:
            row["updating_since"] = now
        if phase == "rejoined" and not row["rejoined_at"]:
            row["rejoined_at"] = now
        if old_phase != phase and _worth_reporting(old_phase, phase):
            since = row["updating_since"] or (known or {}).get("first_seen") or now
            result.transitions.append(
                Transition(
                    worker_id=worker_id,
                    old_phase=old_phase,
                    new_phase=phase,
                    status=status,
                    seconds_updating=(now - since) if phase == "rejoined" else None,
                    drained_requests=(known or {}).get("reqs_working", 0) if old_phase == "draining" else 0,
                    status_msg=status_msg,
                )
            )
        result.rows.append(row)
        progress.total += 1
        setattr(progress, _COUNTER[phase], getattr(progress, _COUNTER[phase]) + 1)
        if status == "IDLE":
            progress.ready += 1
    return result


_COUNTER = {
    "waiting": "waiting",
    "draining": "draining",
    "updating": "updating",
    "rejoined": "rejoined",
    "error": "errors",
    "other": "other",
}


def _worth_reporting(old_phase: str | None, new_phase: str) -> bool:
    # The first sighting of a worker that is simply waiting or draining is not news; waiting and
    # draining flip with traffic, so only the start of an update, a rejoin and an error are.
    if new_phase in ("updating", "rejoined", "error"):
        return old_phase != new_phase
    return False
