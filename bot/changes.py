"""Proposal changes: parsing `/rollout propose` arguments and diffing templates."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from bot.templates import (
    ENV_NAME,
    FlagChange,
    TemplateFormatError,
    build_env,
    diff_cli_flags,
    format_search,
    normalize_search,
    parse_env,
    parse_search,
)

PROPOSE_USAGE = (
    '/rollout propose ENDPOINT[/GROUP_ID] KEY=VALUE... [-KEY] [image=IMAGE[:TAG]] [search="FILTERS"] [reason="..."]'
)
PROPOSE_EXAMPLE = (
    "/rollout propose qwen-chat MODEL_NAME=Qwen/Qwen3-14B "
    'VLLM_ARGS="--max-model-len 8192 --enable-prefix-caching" reason="bigger model"'
)

# Docker image references: optional registry host[:port], path components, no tag or digest.
_IMAGE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_TARGET = re.compile(r"^(?P<endpoint>[^/\s]+)(?:/(?P<group>\d+))?$")
# Phones and some keyboards turn quotes into typographic ones, which shlex does not understand.
_SMART_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'"})


class ProposalInputError(ValueError):
    """The text of a proposal cannot be used; the message names the fix."""


@dataclass
class Change:
    """The edits a proposal makes to a template and a worker group's search filter."""

    env_set: dict[str, str] = field(default_factory=dict)
    env_remove: list[str] = field(default_factory=list)
    image: str | None = None
    tag: str | None = None
    search: dict[str, dict[str, object]] | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "env_set": self.env_set,
            "env_remove": self.env_remove,
            "image": self.image,
            "tag": self.tag,
            "search": self.search,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Change:
        return cls(
            env_set=dict(data.get("env_set") or {}),  # type: ignore[call-overload]
            env_remove=list(data.get("env_remove") or []),  # type: ignore[call-overload]
            image=data.get("image"),  # type: ignore[arg-type]
            tag=data.get("tag"),  # type: ignore[arg-type]
            search=data.get("search"),  # type: ignore[arg-type]
        )

    @property
    def touches_template(self) -> bool:
        return bool(self.env_set or self.env_remove or self.image or self.tag)


@dataclass
class ProposeRequest:
    """The parsed arguments of `/rollout propose`."""

    endpoint: str
    group_id: int | None
    change: Change
    reason: str = ""


def validate_env_value(name: str, value: str) -> None:
    """Check one environment variable assignment.

    Raises:
        ProposalInputError: the name is not a shell identifier or the value has a newline.
    """
    if not ENV_NAME.match(name):
        raise ProposalInputError(
            f"`{name}` is not a valid environment variable name: use letters, digits and _, not starting with a digit."
        )
    if any(char in value for char in "\n\r"):
        raise ProposalInputError(f"The value of `{name}` contains a line break; put it on one line.")
    if "\0" in value:
        raise ProposalInputError(f"The value of `{name}` contains a NUL character; remove it.")


def split_image(text: str) -> tuple[str, str | None]:
    """Split `IMAGE[:TAG]`, keeping a registry port (`host:5000/img`) in the image.

    Raises:
        ProposalInputError: the image or tag is not a valid docker reference.
    """
    image, tag = text, None
    head, sep, tail = text.rpartition(":")
    if sep and "/" not in tail:
        image, tag = head, tail
    if not _IMAGE.match(image):
        raise ProposalInputError(
            f"`{text}` is not a valid image: use lower-case `repository/name[:tag]`, "
            "for example `image=vllm/vllm-openai:v0.11.0`."
        )
    if tag is not None and not _TAG.match(tag):
        raise ProposalInputError(f"`{tag}` is not a valid image tag (letters, digits, `_ . -`).")
    return image, tag


