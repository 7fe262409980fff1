"""The rollout engine: Vast's two update steps, then polling workers until they all rejoin.

Each step is journaled before and after it runs. After a crash the engine resumes from the
journal: a template that Vast already saved is found again by its content instead of being
saved twice, and a worker group that already points at the new template is not updated again.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from bot import render
from bot.alerts import Alerts
from bot.context import Context
from bot.drift import drift, group_search, live_group
from bot.errors import UserError
from bot.notify import refresh_proposal, thread_post
from bot.progress import advance, workers_to_check
from bot.templates import format_search, normalize_search
from bot.vast import VastError, VastUnavailable, VastWorkersLoading

logger = logging.getLogger(__name__)

UNREACHABLE_AFTER_POLLS = 5
# Instance look-ups one at a time are a fallback for a Vast without the paged list; keep them few.
MAX_SINGLE_INSTANCE_CALLS = 10


class RolloutEngine:
    """Runs approved proposals as rollouts.

    Args:
        ctx: shared services.
        invalidate: called with (proposal, detail) for pending proposals that a finished rollout
            made stale.
    """

    def __init__(self, ctx: Context, invalidate: Any = None) -> None:
        self.ctx = ctx
        self.invalidate = invalidate
        self.alerts = Alerts(ctx)
        self._locks: dict[int, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _lock(self, rollout_id: int) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(rollout_id, threading.Lock())

    # Starting -------------------------------------------------------------------------------

    def begin(self, proposal_id: int) -> int | None:
        """Create the rollout of an approved proposal and schedule its steps.

        Returns:
            The rollout id, or None when another rollout runs on the worker group.
        """
        proposal = self.ctx.store.proposal(proposal_id)
        if proposal is None:
            return None
        change = proposal["change"]
        if proposal["kind"] == "rollback":
            template_changed = (proposal["target_template"] or {}).get("hash_id") != proposal["base_template_hash"]
        else:
            template_changed = bool(
                change.get("env_set") or change.get("env_remove") or change.get("image") or change.get("tag")
            )
        rollout_id = self.ctx.store.start_rollout(
            proposal_id,
            workergroup_id=proposal["workergroup_id"],
            endpoint_id=proposal["endpoint_id"],
            phase="saving_template" if template_changed else "pointing_group",
            channel_id=proposal["channel_id"],
            old_template_hash=proposal["base_template_hash"],
            old_template_id=proposal["base_template_id"],
            old_search=proposal["base_search"],
            new_search=proposal["target_search"],
            new_template_hash=None if template_changed else proposal["base_template_hash"],
            new_template_id=None if template_changed else proposal["base_template_id"],
        )
        if rollout_id is None:
            running = self.ctx.store.running_rollout(proposal["workergroup_id"])
            note = f"rollout #{running['id']}" if running else "another rollout"
            thread_post(
                self.ctx,
                proposal,
                f"lock-wait:{proposal_id}",
                f"Approved, but {note} is running on this worker group; this proposal waits until it finishes.",
            )
            return None
        self.ctx.store.audit(proposal_id, "rollout started", None, f"rollout #{rollout_id}")
        logger.info("Rollout %s started for proposal %s", rollout_id, proposal_id)
        refresh_proposal(self.ctx, proposal_id)
        self.ctx.jobs.once(f"steps-{rollout_id}", self.run_steps, rollout_id)
        return rollout_id

    def resume_all(self) -> None:
        """Pick up every running rollout after a restart."""
        for rollout in self.ctx.store.running_rollouts():
            logger.info("Resuming rollout %s in phase %s", rollout["id"], rollout["phase"])
            self.ctx.store.journal(rollout["id"], "resumed", rollout["phase"])
            if rollout["phase"] == "rolling":
                self.schedule_poll(rollout["id"])
            else:
                self.ctx.jobs.once(f"steps-{rollout['id']}", self.run_steps, rollout["id"])
        for proposal in self.ctx.store.proposals(statuses=("approved",), limit=1000):
            if self.ctx.store.rollout_for_proposal(proposal["id"]) is None:
                self.begin(proposal["id"])

    def schedule_poll(self, rollout_id: int) -> None:
        self.ctx.jobs.every(f"poll-{rollout_id}", self.ctx.settings.poll_seconds, self.poll, rollout_id)

    # Steps ----------------------------------------------------------------------------------

    def run_steps(self, rollout_id: int) -> None:
        """Run step 1 (save the template) and step 2 (point the worker group) as needed."""
        with self._lock(rollout_id):
            rollout = self.ctx.store.rollout(rollout_id)
            if rollout is None or rollout["status"] != "running":
                return
            proposal = self.ctx.store.proposal(rollout["proposal_id"])
            assert proposal is not None
            try:
                if rollout["phase"] == "saving_template":
                    self._save_template(rollout, proposal)
                    rollout = self.ctx.store.rollout(rollout_id)
                    assert rollout is not None
                if rollout["phase"] == "pointing_group":
                    self._point_group(rollout, proposal)
            except VastUnavailable as error:
                # Transient Vast failures never fail a rollout: the step runs again after one poll
                # interval (at least 1 s), and the journal makes a repeat safe.
                delay = max(self.ctx.settings.poll_seconds, 1.0)
                logger.warning("Rollout %s step failed for now: %s; retrying in %.1f s", rollout_id, error, delay)
                self.ctx.store.journal(rollout_id, "step retry", str(error))
                self.ctx.jobs.once(f"steps-{rollout_id}", self.run_steps, rollout_id, at=self.ctx.clock() + delay)
                return
            except (VastError, UserError) as error:
                assert rollout is not None
                logger.error("Rollout %s failed at %s: %s", rollout_id, rollout["phase"], error)
                self.fail(rollout_id, f"Step {'1' if rollout['phase'] == 'saving_template' else '2'} failed: {error}")
                return
            self.schedule_poll(rollout_id)

    def _drift_before_start(self, proposal: dict[str, Any]) -> None:
        changes = drift(self.ctx.vast, proposal)
        if changes:
            raise UserError(
                f"the worker group changed since the proposal was made ({'; '.join(changes)}); "
                "nothing was changed in Vast"
            )

    def _save_template(self, rollout: dict[str, Any], proposal: dict[str, Any]) -> None:
        """Run step 1: save the new template version, or find the one a crashed run saved."""
        rollout_id = rollout["id"]
        steps = {entry["step"] for entry in self.ctx.store.journal_entries(rollout_id)}
        target = dict(proposal["target_template"])
        saved = None
        if "template save requested" in steps:
            # A previous run may have saved it before dying; Vast hashes content, so look it up.
            saved = self._find_saved_template(target, proposal)
            if saved:
                self.ctx.store.journal(rollout_id, "template found after restart", str(saved.get("hash_id")))
        else:
            self._drift_before_start(proposal)

        if saved is None:
            if proposal["kind"] == "rollback":
                saved = self.ctx.vast.find_template(str(target.get("hash_id")))
                if saved is None:
                    raise UserError(f"template {target.get('hash_id')} no longer exists in Vast")
            else:
                self.ctx.store.journal(rollout_id, "template save requested")
                body = dict(target)
                body["hash_id"] = proposal["base_template_hash"]
                if proposal["base_template_id"] is not None:
                    body["id"] = proposal["base_template_id"]
                saved = self.ctx.vast.save_template(body)

        new_hash, new_id = str(saved["hash_id"]), saved.get("id")
        if proposal["kind"] == "rollback":
            text = (
                f"Step 1 of 2: returning to the earlier template {render.code(new_hash)} (id {new_id}), "
                "so there is nothing to save."
            )
        else:
            text = f"Step 1 of 2: saved the new template version {render.code(new_hash)} (id {new_id})."

        with self.ctx.store.batch() as batch:
            batch.update_rollout(rollout_id, new_template_hash=new_hash, new_template_id=new_id, phase="pointing_group")
            batch.journal(rollout_id, "template saved", f"{new_hash} (id {new_id})")
            thread_post(self.ctx, proposal, f"rollout:{rollout_id}:step1", text, batch=batch)
        self.ctx.outbox.wake()
        logger.info("Rollout %s step 1 done: template %s", rollout_id, new_hash)

    def _find_saved_template(self, target: dict[str, Any], proposal: dict[str, Any]) -> dict[str, Any] | None:
        filters: dict[str, Any] = {}
        for name in ("name", "image", "tag"):
            if target.get(name):
                filters[name] = {"eq": target[name]}
        for template in self.ctx.vast.find_templates(filters):
            if template.get("hash_id") == proposal["base_template_hash"]:
                continue
            if all(str(template.get(name) or "") == str(target.get(name) or "") for name in ("env", "image", "tag")):
                return template
        return None

    def _point_group(self, rollout: dict[str, Any], proposal: dict[str, Any]) -> None:
        """Run step 2: point the worker group at the new template, unless a crashed run did."""
        rollout_id = rollout["id"]
        steps = {entry["step"] for entry in self.ctx.store.journal_entries(rollout_id)}
        target_search = normalize_search(rollout["new_search"])
        already = False
        if "group update requested" in steps:
            group = live_group(self.ctx.vast, rollout["workergroup_id"])
            if (
                group
                and str(group.get("template_hash")) == rollout["new_template_hash"]
                and group_search(group) == target_search
            ):
                already = True
                self.ctx.store.journal(rollout_id, "group already updated before restart")
        elif rollout["new_template_hash"] == proposal["base_template_hash"]:
            # A search-filter-only change has no step 1, so the drift check happens here.
            self._drift_before_start(proposal)

        if not already:
            self._record_ready_before(rollout_id)
            self.ctx.store.journal(rollout_id, "group update requested")
            self.ctx.vast.update_workergroup(
                rollout["workergroup_id"],
                rollout["endpoint_id"],
                template_hash=rollout["new_template_hash"],
                template_id=rollout["new_template_id"],
                search_params=format_search(target_search),
            )

        now = self.ctx.clock()
        search_note = ""
        if target_search != normalize_search(rollout["old_search"]):
            search_note = f" with search filter {render.code(format_search(target_search))}"
        with self.ctx.store.batch() as batch:
            batch.update_rollout(rollout_id, phase="rolling", triggered_at=now)
            batch.journal(rollout_id, "group updated", rollout["new_template_hash"] or "")
            thread_post(
                self.ctx,
                proposal,
                f"rollout:{rollout_id}:step2",
                f"Step 2 of 2: pointed worker group {rollout['workergroup_id']} at template "
                f"{render.code(rollout['new_template_hash'])}{search_note}. Vast is now updating the workers.",
                batch=batch,
            )
        self.ctx.outbox.wake()
        refresh_proposal(self.ctx, proposal["id"])
        logger.info(
            "Rollout %s step 2 done: group %s points at %s",
            rollout_id,
            rollout["workergroup_id"],
            rollout["new_template_hash"],
        )

    def _record_ready_before(self, rollout_id: int) -> None:
        """Record the workers as they were before step 2.

        The ready count feeds the capacity alert. The rows are the first poll's baseline, so it
        looks up only the workers that changed since, instead of every worker of the group. The
        instance look-ups for the baseline happen here, before Vast starts updating, because at
        Vast's rate limit they take 2 s per 100 workers. They find the workers that already run
        the target template, as they do in a rollback.
        """
        rollout = self.ctx.store.rollout(rollout_id)
        assert rollout is not None
        template_changed = rollout["new_template_hash"] != rollout["old_template_hash"]
        try:
            workers = self.ctx.vast.workergroup_workers(rollout["workergroup_id"])
            settled = workers_to_check(workers, {})
            instances = self._instances(settled) if template_changed and settled else {}
        except VastError as error:
            logger.warning("Could not read the workers before rollout %s: %s", rollout_id, error)
            return
        baseline = advance(
            workers,
            {},
            instances,
            new_hash=rollout["new_template_hash"],
            template_changed=template_changed,
            now=self.ctx.clock(),
        )
        with self.ctx.store.batch() as batch:
            batch.save_workers(rollout_id, baseline.rows)
            batch.update_rollout(rollout_id, ready_before=baseline.progress.ready)

    # Polling --------------------------------------------------------------------------------

    def poll(self, rollout_id: int) -> None:
        """Read the workers once and report what changed (the scheduler's poll job)."""
        with self._lock(rollout_id):
            rollout = self.ctx.store.rollout(rollout_id)
            if rollout is None or rollout["status"] != "running":
                self.ctx.jobs.cancel(f"poll-{rollout_id}")
                return
            if rollout["phase"] != "rolling":
                return
            proposal = self.ctx.store.proposal(rollout["proposal_id"])
            assert proposal is not None
            try:
                self._poll(rollout, proposal)
            except (VastUnavailable, VastWorkersLoading) as error:
                self._poll_failed(rollout, proposal, error)
            except VastError as error:
                # A 4xx on a poll is not transient in theory. A rollout must not fail on a read,
                # so it is counted like an outage and reported after several in a row.
                self._poll_failed(rollout, proposal, error)

    def _poll_failed(self, rollout: dict[str, Any], proposal: dict[str, Any], error: VastError) -> None:
        failed = rollout["failed_polls"] + 1
        since = rollout["unreachable_since"] or self.ctx.clock()
        self.ctx.store.update_rollout(rollout["id"], failed_polls=failed, unreachable_since=since)
        logger.warning("Rollout %s poll failed (%d in a row): %s", rollout["id"], failed, error)
        if failed == UNREACHABLE_AFTER_POLLS:
            thread_post(
                self.ctx,
                proposal,
                f"rollout:{rollout['id']}:unreachable:{int(since)}",
                f":warning: Vast API unreachable since {render.slack_date(since)}, still retrying "
                f"({render.escape(error.detail)}).",
            )
        self._check_timeout(rollout, proposal)

    def _poll(self, rollout: dict[str, Any], proposal: dict[str, Any]) -> None:
        rollout_id = rollout["id"]
        workers = self.ctx.vast.workergroup_workers(rollout["workergroup_id"])
        if rollout["failed_polls"] >= UNREACHABLE_AFTER_POLLS:
            thread_post(
                self.ctx,
                proposal,
                f"rollout:{rollout_id}:reachable:{int(rollout['unreachable_since'] or 0)}",
                "Vast API answers again; following the rollout.",
            )
        if rollout["failed_polls"]:
            self.ctx.store.update_rollout(rollout_id, failed_polls=0, unreachable_since=None)

        previous = self.ctx.store.workers(rollout_id)
        template_changed = rollout["new_template_hash"] != rollout["old_template_hash"]
        instances: dict[int, dict[str, Any]] = {}
        if template_changed:
            wanted = workers_to_check(workers, previous, rollout["triggered_at"])
            if wanted:
                instances = self._instances(wanted)
        now = self.ctx.clock()
        result = advance(
            workers,
            previous,
            instances,
            new_hash=rollout["new_template_hash"],
            template_changed=template_changed,
            now=now,
            triggered_at=rollout["triggered_at"],
        )
        progress = result.progress.to_dict()
        changed = progress != rollout.get("progress")
        # The worker rows and the reply that reports their changes commit together, so a crash
        # cannot record a change whose reply was never queued.
        with self.ctx.store.batch() as batch:
            batch.save_workers(rollout_id, result.rows)
            batch.update_rollout(rollout_id, progress=progress, worker_total=progress["total"])
            if result.transitions:
                text, blocks = render.worker_updates(result.transitions, progress)
                thread_post(self.ctx, proposal, f"rollout:{rollout_id}:poll:{now:.3f}", text, blocks, batch=batch)
        self.ctx.outbox.wake()
        logger.info(
            "Rollout %s poll: %d/%d rejoined, %d updating, %d errors, %d changes, %d instance look-ups",
            rollout_id,
            progress["rejoined"],
            progress["total"],
            progress["updating"],
            progress["errors"],
            len(result.transitions),
            result.checked_instances,
        )
        if rollout.get("ready_before") is None:
            self.ctx.store.update_rollout(rollout_id, ready_before=progress["ready"])
            rollout["ready_before"] = progress["ready"]
        self.alerts.worker_errors(rollout, proposal, result.transitions)
        self.alerts.stuck_workers(rollout, proposal, result.rows, now)
        self.alerts.capacity(rollout, proposal, progress["ready"])
        if changed:
            refresh_proposal(self.ctx, proposal["id"])
        if result.progress.done and progress["updating"] == 0:
            self.complete(rollout_id, progress)
        elif progress["total"] == 0:
            self.complete(rollout_id, progress, note="The worker group has no workers, so there was nothing to update.")
        else:
            self._check_timeout(rollout, proposal)

    def _instances(self, worker_ids: list[int]) -> dict[int, dict[str, Any]]:
        try:
            return self.ctx.vast.instances(worker_ids)
        except VastError as error:
            if isinstance(error, VastUnavailable) or error.status not in (404, 405):
                raise
        # This Vast has no paged instance list: read a few instances one by one per poll.
        found = {}
        for worker_id in worker_ids[:MAX_SINGLE_INSTANCE_CALLS]:
            found[worker_id] = self.ctx.vast.instance(worker_id)
        return found

    def _check_timeout(self, rollout: dict[str, Any], proposal: dict[str, Any]) -> None:
        limit = self.ctx.settings.rollout_timeout_minutes * 60
        elapsed = self.ctx.clock() - rollout["started_at"]
        if elapsed > limit:
            self.fail(rollout["id"], f"Timed out after {render.duration(elapsed)}.", alert=False)
            self.alerts.raise_alert(
                rollout,
                proposal,
                "rollout",
                "timeout",
                f"rollout #{rollout['id']} did not finish within "
                f"{self.ctx.settings.rollout_timeout_minutes:g} minutes and is marked failed",
                running=False,
            )

    # Finishing ------------------------------------------------------------------------------

    def complete(self, rollout_id: int, progress: dict[str, Any], note: str = "") -> None:
        rollout = self.ctx.store.rollout(rollout_id)
        assert rollout is not None
        proposal = self.ctx.store.proposal(rollout["proposal_id"])
        assert proposal is not None
        seconds = self.ctx.clock() - rollout["started_at"]
        summary = note or f"{progress['rejoined']}/{progress['total']} workers updated in {render.duration(seconds)}"
        text, blocks = render.completion_message(proposal, rollout, progress, seconds)
        if note:
            text, blocks = note, [render.section(note)]
        with self.ctx.store.batch() as batch:
            if not batch.finish_rollout(rollout_id, "completed", "completed", summary):
                return
            batch.journal(rollout_id, "completed", summary)
            batch.audit(proposal["id"], "rollout completed", None, summary)
            thread_post(
                self.ctx, proposal, f"rollout:{rollout_id}:completed", text, blocks, broadcast=True, batch=batch
            )
        self.ctx.outbox.wake()
        self.ctx.jobs.cancel(f"poll-{rollout_id}")
        logger.info("Rollout %s completed: %s", rollout_id, summary)
        refresh_proposal(self.ctx, proposal["id"])
        self._invalidate_stale(proposal)

    def abort(self, rollout_id: int, user_id: str) -> str:
        """Ask Vast to cancel the rolling update and mark the rollout aborted.

        Raises:
            UserError: the rollout is not running.
            VastError: Vast refused or could not be reached; the rollout keeps running.
        """
        with self._lock(rollout_id):
            rollout = self.ctx.store.rollout(rollout_id)
            if rollout is None or rollout["status"] != "running":
                state = rollout["status"] if rollout else "unknown"
                raise UserError(f"Rollout #{rollout_id} is not running ({state}); there is nothing to abort.")
            proposal = self.ctx.store.proposal(rollout["proposal_id"])
            assert proposal is not None
            if rollout["phase"] == "rolling":
                self.ctx.vast.cancel_update(rollout["workergroup_id"])
                self.ctx.store.journal(rollout_id, "cancel requested", user_id)
            updated = sorted(wid for wid, row in self.ctx.store.workers(rollout_id).items() if row["on_new"])
            if rollout["phase"] != "rolling":
                detail = "Vast had not started updating workers yet, so no worker runs the new configuration."
            elif updated:
                names = ", ".join(str(wid) for wid in updated[:40]) + (" and more" if len(updated) > 40 else "")
                detail = (
                    f"{len(updated)} workers already run the new configuration ({names}); the others stay "
                    "on the old one. Use `/rollout rollback` to return the updated ones."
                )
            else:
                detail = "No worker had switched to the new configuration yet."
            with self.ctx.store.batch() as batch:
                if not batch.finish_rollout(rollout_id, "aborted", "aborted", f"aborted by <@{user_id}>"):
                    raise UserError(f"Rollout #{rollout_id} has already finished.")
                batch.audit(proposal["id"], "rollout aborted", user_id)
                thread_post(
                    self.ctx,
                    proposal,
                    f"rollout:{rollout_id}:aborted",
                    f":octagonal_sign: Rollout #{rollout_id} aborted by <@{user_id}>; Vast was asked to cancel "
                    f"the rolling update. {detail}",
                    broadcast=True,
                    batch=batch,
                )
            self.ctx.outbox.wake()
            self.ctx.jobs.cancel(f"poll-{rollout_id}")
            self.ctx.jobs.cancel(f"steps-{rollout_id}")
        refresh_proposal(self.ctx, proposal["id"])
        logger.info("Rollout %s aborted by %s", rollout_id, user_id)
        return f"Rollout #{rollout_id} aborted."

    def fail(self, rollout_id: int, reason: str, *, alert: bool = True) -> None:
        rollout = self.ctx.store.rollout(rollout_id)
        assert rollout is not None
        proposal = self.ctx.store.proposal(rollout["proposal_id"])
        assert proposal is not None
        with self.ctx.store.batch() as batch:
            if not batch.finish_rollout(rollout_id, "failed", "failed", render.escape(reason)):
                return
            batch.journal(rollout_id, "failed", reason)
            batch.audit(proposal["id"], "rollout failed", None, reason)
            thread_post(
                self.ctx,
                proposal,
                f"rollout:{rollout_id}:failed",
                f":x: Rollout #{rollout_id} failed: {render.escape(reason)}",
                broadcast=True,
                batch=batch,
            )
        self.ctx.outbox.wake()
        self.ctx.jobs.cancel(f"poll-{rollout_id}")
        logger.error("Rollout %s failed: %s", rollout_id, reason)
        if alert:
            self.alerts.raise_alert(
                rollout,
                proposal,
                "rollout",
                "failed",
                f"rollout #{rollout_id} failed: {render.escape(reason)}",
                running=False,
            )
        refresh_proposal(self.ctx, proposal["id"])

    def _invalidate_stale(self, proposal: dict[str, Any]) -> None:
        if self.invalidate is None:
            return
        for other in self.ctx.store.proposals(
            statuses=("pending", "approved"), workergroup_id=proposal["workergroup_id"]
        ):
            if other["id"] != proposal["id"]:
                self.invalidate(other, f"rollout of proposal #{proposal['id']} changed the worker group")
