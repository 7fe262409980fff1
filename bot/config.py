"""Settings read from the environment (and a `.env` file when one is present)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields


class ConfigError(ValueError):
    """A setting is missing or has a value that cannot be used."""


def _number(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number; set it to a value such as {default:g}") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} is below the minimum of {minimum:g}")
    return value


def _whole(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    value = _number(env, name, default, minimum)
    if value != int(value):
        raise ConfigError(f"{name}={env[name]!r} must be a whole number")
    return int(value)


def _ids(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = env.get(name, "")
    return tuple(part.strip() for part in raw.split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    """Every setting Rollcall reads, with the defaults documented in the README."""

    slack_bot_token: str = ""
    slack_signing_secret: str = ""
    slack_app_token: str = ""
    slack_api_url: str = "https://slack.com/api/"
    vast_api_key: str = ""
    vast_api_url: str = "https://console.vast.ai"
    vast_router_url: str = "https://run.vast.ai"
    db_path: str = "rollcall.db"
    port: int = 3000
    poll_seconds: float = 10.0
    approvals_required: int = 1
    approvers: tuple[str, ...] = ()
    proposers: tuple[str, ...] = ()
    alert_channel: str = ""
    proposal_ttl_hours: float = 24.0
    stuck_minutes: float = 20.0
    rollout_timeout_minutes: float = 120.0
    min_ready: int = 1
    rollback_approvals: int = 1
    # Minimum seconds between two calls to the same Vast route. Vast enforces about 2 s per
    # route and returns 429 below that. Tests against the sandbox set it to 0.
    vast_min_interval: float = 2.0
    vast_timeout: float = 30.0
    # First delay after a failed Vast or Slack call, doubled on each retry.
    vast_backoff: float = 1.0
    vast_attempts: int = 4
    slack_backoff: float = 1.0

    @property
    def socket_mode(self) -> bool:
        return bool(self.slack_app_token)

    def __repr__(self) -> str:
        # Tokens and keys never appear in logs, so the repr names only which ones are set.
        shown = []
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name in _SECRET_FIELDS:
                value = "<set>" if value else "<unset>"
            shown.append(f"{item.name}={value!r}")
        return f"Settings({', '.join(shown)})"


_SECRET_FIELDS = {"slack_bot_token", "slack_signing_secret", "slack_app_token", "vast_api_key"}


def load_settings(env: Mapping[str, str] | None = None, *, dotenv: bool = True) -> Settings:
    """Build the settings from an environment mapping.

    Args:
        env: the variables to read; `os.environ` when None.
        dotenv: load a `.env` file from the working directory first (values already in the
            environment win).

    Returns:
        The validated settings.

    Raises:
        ConfigError: a value is not a number, is out of range, or is malformed.
    """
    if env is None:
        if dotenv:
            from dotenv import load_dotenv

            # Only the working directory's .env, as documented; python-dotenv would otherwise
            # search upwards from this module's folder.
            load_dotenv(os.path.join(os.getcwd(), ".env"), override=False)
        env = os.environ
    settings = Settings(
        slack_bot_token=env.get("SLACK_BOT_TOKEN", ""),
        slack_signing_secret=env.get("SLACK_SIGNING_SECRET", ""),
        slack_app_token=env.get("SLACK_APP_TOKEN", ""),
        slack_api_url=env.get("SLACK_API_URL", "") or "https://slack.com/api/",
        vast_api_key=env.get("VAST_API_KEY", ""),
        vast_api_url=(env.get("VAST_API_URL", "") or "https://console.vast.ai").rstrip("/"),
        vast_router_url=(env.get("VAST_ROUTER_URL", "") or "https://run.vast.ai").rstrip("/"),
        db_path=env.get("ROLLCALL_DB", "") or "rollcall.db",
        port=_whole(env, "PORT", 3000),
        poll_seconds=_number(env, "ROLLCALL_POLL_SECONDS", 10.0, minimum=0.01),
        approvals_required=_whole(env, "ROLLCALL_APPROVALS_REQUIRED", 1, minimum=1),
        approvers=_ids(env, "ROLLCALL_APPROVERS"),
        proposers=_ids(env, "ROLLCALL_PROPOSERS"),
        alert_channel=env.get("ROLLCALL_ALERT_CHANNEL", "").strip(),
        proposal_ttl_hours=_number(env, "ROLLCALL_PROPOSAL_TTL_HOURS", 24.0),
        stuck_minutes=_number(env, "ROLLCALL_STUCK_MINUTES", 20.0),
        rollout_timeout_minutes=_number(env, "ROLLCALL_ROLLOUT_TIMEOUT_MINUTES", 120.0),
        min_ready=_whole(env, "ROLLCALL_MIN_READY", 1),
        rollback_approvals=_whole(env, "ROLLCALL_ROLLBACK_APPROVALS", 1),
        vast_min_interval=_number(env, "ROLLCALL_VAST_MIN_INTERVAL", 2.0),
        vast_timeout=_number(env, "ROLLCALL_VAST_TIMEOUT", 30.0, minimum=0.05),
        vast_backoff=_number(env, "ROLLCALL_VAST_BACKOFF", 1.0),
        vast_attempts=_whole(env, "ROLLCALL_VAST_ATTEMPTS", 4, minimum=1),
        slack_backoff=_number(env, "ROLLCALL_SLACK_BACKOFF", 1.0),
    )
    return settings


def require(settings: Settings, *, http_mode: bool) -> None:
    """Check that the settings needed to run the bot are present.

    Raises:
        ConfigError: naming each missing variable and where to get it.
    """
    missing = []
    if not settings.slack_bot_token:
        missing.append("SLACK_BOT_TOKEN (the xoxb- token from OAuth & Permissions)")
    if http_mode and not settings.slack_signing_secret:
        missing.append("SLACK_SIGNING_SECRET (Basic Information > Signing Secret)")
    if not settings.vast_api_key:
        missing.append("VAST_API_KEY (an API key from the Vast console)")
    if missing:
        raise ConfigError("Missing settings: " + "; ".join(missing))
    if settings.slack_app_token and not settings.slack_app_token.startswith("xapp-"):
        raise ConfigError("SLACK_APP_TOKEN must be an app-level token starting with xapp-")
