"""Reading and writing the parts of a Vast template that a proposal changes.

A template's `env` is a string of docker flags such as
`-e MODEL_NAME=Qwen/Qwen3-8B -e VLLM_ARGS='--max-model-len 8192' -p 8000:8000`. A worker group's
search filter is a parsed dict such as `{"gpu_ram": {"gte": 24}}`, while people and Vast's CLI
write it as `gpu_ram>=24`.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class TemplateFormatError(ValueError):
    """A template env string or a search filter cannot be parsed."""


@dataclass
class EnvSpec:
    """The environment variables of a template's `env` string, plus its other docker flags."""

    variables: dict[str, str] = field(default_factory=dict)
    other_args: list[str] = field(default_factory=list)


def parse_env(env: str | None) -> EnvSpec:
    """Split a template `env` string into variables and the remaining docker flags.

    Raises:
        TemplateFormatError: the string has unbalanced quotes.
    """
    try:
        tokens = shlex.split(env or "")
    except ValueError as error:
        raise TemplateFormatError(f"cannot parse the template env string: {error}") from None
    spec = EnvSpec()
    index = 0
    while index < len(tokens):
        token = tokens[index]
        assignment = None
        if token in ("-e", "--env") and index + 1 < len(tokens):
            assignment = tokens[index + 1]
            index += 2
        elif token.startswith("--env="):
            assignment = token[len("--env=") :]
            index += 1
        else:
            spec.other_args.append(token)
            index += 1
            continue
        name, _, value = assignment.partition("=")
        spec.variables[name] = value
    return spec


def build_env(spec: EnvSpec) -> str:
    """Write an `env` string back, quoting every value so it stays one shell word.

    A value such as `x -e EVIL=1` comes out as `-e MODEL_NAME='x -e EVIL=1'`, so it cannot add a
    flag of its own when Vast splits the string.
    """
    parts = []
    for name, value in spec.variables.items():
        if not ENV_NAME.match(name):
            raise TemplateFormatError(f"invalid environment variable name {name!r}")
        parts.append(f"-e {name}={shlex.quote(value)}")
    parts.extend(shlex.quote(arg) for arg in spec.other_args)
    return " ".join(parts)


# Search filters -----------------------------------------------------------------------------

_OPERATORS = [(">=", "gte"), ("<=", "lte"), ("!=", "neq"), ("==", "eq"), (">", "gt"), ("<", "lt")]
_SYMBOLS = {"gte": ">=", "lte": "<=", "neq": "!=", "eq": "=", "gt": ">", "lt": "<"}
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


def _parse_value(text: str) -> object:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _format_value(value: object) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, list):
        return "[" + ",".join(_format_value(item) for item in value) + "]"
    return str(value)


def parse_search(text: str) -> dict[str, dict[str, object]]:
    """Parse a search filter written as in Vast's CLI (`gpu_ram>=24 num_gpus=1 verified=True`).

    Also accepts `gpu_name in [RTX_4090,RTX_3090]` and `notin`.

    Raises:
        TemplateFormatError: naming the term that is not `field<op>value`.
    """
    try:
        tokens = shlex.split(text)
    except ValueError as error:
        raise TemplateFormatError(f"cannot parse the search filter: {error}") from None
    query: dict[str, dict[str, object]] = {}
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if index + 1 < len(tokens) and tokens[index + 1] in ("in", "notin"):
            if index + 2 >= len(tokens):
                raise TemplateFormatError(f"search term {token!r} {tokens[index + 1]} has no list")
            items = tokens[index + 2].strip("[]")
            values = [_parse_value(item) for item in items.split(",") if item]
            query.setdefault(token, {})[tokens[index + 1]] = values
            index += 3
            continue
        for symbol, operator in [*_OPERATORS, ("=", "eq")]:
            name, found, value = token.partition(symbol)
            if found and name and _FIELD.match(name):
                if not value or value[0] in "<>=!":
                    raise TemplateFormatError(f"search term {token!r} has no value after {symbol}")
                query.setdefault(name, {})[operator] = _parse_value(value)
                break
        else:
            raise TemplateFormatError(
                f"search term {token!r} is not of the form field>=value (operators: = != > >= < <=)"
            )
        index += 1
    return query


def normalize_search(value: object) -> dict[str, dict[str, object]]:
    """Turn a search filter in any shape Vast returns (dict, JSON string, CLI string) into a dict."""
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        result: dict[str, dict[str, object]] = {}
        for name, condition in value.items():
            if isinstance(condition, dict):
                result[str(name)] = dict(condition)
            else:
                result[str(name)] = {"eq": condition}
        return result
    if isinstance(value, list):
        return parse_search(" ".join(str(item) for item in value))
    text = str(value).strip()
    if text.startswith("{"):
        try:
            return normalize_search(json.loads(text))
        except json.JSONDecodeError:
            pass
    return parse_search(text)


def format_search(query: dict[str, dict[str, object]]) -> str:
    """Write a search filter dict in the CLI form that Vast's `search_params` accepts."""
    terms = []
    for name, condition in query.items():
        for operator, value in condition.items():
            if operator in ("in", "notin"):
                terms.append(f"{name} {operator} {_format_value(value)}")
            else:
                terms.append(f"{name}{_SYMBOLS.get(operator, '=')}{_format_value(value)}")
    return " ".join(terms)


# VLLM_ARGS ------------------------------------------------------------------------------------


def parse_cli_flags(args: str) -> dict[str, str | None]:
    """Split a command line such as VLLM_ARGS into `{flag: value}`; a bare flag maps to None.

    Tokens that are not flags and follow no flag are kept under their own text with value None,
    so nothing is lost from the comparison.
    """
    try:
        tokens = shlex.split(args or "")
    except ValueError:
        tokens = (args or "").split()
    flags: dict[str, str | None] = {}
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if token.startswith("-") and "=" in token:
            name, _, value = token.partition("=")
            flags[name] = value
            index += 1
        elif token.startswith("-"):
            following = tokens[index + 1] if index + 1 < len(tokens) else None
            if following is not None and not following.startswith("-"):
                flags[token] = following
                index += 2
            else:
                flags[token] = None
                index += 1
        else:
            flags[token] = None
            index += 1
    return flags


@dataclass(frozen=True)
class FlagChange:
    """One flag of a command line that a change adds, removes or sets to another value."""

    flag: str
    old: str | None
    new: str | None
    added: bool = False
    removed: bool = False


def diff_cli_flags(old: str, new: str) -> list[FlagChange]:
    """Compare two command lines flag by flag, in the order the flags appear."""
    before = parse_cli_flags(old)
    after = parse_cli_flags(new)
    changes = []
    for flag, value in before.items():
        if flag not in after:
            changes.append(FlagChange(flag, value, None, removed=True))
        elif after[flag] != value:
            changes.append(FlagChange(flag, value, after[flag]))
    for flag, value in after.items():
        if flag not in before:
            changes.append(FlagChange(flag, None, value, added=True))
    return changes
