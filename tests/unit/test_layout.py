"""The manifest matches what the code uses, and the package boundaries hold."""

import ast
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(folder):
    for path in sorted((ROOT / folder).glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield path.name, alias.name
            elif isinstance(node, ast.ImportFrom) and node.module:
                yield path.name, node.module


def test_bot_imports_neither_bolt_nor_sandbox():
    for name, module in imported_modules("bot"):
        if name == "cli.py" and module.startswith("handlers"):
            continue  # the entry point loads the listeners, which import bolt
        assert not module.startswith(("slack_bolt", "sandbox")), f"bot/{name} imports {module}"


def test_handlers_do_not_import_sandbox():
    for name, module in imported_modules("handlers"):
        assert not module.startswith("sandbox"), f"handlers/{name} imports {module}"


def manifest():
    return yaml.safe_load((ROOT / "manifest.yml").read_text())


def test_manifest_declares_command_and_interactivity():
    data = manifest()
    assert [command["command"] for command in data["features"]["slash_commands"]] == ["/rollout"]
    assert data["settings"]["interactivity"]["is_enabled"] is True
    assert len(data["display_information"]["name"]) <= 35
    assert data["settings"]["token_rotation_enabled"] is False


def test_manifest_scopes_cover_api_calls():
    scopes = set(manifest()["oauth_config"]["scopes"]["bot"])
    # chat.postMessage/update/postEphemeral, usergroups.users.list, conversations.replies/history.
    assert {"commands", "chat:write", "usergroups:read", "channels:history", "groups:history"} <= scopes


def test_registered_actions_have_buttons():
    sources = "".join(path.read_text() for path in (ROOT / "handlers").glob("*.py"))
    rendered = (ROOT / "bot" / "render.py").read_text()
    for action_id in ("approve", "reject", "cancel_proposal", "alert_abort", "alert_rollback", "alert_keep_waiting"):
        assert f'"{action_id}"' in sources
        assert f'"action_id": "{action_id}"' in rendered
