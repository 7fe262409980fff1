"""Errors whose message is meant for the person who typed the command or clicked the button."""


class UserError(Exception):
    """A request that cannot be carried out; the message says why and what to do instead.

    Handlers show it as an ephemeral message, so it must not contain secrets or tracebacks.
    """
