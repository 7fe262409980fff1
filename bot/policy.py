"""Permission checks for proposing and approving, from lists of Slack user ids and user group ids."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

logger = logging.getLogger(__name__)

GROUP_CACHE_SECONDS = 300.0


class Membership:
    """Resolves Slack user group members, caching each group for a few minutes.

    Args:
        fetch: returns the user ids of a user group (`usergroups.users.list`); may raise.
    """

    def __init__(
        self,
        fetch: Callable[[str], Iterable[str]],
        *,
        ttl: float = GROUP_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def members(self, group_id: str) -> frozenset[str]:
        with self._lock:
            cached = self._cache.get(group_id)
            if cached and self._clock() - cached[0] < self._ttl:
                return cached[1]
        try:
            users = frozenset(self._fetch(group_id))
        except Exception:
            # Fail closed: without the member list nobody is let in through that group.
            logger.exception("Could not read the members of user group %s", group_id)
            return cached[1] if cached else frozenset()
        with self._lock:
            self._cache[group_id] = (self._clock(), users)
        return users


def is_group_id(entry: str) -> bool:
    # Slack user group ids start with S; user ids with U or W.
    return entry.startswith("S")


def allowed(user_id: str, entries: tuple[str, ...], membership: Membership) -> bool:
    """True when `entries` is empty or names the user directly or through a user group."""
    if not entries:
        return True
    if user_id in entries:
        return True
    return any(is_group_id(entry) and user_id in membership.members(entry) for entry in entries)


def describe(entries: tuple[str, ...]) -> str:
    """Name the people and groups of a list as Slack mentions."""
    return ", ".join(f"<!subteam^{entry}>" if is_group_id(entry) else f"<@{entry}>" for entry in entries)
