"""Helpers shared by the listeners: turning service errors into ephemeral replies."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from bot.errors import UserError
from bot.vast import VastError

logger = logging.getLogger(__name__)

UNEXPECTED = "Rollcall hit an unexpected error and logged it; please try again or ask its operator to check the log."


def reply_errors(action: str, reply: Callable[[str], Any], work: Callable[[], str | None]) -> None:
    """Run `work`; show its result, a UserError or a Vast failure to the user, never a traceback.

    Args:
        action: what the user asked for, for the log.
        reply: sends an ephemeral message to the user.
        work: does the request and returns a message for the user (or None for none).
    """
    try:
        message = work()
    except UserError as error:
        logger.info("%s rejected: %s", action, error)
        message = str(error)
    except VastError as error:
        logger.warning("%s failed on the Vast API: %s", action, error)
        message = f"{error}. Nothing was changed; try again in a minute."
    except Exception:
        logger.exception("%s failed", action)
        message = UNEXPECTED
    if message:
        reply(message)
