"""Errors whose message is meant for the person who typed the command or clicked the button."""

MAX_ID = 2**53  # ids beyond this never exist, and SQLite integers overflow at 2**63


def parse_id(text: str, what: str, usage: str) -> int:
    """Read a proposal or rollout id such as `12` or `#12`.

    Raises:
        UserError: naming the value and the usage when it is not an id.
    """
    number = text.strip().lstrip("#")
    if not number.isdigit() or not number.isascii():
        raise UserError(f"`{text.strip() or '(nothing)'}` is not a {what} id; use {usage}.")
    value = int(number)
    if value >= MAX_ID:
        raise UserError(f"{what.capitalize()} #{number[:20]} does not exist.")
    return value


class UserError(Exception):
    """A request that cannot be carried out; the message explains why and what to do instead.

    Handlers show it as an ephemeral message, so it must not contain secrets or tracebacks.
    """
