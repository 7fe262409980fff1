"""The services every part of the bot shares, built once by `bot.app.Rollcall`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.config import Settings
from bot.outbox import Outbox
from bot.policy import Membership
from bot.scheduler import Jobs
from bot.store import Store
from bot.vast import VastClient


@dataclass
class Context:
    """Settings plus the store, the Vast client, the Slack outbox and the scheduler."""

    settings: Settings
    store: Store
    vast: VastClient
    outbox: Outbox
    jobs: Jobs
    membership: Membership
    clock: Callable[[], float] = field(default=time.time)
