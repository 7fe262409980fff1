"""Building the slack-bolt App around a Rollcall instance."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import App, BoltResponse

from bot.app import Rollcall
from handlers import actions, commands, views

logger = logging.getLogger(__name__)


class _DropTokenNotice(logging.Filter):
    """Drop bolt's warning that `token` is unused when `client` is given.

    Bolt (slack-bolt 1.30) reads SLACK_BOT_TOKEN from the environment even when it gets a
    client, then warns that it ignores it. The client carries the same token, so the warning
    is noise at every start.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


def create_app(rollcall: Rollcall, *, socket_mode: bool = False) -> App:
    """Create the bolt App with every listener registered.

    Args:
        rollcall: the services the listeners call.
        socket_mode: requests arrive over a WebSocket, so they carry no signature to check.
    """
    settings = rollcall.settings
    bolt_logger = logging.getLogger("slack_bolt")
    if not any(isinstance(item, _DropTokenNotice) for item in bolt_logger.filters):
        bolt_logger.addFilter(_DropTokenNotice())
    app = App(
        client=rollcall.slack,
        signing_secret=settings.slack_signing_secret,
        request_verification_enabled=not socket_mode,
        logger=bolt_logger,
    )

    @app.middleware
    def mark_retries(context: dict[str, Any], request: Any, next: Callable[[], BoltResponse]) -> BoltResponse:
        # Slack redelivers with X-Slack-Retry-Num when a response came late. Listeners are
        # idempotent, and this flag lets them stay quiet about a click they already handled.
        context["slack_retry"] = bool(request.headers.get("x-slack-retry-num"))
        return next()

    commands.register(app, rollcall)
    actions.register(app, rollcall)
    views.register(app, rollcall)
    return app
