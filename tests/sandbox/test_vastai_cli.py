"""Run Vast's own `vastai` CLI (version 1.9.1 from PyPI) against the sandbox.

The CLI lives in its own virtualenv because its pinned dependencies clash
with this project's. Point `ROLLCALL_VASTAI` at its executable or put
`vastai` on PATH. Set `ROLLCALL_REQUIRE_VASTAI=1` to fail instead of skip
when it is missing.

The CLI gets `--url` with `VAST_URL` unset, so it sends console and router
calls to the sandbox. It also makes calls of its own to vast.ai hosts (an
update check and, when no cache file exists, a GPU name list from
console.vast.ai at start-up). The tests turn the update check off, seed the
GPU name cache, and route every other host through a local proxy that
records and rejects requests, so nothing leaves the machine and any such
call fails the test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sandbox.vast_server import VastSandbox, build_demo_world

API_KEY = "sandbox-key"

# Read at import time because tests/conftest.py removes ROLLCALL_* variables
# from the environment of every test.
VASTAI_SETTING = os.environ.get("ROLLCALL_VASTAI")
REQUIRE_VASTAI = os.environ.get("ROLLCALL_REQUIRE_VASTAI") == "1"


def find_vastai() -> tuple[str | None, str]:
    """Return (path of the vastai executable or None, reason when it is None)."""
    if VASTAI_SETTING:
        if os.path.isfile(VASTAI_SETTING) and os.access(VASTAI_SETTING, os.X_OK):
            return VASTAI_SETTING, ""
        return None, f"ROLLCALL_VASTAI={VASTAI_SETTING} is not an executable file"
    found = shutil.which("vastai")
    if found:
        return found, ""
    return None, "vastai CLI not found: set ROLLCALL_VASTAI or put vastai on PATH"


class _RecordingProxy(BaseHTTPRequestHandler):
    """Record every request sent through the proxy and reject it with 403."""

    def _reject(self) -> None:
        self.server.requests.append(f"{self.command} {self.path}")
        self.send_response(403)
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    do_CONNECT = do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _reject

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def vastai() -> str:
    path, reason = find_vastai()
    if path is None:
        if REQUIRE_VASTAI:
            pytest.fail(f"{reason} (ROLLCALL_REQUIRE_VASTAI=1)")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="module")
def outbound_proxy() -> Iterator[ThreadingHTTPServer]:
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), _RecordingProxy)
    proxy.daemon_threads = True
    proxy.requests = []
    thread = threading.Thread(target=proxy.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield proxy
    proxy.shutdown()
    proxy.server_close()
    thread.join(timeout=5)


@pytest.fixture
def vast() -> Iterator[VastSandbox]:
    sandbox = VastSandbox(api_key=API_KEY, speed=0, seed=1).start()
    build_demo_world(sandbox.world)
    yield sandbox
    sandbox.stop()


@pytest.fixture
def cli_env(tmp_path: Path, outbound_proxy: ThreadingHTTPServer) -> dict[str, str]:
    home = tmp_path / "home"
    cache = home / ".cache"
    (cache / "vastai").mkdir(parents=True)
    # A fresh cache file stops the CLI from fetching GPU names from console.vast.ai.
    (cache / "vastai" / "gpu_names_cache.json").write_text(
        json.dumps({"gpu_names": ["RTX 4090", "RTX 3090", "L40S", "RTX A6000", "A100 PCIE"]})
    )
    proxy_url = f"http://127.0.0.1:{outbound_proxy.server_address[1]}"
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("VAST_", "XDG_", "ROLLCALL_"))
        and name.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    }
    env.update(
        {
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(cache),
            "XDG_STATE_HOME": str(home / ".local" / "state"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "VASTAI_NO_UPDATE_CHECK": "1",
            "HTTP_PROXY": proxy_url,
            "HTTPS_PROXY": proxy_url,
            "ALL_PROXY": proxy_url,
            "http_proxy": proxy_url,
            "https_proxy": proxy_url,
            "all_proxy": proxy_url,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
    )
    return env


def run_cli(vastai: str, vast: VastSandbox, env: dict[str, str], proxy: ThreadingHTTPServer, *args: str) -> str:
    """Run `vastai --url SANDBOX --api-key KEY ARGS...`, check it worked and return stdout."""
    command = [vastai, "--url", vast.url, "--api-key", API_KEY, *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    assert proxy.requests == [], f"the CLI tried to reach other hosts: {proxy.requests}"
    return result.stdout


def test_cli_show_endpoints(vastai, vast, cli_env, outbound_proxy):
    output = run_cli(vastai, vast, cli_env, outbound_proxy, "show", "endpoints")
    endpoints = json.loads(output)
    assert [e["endpoint_name"] for e in endpoints] == ["qwen-chat", "llama-batch"]
    assert [e["id"] for e in endpoints] == [101, 102]
    assert "api_key" not in endpoints[0]
    assert vast.world.counters["calls"]["GET /api/v0/users/current/"] == 1


def test_cli_show_workergroups(vastai, vast, cli_env, outbound_proxy):
    output = run_cli(vastai, vast, cli_env, outbound_proxy, "show", "workergroups")
    groups = json.loads(output)
    assert [(g["id"], g["endpoint_id"]) for g in groups] == [(201, 101), (202, 102), (203, 102)]
    assert groups[0]["search_query"] == {"gpu_ram": {"gte": 24}, "num_gpus": {"eq": 1}, "verified": {"eq": True}}
    assert groups[0]["template_hash"] == vast.world.workergroups[201].template_hash


def test_cli_get_endpt_workers(vastai, vast, cli_env, outbound_proxy):
    output = run_cli(vastai, vast, cli_env, outbound_proxy, "get", "endpt-workers", "101")
    lines = output.strip().splitlines()
    assert len(lines) == 8
    assert lines[0].startswith("id=4401 status=IDLE gpu_name=")
    assert "measured_perf=" in lines[0]
    assert sum("status=STOPPED" in line for line in lines) == 3
    assert vast.world.counters["calls"]["POST /get_endpoint_workers/"] == 1


def test_cli_get_endpt_logs(vastai, vast, cli_env, outbound_proxy):
    output = run_cli(vastai, vast, cli_env, outbound_proxy, "get", "endpt-logs", "101")
    assert "workergroup 201 created on endpoint 101" in output


def test_cli_search_templates_by_id(vastai, vast, cli_env, outbound_proxy):
    output = run_cli(vastai, vast, cli_env, outbound_proxy, "search", "templates", "id=301")
    [template] = json.loads(output)
    assert template["hash_id"] == vast.world.templates[301].hash_id


def test_cli_update_workers_and_cancel(vastai, vast, cli_env, outbound_proxy):
    started = run_cli(vastai, vast, cli_env, outbound_proxy, "update", "workers", "201")
    update = vast.world.snapshot()["workergroups"][0]["update"]
    vast.world.advance(5)
    cancelled = run_cli(vastai, vast, cli_env, outbound_proxy, "update", "workers", "201", "--cancel")
    assert "201" in started
    assert "8 workers" in started
    assert update is not None
    assert "cancelled" in cancelled.lower()
    assert vast.world.counters["cancels"] == 1


def test_cli_update_workergroup_replaces_search(vastai, vast, cli_env, outbound_proxy):
    # Without --search_params the CLI sends its default filter, which replaces
    # the group's own and so cycles every worker.
    output = run_cli(
        vastai,
        vast,
        cli_env,
        outbound_proxy,
        "update",
        "workergroup",
        "201",
        "--endpoint_id",
        "101",
        "--template_id",
        "301",
    )
    group = vast.world.snapshot()["workergroups"][0]
    assert "'success': True" in output
    assert group["search_query"] == {"verified": {"eq": True}, "rentable": {"eq": True}, "rented": {"eq": False}}
    assert group["update"] is not None
    assert group["update"]["force"] is True


def test_cli_guard_records_outside_calls(vastai, vast, cli_env, outbound_proxy):
    # Without the GPU name cache the CLI requests GPU names from console.vast.ai at
    # start-up. The proxy must catch that call, or the empty-proxy checks above
    # prove nothing.
    cache_file = Path(cli_env["XDG_CACHE_HOME"]) / "vastai" / "gpu_names_cache.json"
    cache_file.unlink()
    command = [vastai, "--url", vast.url, "--api-key", API_KEY, "show", "endpoints"]
    try:
        result = subprocess.run(command, env=cli_env, capture_output=True, text=True, timeout=60, check=False)
        recorded = list(outbound_proxy.requests)
    finally:
        outbound_proxy.requests.clear()
    assert result.returncode == 0, result.stderr
    assert recorded == ["CONNECT console.vast.ai:443"]
