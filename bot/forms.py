"""The proposal and rejection modals: building their views and reading what was submitted."""

from __future__ import annotations

import json
from typing import Any

from bot import render
from bot.changes import Change, ProposalInputError, ProposeRequest, split_image, validate_env_value
from bot.templates import TemplateFormatError, parse_search

PROPOSE_CALLBACK = "propose_form"
REJECT_CALLBACK = "reject_form"
MAX_OPTIONS = 100  # Slack's limit for a static select

# block_id -> (label, hint, multiline)
_TEXT_FIELDS = {
    "model": ("MODEL_NAME", "Leave empty to keep the current model, e.g. Qwen/Qwen3-14B", False),
    "vllm_args": ("VLLM_ARGS", "The whole new value, e.g. --max-model-len 8192 --enable-prefix-caching", False),
    "image": ("Image", "IMAGE[:TAG], e.g. vllm/vllm-openai:v0.12.0", False),
    "env": ("Other environment variables", "One KEY=VALUE per line; -KEY removes a variable", True),
    "search": ("Search filter", "The complete new filter, e.g. gpu_ram>=48 num_gpus=1 verified=True", False),
    "reason": ("Reason", "Why this change; shown to the approvers", True),
}


def target_options(endpoints: list[dict[str, Any]], groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Build one option per endpoint, or one per worker group for endpoints that have several."""
    options = []
    for endpoint in endpoints:
        mine = [group for group in groups if int(group.get("endpoint_id", -1)) == int(endpoint["id"])]
        name = str(endpoint.get("endpoint_name"))
        if len(mine) == 1:
            options.append((name, f"{name}/{mine[0]['id']}"))
        for group in mine if len(mine) > 1 else []:
            options.append((f"{name} / group {group['id']}", f"{name}/{group['id']}"))
    return [
        {"text": {"type": "plain_text", "text": label[:75]}, "value": value[:150]}
        for label, value in options[:MAX_OPTIONS]
    ]


def propose_view(channel_id: str, options: list[dict[str, Any]]) -> dict[str, Any]:
    """Build the modal that `/rollout propose` opens when it has no arguments."""
    blocks: list[dict[str, Any]] = [
        {
            "type": "input",
            "block_id": "target",
            "label": {"type": "plain_text", "text": "Endpoint and worker group"},
            "element": {
                "type": "static_select",
                "action_id": "value",
                "placeholder": {"type": "plain_text", "text": "Choose an endpoint"},
                "options": options,
            },
        }
    ]
    for block_id, (label, hint, multiline) in _TEXT_FIELDS.items():
        blocks.append(
            {
                "type": "input",
                "block_id": block_id,
                "optional": True,
                "label": {"type": "plain_text", "text": label},
                "hint": {"type": "plain_text", "text": hint},
                "element": {"type": "plain_text_input", "action_id": "value", "multiline": multiline},
            }
        )
    return {
        "type": "modal",
        "callback_id": PROPOSE_CALLBACK,
        "private_metadata": json.dumps({"channel_id": channel_id}),
        "title": {"type": "plain_text", "text": "Propose a rollout"},
        "submit": {"type": "plain_text", "text": "Propose"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": blocks,
    }


def _value(values: dict[str, Any], block_id: str) -> str:
    field = (values.get(block_id) or {}).get("value") or {}
    if field.get("type") == "static_select":
        return str((field.get("selected_option") or {}).get("value") or "")
    return str(field.get("value") or "").strip()


def read_propose_form(values: dict[str, Any]) -> tuple[ProposeRequest | None, dict[str, str]]:
    """Turn the submitted form into a request, or into errors keyed by block_id.

    Returns:
        `(request, {})` when every field is valid, else `(None, {block_id: message})`.
    """
    errors: dict[str, str] = {}
    change = Change()
    target = _value(values, "target")
    endpoint, _, group = target.partition("/")
    if not endpoint:
        errors["target"] = "Choose the endpoint to change."
    for block_id, name in (("model", "MODEL_NAME"), ("vllm_args", "VLLM_ARGS")):
        text = _value(values, block_id)
        if text:
            try:
                validate_env_value(name, text)
                change.env_set[name] = text
            except ProposalInputError as error:
                errors[block_id] = str(error)
    image = _value(values, "image")
    if image:
        try:
            change.image, change.tag = split_image(image)
        except ProposalInputError as error:
            errors["image"] = str(error)
    for line in _value(values, "env").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            if line.startswith("-") and "=" not in line:
                validate_env_value(line[1:], "")
                change.env_remove.append(line[1:])
                continue
            name, sep, text = line.partition("=")
            if not sep:
                raise ProposalInputError(f"`{line}` is not KEY=VALUE.")
            validate_env_value(name.strip(), text)
            change.env_set[name.strip()] = text
        except ProposalInputError as error:
            errors["env"] = str(error)
            break
    search = _value(values, "search")
    if search:
        try:
            change.search = parse_search(search)
        except TemplateFormatError as error:
            errors["search"] = f"Invalid search filter: {error}."
    if errors:
        return None, errors
    request = ProposeRequest(endpoint, int(group) if group.isdigit() else None, change, _value(values, "reason"))
    return request, {}


def reject_view(proposal: dict[str, Any]) -> dict[str, Any]:
    """Build the small modal that requests an optional reason before rejecting."""
    return {
        "type": "modal",
        "callback_id": REJECT_CALLBACK,
        "private_metadata": json.dumps({"proposal_id": proposal["id"]}),
        "title": {"type": "plain_text", "text": f"Reject #{proposal['id']}"[:24]},
        "submit": {"type": "plain_text", "text": "Reject"},
        "close": {"type": "plain_text", "text": "Keep it open"},
        "blocks": [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"Reject proposal #{proposal['id']} for {render.target_label(proposal)}: "
                    f"{render.summary(proposal['diff'])}",
                },
            },
            {
                "type": "input",
                "block_id": "reason",
                "optional": True,
                "label": {"type": "plain_text", "text": "Reason"},
                "element": {"type": "plain_text_input", "action_id": "value", "multiline": True},
            },
        ],
    }


def metadata(view: dict[str, Any]) -> dict[str, Any]:
    try:
        data = json.loads(view.get("private_metadata") or "{}")
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def reason_from(values: dict[str, Any]) -> str:
    return _value(values, "reason")