def parse_propose(text: str) -> ProposeRequest:
    """Parse the arguments of `/rollout propose` (shell-style quoting).

    Raises:
        ProposalInputError: with a message that names the bad value and the fix.
    """
    try:
        tokens = shlex.split(text.translate(_SMART_QUOTES))
    except ValueError as error:
        raise ProposalInputError(f"Cannot read the arguments ({error}); check the quotes.") from None
    if not tokens:
        raise ProposalInputError("Name the endpoint to change.")
    target = _TARGET.match(tokens[0])
    if not target or "=" in tokens[0]:
        raise ProposalInputError(
            f"`{tokens[0]}` is not an endpoint; start with the endpoint name or id, optionally followed by /GROUP_ID."
        )
    group = target.group("group")
    change = Change()
    reason = ""
    for token in tokens[1:]:
        if token.startswith("-") and "=" not in token:
            name = token[1:]
            validate_env_value(name, "")
            change.env_remove.append(name)
            continue
        key, sep, value = token.partition("=")
        if not sep:
            raise ProposalInputError(f"`{token}` is not KEY=VALUE.")
        lowered = key.lower()
        if lowered == "image":
            change.image, tag = split_image(value)
            change.tag = tag or change.tag
        elif lowered == "tag":
            if not _TAG.match(value):
                raise ProposalInputError(f"`{value}` is not a valid image tag (letters, digits, `_ . -`).")
            change.tag = value
        elif lowered == "search":
            if not value.strip():
                raise ProposalInputError(
                    "search= is empty. Give the complete new filter, for example "
                    '`search="gpu_ram>=24 num_gpus=1 verified=True"`; Rollcall does not remove a whole filter.'
                )
            try:
                change.search = parse_search(value)
            except TemplateFormatError as error:
                raise ProposalInputError(f"Invalid search filter: {error}.") from None
        elif lowered == "reason":
            reason = value.strip()
        elif key.isupper() or key.startswith("_"):
            validate_env_value(key, value)
            if key in change.env_set:
                raise ProposalInputError(f"`{key}` is given twice; keep one value.")
            if value == "":
                raise ProposalInputError(
                    f"`{key}=` has no value. Give a value, or write `-{key}` to remove the variable."
                )
            change.env_set[key] = value
        else:
            raise ProposalInputError(
                f"`{key}` is not an option: environment variables are upper case "
                "(MODEL_NAME=...), and the other options are image=, tag=, search= and reason=."
            )
    overlap = set(change.env_set) & set(change.env_remove)
    if overlap:
        raise ProposalInputError(f"`{sorted(overlap)[0]}` is both set and removed; keep one.")
    return ProposeRequest(tokens[0].split("/")[0], int(group) if group else None, change, reason)


# Applying a change ------------------------------------------------------------------------


@dataclass(frozen=True)
class DiffLine:
    """One changed setting, with its value before and after; flags is set for VLLM_ARGS."""

    label: str
    old: str | None
    new: str | None
    flags: tuple[FlagChange, ...] = ()


def apply_change(template: dict[str, object], change: Change) -> dict[str, object]:
    """Return a copy of a Vast template with the change applied to its env, image and tag."""
    result = dict(template)
    spec = parse_env(str(template.get("env") or ""))
    for name in change.env_remove:
        spec.variables.pop(name, None)
    spec.variables.update(change.env_set)
    result["env"] = build_env(spec)
    if change.image:
        result["image"] = change.image
    if change.tag:
        result["tag"] = change.tag
    return result


def diff_templates(
    old_template: dict[str, object],
    new_template: dict[str, object],
    old_search: object,
    new_search: object,
) -> list[DiffLine]:
    """List what differs between two templates and two search filters, in display order."""
    lines: list[DiffLine] = []
    before = parse_env(str(old_template.get("env") or "")).variables
    after = parse_env(str(new_template.get("env") or "")).variables
    for name in list(before) + [name for name in after if name not in before]:
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        flags: tuple[FlagChange, ...] = ()
        if name == "VLLM_ARGS":
            flags = tuple(diff_cli_flags(old or "", new or ""))
        lines.append(DiffLine(name, old, new, flags))
    old_image = f"{old_template.get('image') or ''}:{old_template.get('tag') or 'latest'}"
    new_image = f"{new_template.get('image') or ''}:{new_template.get('tag') or 'latest'}"
    if old_image != new_image:
        lines.append(DiffLine("image", old_image, new_image))
    old_query, new_query = normalize_search(old_search), normalize_search(new_search)
    if old_query != new_query:
        lines.append(DiffLine("search", format_search(old_query), format_search(new_query)))
    return lines


def env_variable(template: dict[str, object], name: str) -> str | None:
    """Return one environment variable of a template, or None when it is not set."""
    return parse_env(str(template.get("env") or "")).variables.get(name)
