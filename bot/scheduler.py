"""The APScheduler jobs that drive rollouts and expire proposals.

Jobs live in memory and are re-created from SQLite when the bot starts, so the database is the
only state that must survive a restart.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler

logger = logging.getLogger(__name__)


def _utc(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC)


class Jobs:
    """A thin layer over `BackgroundScheduler` with Rollcall's job options."""

    def __init__(self, *, threads: int = 8) -> None:
        self.scheduler = BackgroundScheduler(executors={"default": ThreadPoolExecutor(threads)}, timezone=dt.UTC)

    def start(self) -> None:
        self.scheduler.start()

    def shutdown(self) -> None:
        """Stop scheduling and wait for running jobs, which are short: one poll or one step."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)

    def every(self, job_id: str, seconds: float, func: Callable[..., Any], *args: Any) -> None:
        """Run `func` now and then every `seconds`.

        coalesce: after a stall, one catch-up run is enough because each run reads live state.
        max_instances=1: two polls of one rollout must never overlap.
        misfire_grace_time: a run late by up to one interval still happens.
        """
        self.scheduler.add_job(
            func,
            "interval",
            args=args,
            seconds=seconds,
            id=job_id,
            replace_existing=True,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=max(1, int(seconds) + 1),
            next_run_time=dt.datetime.now(dt.UTC),
        )

    def once(self, job_id: str, func: Callable[..., Any], *args: Any, at: float | None = None) -> None:
        """Run `func` once, now or at epoch `at`.

        misfire_grace_time=None: a one-off job that was due while the bot was busy still runs.
        """
        when = _utc(at) if at is not None else dt.datetime.now(dt.UTC)
        self.scheduler.add_job(
            func,
            "date",
            args=args,
            run_date=when,
            id=job_id,
            replace_existing=True,
            misfire_grace_time=None,
            max_instances=1,
        )

    def cancel(self, job_id: str) -> None:
        with contextlib.suppress(JobLookupError):
            self.scheduler.remove_job(job_id)

    def has(self, job_id: str) -> bool:
        return self.scheduler.get_job(job_id) is not None
