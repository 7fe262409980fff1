"""Tests of the Vast API sandbox over real HTTP, with the simulated clock moved by hand."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from sandbox.vast_server import VastSandbox

API_KEY = "sandbox-key"
ENDPOINT_ID = 101
GROUP_ID = 201
TEMPLATE_ID = 301
INACTIVE_IDS = [4406, 4407, 4408]
ALL_WORKER_IDS = list(range(4401, 4409))
NEW_MODEL = "Qwen/Qwen3-14B"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def vast():
    sandbox = VastSandbox(api_key=API_KEY, speed=0, seed=1).start()
    sandbox.world.add_endpoint(
        "qwen-chat",
        workers=8,
        inactive=3,
        model="Qwen/Qwen3-8B",
        vllm_args="--max-model-len 8192",
        image="vllm/vllm-openai",
        tag="v0.11.0",
        search="gpu_ram>=24 num_gpus=1 verified=True",
    )
    yield sandbox
    sandbox.stop()


@pytest.fixture
def client(vast):
    with httpx.Client(base_url=vast.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5.0) as http:
        yield http


# -- helpers ------------------------------------------------------------------


def get_state(client: httpx.Client) -> dict:
    return client.get("/_sandbox/state").json()


def advance(client: httpx.Client, seconds: float) -> None:
    response = client.post("/_sandbox/advance", json={"seconds": seconds})
    assert response.status_code == 200, response.text


def group_of(state: dict, group_id: int = GROUP_ID) -> dict:
    return next(g for g in state["workergroups"] if g["id"] == group_id)


def workers_of(state: dict, group_id: int = GROUP_ID) -> list[dict]:
    return [w for w in state["workers"] if w["workergroup_id"] == group_id]


def find_templates(client: httpx.Client, filters: dict) -> dict:
    params = {"select_filters": json.dumps(filters), "select_cols": '["*"]'}
    return client.get("/api/v0/template/", params=params).json()


def env_for(model: str) -> str:
    return f"-e MODEL_NAME={model} -e VLLM_ARGS='--max-model-len 8192' -p 8000:8000"


def start_template_update(client: httpx.Client, model: str = NEW_MODEL, group_id: int = GROUP_ID) -> tuple[str, dict]:
    """Edit the group's template to `model`, point the group at it, return (old hash, new)."""
    group = next(g for g in client.get("/api/v0/autojobs/").json()["results"] if g["id"] == group_id)
    template = find_templates(client, {"hash_id": {"eq": group["template_hash"]}})["templates"][0]
    template["env"] = env_for(model)
    saved = client.put("/api/v1/template/", json=template).json()["template"]
    response = client.put(
        f"/api/v0/autojobs/{group_id}/",
        json={
            "endpoint_id": group["endpoint_id"],
            "template_hash": saved["hash_id"],
            "template_id": None,
            "search_params": None,
        },
    )
    assert response.json() == {"success": True}
    return group["template_hash"], saved


def run_until_update_ends(
    client: httpx.Client, group_id: int = GROUP_ID, max_seconds: int = 3000, step: int = 1
) -> list[dict]:
    """Advance the clock until the group's update ends and return every state seen."""
    states = []
    for _ in range(max_seconds // step):
        advance(client, step)
        state = get_state(client)
        states.append(state)
        if group_of(state, group_id)["update"] is None:
            return states
    raise AssertionError(f"update of workergroup {group_id} still running after {max_seconds} s")


def run_until(client: httpx.Client, condition, max_seconds: int = 1000) -> dict:
    for _ in range(max_seconds):
        advance(client, 1)
        state = get_state(client)
        if condition(state):
            return state
    raise AssertionError(f"condition not met within {max_seconds} simulated seconds")


# -- auth -----------------------------------------------------------------------


@pytest.mark.parametrize("location", ["bearer", "body", "query"])
def test_auth_accepts_key_location(vast, location):
    headers, params, body = {}, {}, None
    if location == "bearer":
        headers["Authorization"] = f"Bearer {API_KEY}"
    elif location == "body":
        body = {"client_id": "me", "api_key": API_KEY}
    else:
        params["api_key"] = API_KEY
    with httpx.Client(base_url=vast.url) as http:
        response = http.request("GET", "/api/v0/endptjobs/", headers=headers, params=params, json=body)
    assert response.status_code == 200
    assert response.json()["success"] is True


@pytest.mark.parametrize(
    ("headers", "expected_msg"),
    [
        ({}, "missing api_key"),
        ({"Authorization": "Bearer wrong-key"}, "invalid api_key"),
    ],
)
def test_auth_rejects_bad_key(vast, headers, expected_msg):
    with httpx.Client(base_url=vast.url) as http:
        response = http.get("/api/v0/endptjobs/", headers=headers)
    assert response.status_code == 401
    assert response.json()["success"] is False
    assert response.json()["msg"].startswith(expected_msg)


def test_auth_router_rejects_wrong_body_key(vast):
    with httpx.Client(base_url=vast.url) as http:
        response = http.post("/get_endpoint_workers/", json={"id": ENDPOINT_ID, "api_key": "x"})
    assert response.status_code == 401
    assert "error_msg" in response.json()


def test_users_current_reports_client_role(client):
    user = client.get("/api/v0/users/current").json()
    assert user["host_agreement_accepted"] is False
    assert "api_key" not in user


# -- endpoints and worker groups ---------------------------------------------


def test_endpoints_list_returns_endpoint(client):
    body = client.get("/api/v0/endptjobs/").json()
    assert body["success"] is True
    [endpoint] = body["results"]
    assert endpoint["id"] == ENDPOINT_ID
    assert endpoint["endpoint_name"] == "qwen-chat"
    assert endpoint["endpoint_state"] == "active"


def test_endpoints_list_empty_world_is_400():
    with (
        VastSandbox(api_key=API_KEY, speed=0) as empty,
        httpx.Client(base_url=empty.url, headers={"Authorization": f"Bearer {API_KEY}"}) as http,
    ):
        response = http.get("/api/v0/endptjobs/")
    assert response.status_code == 400
    assert response.json()["msg"] == "No endpoints for user 1 found."


def test_endpoint_get_by_id(client):
    body = client.get(f"/api/v0/endptjobs/{ENDPOINT_ID}/").json()
    assert body["result"]["endpoint_name"] == "qwen-chat"
    assert client.get("/api/v0/endptjobs/999/").status_code == 404


def test_endpoint_put_null_keeps_fields(client):
    response = client.put(
        f"/api/v0/endptjobs/{ENDPOINT_ID}/",
        json={
            "client_id": "me",
            "endptjob_id": ENDPOINT_ID,
            "max_workers": 12,
            "min_load": None,
            "endpoint_name": None,
            "endpoint_state": None,
        },
    )
    assert response.json() == {"success": True}
    endpoint = client.get(f"/api/v0/endptjobs/{ENDPOINT_ID}/").json()["result"]
    assert endpoint["max_workers"] == 12
    assert endpoint["endpoint_name"] == "qwen-chat"


@pytest.mark.parametrize("path", ["/api/v0/autojobs/", "/api/v0/workergroups/"])
def test_workergroups_list_both_paths(vast, client, path):
    vast.world.add_workergroup(ENDPOINT_ID, workers=4)
    groups = client.get(path).json()["results"]
    assert [g["id"] for g in groups] == [GROUP_ID, 202]
    assert all(g["endpoint_id"] == ENDPOINT_ID for g in groups)
    assert groups[0]["template_id"] == TEMPLATE_ID
    assert groups[0]["search_query"] == {"gpu_ram": {"gte": 24}, "num_gpus": {"eq": 1}, "verified": {"eq": True}}


def test_workergroup_create_recruits_workers(client):
    response = client.post(
        "/api/v0/workergroups/",
        json={
            "client_id": "me",
            "template_id": TEMPLATE_ID,
            "search_params": "gpu_ram>=24",
            "endpoint_name": "new-endpoint",
        },
    )
    group_id = response.json()["id"]
    endpoints = client.get("/api/v0/endptjobs/").json()["results"]
    assert "new-endpoint" in [e["endpoint_name"] for e in endpoints]
    state = run_until(client, lambda s: all(w["status"] == "IDLE" for w in workers_of(s, group_id)), max_seconds=200)
    assert len(workers_of(state, group_id)) == 2


def test_workergroup_workers_omit_measured_perf(vast, client):
    workers = client.post("/get_workergroup_workers/", json={"id": GROUP_ID}).json()
    legacy = client.post("/get_autogroup_workers/", json={"id": GROUP_ID}).json()
    assert [w["id"] for w in workers] == ALL_WORKER_IDS
    assert [w["id"] for w in legacy] == ALL_WORKER_IDS
    assert "measured_perf" not in workers[0]


def test_endpoint_workers_fields(client):
    workers = client.post("/get_endpoint_workers/", json={"id": ENDPOINT_ID}).json()
    assert [w["id"] for w in workers] == ALL_WORKER_IDS
    statuses = {w["id"]: w["status"] for w in workers}
    assert [i for i, s in statuses.items() if s == "STOPPED"] == INACTIVE_IDS
    for name in (
        "gpu_name",
        "measured_perf",
        "reqs_working",
        "loaded_at",
        "started_at",
        "cur_load",
        "dlperf",
        "reliability",
        "perf",
        "disk_usage",
    ):
        assert name in workers[0], name


def test_endpoint_workers_unknown_id(client):
    response = client.post("/get_endpoint_workers/", json={"id": 999})
    assert response.status_code == 400
    assert "endpoint 999 not found" in response.json()["error_msg"]


# -- templates ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filters", "expected_ids"),
    [
        ({"id": {"eq": 301}}, [301]),
        ({"id": {"eq": "301"}}, [301]),
        ({"id": {"neq": 301}}, [302]),
        ({"id": {"in": [301, 302]}}, [301, 302]),
        ({"id": {"notin": [301]}}, [302]),
        ({"id": {"gte": 302}}, [302]),
        ({"name": {"eq": "other"}}, [302]),
        ({"private": {"eq": "true"}}, [301, 302]),
    ],
)
def test_template_search_operators(vast, client, filters, expected_ids):
    vast.world.create_template(name="other", image="example/image", tag="1")
    body = find_templates(client, filters)
    assert body["success"] is True
    assert [t["id"] for t in body["templates"]] == expected_ids
    assert body["templates_found"] == len(expected_ids)


def test_template_search_no_match(client):
    body = find_templates(client, {"id": {"eq": 999}})
    assert body == {"success": False, "msg": "No templates found"}


def test_template_search_v1_pages(vast, client):
    for index in range(3):
        vast.world.create_template(name=f"t{index}", image="example/image", tag="1")
    first = client.get("/api/v1/template/", params={"limit": 3}).json()
    second = client.get("/api/v1/template/", params={"limit": 3, "after_token": first["next_token"]}).json()
    assert [t["id"] for t in first["templates"]] == [301, 302, 303]
    assert [t["id"] for t in second["templates"]] == [304]
    assert second["next_token"] is None


def test_template_create_dedupes(client):
    current = find_templates(client, {"id": {"eq": TEMPLATE_ID}})["templates"][0]
    duplicate = client.post("/api/v0/template/", json=current).json()
    new = client.post("/api/v0/template/", json=dict(current, env=env_for(NEW_MODEL))).json()
    assert duplicate["success"] is False
    assert duplicate["msg"] == "Existing Template Found: 301. User relationship added."
    assert duplicate["template"]["hash_id"] == current["hash_id"]
    assert new["success"] is True
    assert new["msg"] == "Template Created Successfully! New Template ID: 302"
    assert new["template"]["hash_id"] != current["hash_id"]
    assert get_state(client)["counters"]["template_saves"] == 2


def test_template_v1_edit_in_use_makes_copy(client):
    current = find_templates(client, {"id": {"eq": TEMPLATE_ID}})["templates"][0]
    response = client.put("/api/v1/template/", json=dict(current, env=env_for(NEW_MODEL)))
    body = response.json()
    assert body["success"] is True
    assert body["msg"] == "Created an Edited Copy of Template 301. New Template ID: 302"
    assert body["template"]["id"] == 302
    assert body["template"]["hash_id"] != current["hash_id"]
    old = find_templates(client, {"hash_id": {"eq": current["hash_id"]}})
    assert [t["id"] for t in old["templates"]] == [TEMPLATE_ID]


def test_template_v1_edit_unused_keeps_id(vast, client):
    unused = vast.world.create_template(name="spare", image="example/image", tag="1")
    current = find_templates(client, {"id": {"eq": unused.id}})["templates"][0]
    body = client.put("/api/v1/template/", json=dict(current, tag="2")).json()
    assert body["template"]["id"] == unused.id
    assert body["template"]["hash_id"] != current["hash_id"]
    assert body["template"]["tag"] == "2"


def test_template_v1_no_edits(client):
    current = find_templates(client, {"id": {"eq": TEMPLATE_ID}})["templates"][0]
    body = client.put("/api/v1/template/", json=current).json()
    assert body["msg"] == "No Edits made for template 301"
    assert body["hash_id"] == current["hash_id"]


@pytest.mark.parametrize("change", [{"id": 999}, {"hash_id": "0" * 32}])
def test_template_v1_unknown_is_404(client, change):
    current = find_templates(client, {"id": {"eq": TEMPLATE_ID}})["templates"][0]
    response = client.put("/api/v1/template/", json=dict(current, **change))
    assert response.status_code == 404
    assert response.json() == {"error": "invalid_template"}


def test_template_v0_partial_edit(client):
    current = find_templates(client, {"id": {"eq": TEMPLATE_ID}})["templates"][0]
    body = client.put("/api/v0/template/", json={"hash_id": current["hash_id"], "env": env_for(NEW_MODEL)}).json()
    assert body["success"] is True
    assert body["hash_id"] == body["template"]["hash_id"]
    assert body["hash_id"] != current["hash_id"]
    assert body["template"]["image"] == current["image"]
    assert body["msg"] == "Template 302 Updated Successfully"


@pytest.mark.parametrize(
    ("payload", "expected_msg"),
    [
        ({"bogus": 1}, "Unexpected Key 'bogus' found in Template."),
        ({"hash_id": "f" * 32, "tag": "x"}, "Unable to Update Template. None found for given Hash ID"),
    ],
)
def test_template_v0_errors(client, payload, expected_msg):
    response = client.put("/api/v0/template/", json=payload)
    assert response.status_code == 400
    assert response.json()["msg"] == expected_msg


# -- worker group PUT ------------------------------------------------------------


def test_workergroup_put_without_endpoint_id(client):
    response = client.put(f"/api/v0/autojobs/{GROUP_ID}/", json={"template_id": TEMPLATE_ID})
    assert response.status_code == 400
    assert response.json() == {"success": False, "error": "invalid_args", "msg": "missing endpoint_id"}


def test_workergroup_put_unknown_hash(client):
    response = client.put(f"/api/v0/autojobs/{GROUP_ID}/", json={"endpoint_id": ENDPOINT_ID, "template_hash": "0" * 32})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_args"


def test_workergroup_put_nulls_change_nothing(client):
    before = group_of(get_state(client))
    response = client.put(
        f"/api/v0/autojobs/{GROUP_ID}/",
        json={
            "client_id": "me",
            "autojob_id": GROUP_ID,
            "endpoint_id": ENDPOINT_ID,
            "template_hash": None,
            "template_id": None,
            "search_params": None,
            "launch_args": None,
            "gpu_ram": None,
            "endpoint_name": None,
        },
    )
    state = get_state(client)
    after = group_of(state)
    assert response.json() == {"success": True}
    assert after["template_hash"] == before["template_hash"]
    assert after["search_query"] == before["search_query"]
    assert after["update"] is None
    assert state["counters"]["workergroup_updates"] == 1


@pytest.mark.parametrize(
    ("search_params", "expected"),
    [
        (
            "gpu_ram>=48 num_gpus=1 verified=True",
            {"gpu_ram": {"gte": 48}, "num_gpus": {"eq": 1}, "verified": {"eq": True}},
        ),
        ({"gpu_ram": {"gte": 48}}, {"gpu_ram": {"gte": 48}}),
        (["gpu_ram>=48", "num_gpus=1"], {"gpu_ram": {"gte": 48}, "num_gpus": {"eq": 1}}),
        ("gpu_name=RTX_4090 gpu_ram>=24", {"gpu_name": {"eq": "RTX 4090"}, "gpu_ram": {"gte": 24}}),
        ("gpu_name in [RTX_4090,L40S]", {"gpu_name": {"in": ["RTX 4090", "L40S"]}}),
    ],
)
def test_workergroup_put_search_params_forms(client, search_params, expected):
    response = client.put(
        f"/api/v0/workergroups/{GROUP_ID}/", json={"endpoint_id": ENDPOINT_ID, "search_params": search_params}
    )
    assert response.json() == {"success": True}
    group = client.get("/api/v0/workergroups/").json()["results"][0]
    assert group["search_query"] == expected


def test_workergroup_put_invalid_search_params(client):
    response = client.put(
        f"/api/v0/autojobs/{GROUP_ID}/", json={"endpoint_id": ENDPOINT_ID, "search_params": "gpu_ram>>"}
    )
    assert response.status_code == 400
    assert response.json()["msg"].startswith("invalid search_params")


# -- rolling update -----------------------------------------------------------------


def test_rolling_update_full_cycle(client):
    old_hash, new_template = start_template_update(client)
    states = run_until_update_ends(client)

    first_active_pick = next(
        i for i, s in enumerate(states) if any(w["picked"] and w["id"] not in INACTIVE_IDS for w in workers_of(s))
    )
    picked_by_then = {w["id"] for s in states[: first_active_pick + 1] for w in workers_of(s) if w["picked"]}
    assert set(INACTIVE_IDS) <= picked_by_then

    draining_seen = [
        w
        for s in states
        for w in workers_of(s)
        if w["draining"] and w["reqs_working"] > 0 and w["template_hash"] == old_hash
    ]
    assert draining_seen

    max_picked = max(sum(w["picked"] for w in workers_of(s)) for s in states)
    assert max_picked == 2

    workers = client.post("/get_endpoint_workers/", json={"id": ENDPOINT_ID}).json()
    assert {w["status"] for w in workers} == {"IDLE"}
    filters = json.dumps({"id": {"in": ALL_WORKER_IDS}})
    instances = client.get("/api/v1/instances/", params={"select_filters": filters, "limit": 100}).json()["instances"]
    assert {i["template_hash_id"] for i in instances} == {new_template["hash_id"]}
    assert all(["MODEL_NAME", NEW_MODEL] in i["extra_env"] for i in instances)


def test_rolling_update_events_order(client):
    start_template_update(client)
    run_until_update_ends(client)
    events = client.get("/_sandbox/events").json()["events"]
    inactive_path = [e["new"] for e in events if e["worker_id"] == INACTIVE_IDS[0]]
    active_path = [e["new"] for e in events if e["worker_id"] == 4401]
    assert inactive_path == ["STARTING", "UPDATE_READY", "UPDATE_REBOOTING", "UPDATE_STARTING", "MODEL_LOADING", "IDLE"]
    assert active_path == ["UPDATE_READY", "UPDATE_REBOOTING", "UPDATE_STARTING", "MODEL_LOADING", "IDLE"]
    assert all(e["wall_time"] > 0 and e["sim_time"] > 0 for e in events)


@pytest.mark.parametrize("limit", [3, 8])
def test_rolling_update_parallel_limit(client, limit):
    client.post("/_sandbox/config", json={"parallel_updates": limit})
    start_template_update(client)
    states = run_until_update_ends(client)
    max_picked = max(sum(w["picked"] for w in workers_of(s)) for s in states)
    min_ready = min(sum(w["status"] == "IDLE" for w in workers_of(s)) for s in states)
    assert max_picked == limit
    if limit == 8:
        assert min_ready == 0
    else:
        assert min_ready > 0


def test_update_fail_model_sets_error(vast, client):
    vast.world.fail_models[NEW_MODEL] = "CUDA out of memory while loading the model"
    start_template_update(client)
    state = run_until(client, lambda s: any(w["status"] == "ERROR" for w in workers_of(s)))
    failed = next(w for w in workers_of(state) if w["status"] == "ERROR")
    instance = client.get(f"/api/v0/instances/{failed['id']}/").json()["instances"]
    assert instance["status_msg"] == "CUDA out of memory while loading the model"
    workers = client.post("/get_endpoint_workers/", json={"id": ENDPOINT_ID}).json()
    assert "ERROR" in {w["status"] for w in workers}


def test_update_hang_model_stays_loading(vast, client):
    vast.world.hang_models.add(NEW_MODEL)
    start_template_update(client)
    advance(client, 600)
    state = get_state(client)
    loading = [w["id"] for w in workers_of(state) if w["status"] == "MODEL_LOADING"]
    assert loading == INACTIVE_IDS[:2]
    assert group_of(state)["update"] is not None
    ready_on_new_template = [
        w["id"] for w in workers_of(state) if w["status"] == "IDLE" and w["template_id"] != TEMPLATE_ID
    ]
    assert ready_on_new_template == []


def test_update_rollback_after_hang(vast, client):
    vast.world.hang_models.add(NEW_MODEL)
    old_hash, _ = start_template_update(client)
    advance(client, 300)
    response = client.put(f"/api/v0/autojobs/{GROUP_ID}/", json={"endpoint_id": ENDPOINT_ID, "template_hash": old_hash})
    assert response.json() == {"success": True}
    run_until_update_ends(client)
    state = get_state(client)
    assert {w["template_hash"] for w in workers_of(state)} == {old_hash}
    assert {w["status"] for w in workers_of(state)} <= {"IDLE", "STOPPED"}


def test_update_cancel_keeps_unpicked_workers(client):
    old_hash, new_template = start_template_update(client)
    advance(client, 5)
    picked = {w["id"] for w in workers_of(get_state(client)) if w["picked"]}
    response = client.post("/update_workers/", json={"workergroup_id": GROUP_ID, "cancel_update": True})
    assert response.json() == {"success": True, "cancelled": True}
    run_until_update_ends(client)
    state = get_state(client)
    updated = {w["id"] for w in workers_of(state) if w["template_hash"] == new_template["hash_id"]}
    assert updated == picked
    assert all(w["template_hash"] == old_hash for w in workers_of(state) if w["id"] not in picked)
    assert state["counters"]["cancels"] == 1


def test_update_cancel_without_update(client):
    response = client.post("/update_workers/", json={"workergroup_id": GROUP_ID, "cancel_update": True})
    assert response.status_code == 400
    assert response.json()["success"] is False
    assert "no update in progress" in response.json()["error_msg"]


def test_update_workers_cycles_same_template(client):
    trigger_time = get_state(client)["clock"]
    response = client.post("/update_workers/", json={"workergroup_id": GROUP_ID, "api_key": API_KEY})
    assert response.json() == {"success": True, "workers_to_update": 8}
    run_until_update_ends(client)
    state = get_state(client)
    assert all(w["loaded_at"] > trigger_time for w in workers_of(state))
    assert {w["template_id"] for w in workers_of(state)} == {TEMPLATE_ID}
    events = client.get("/_sandbox/events").json()["events"]
    assert "MODEL_LOADING" not in {e["new"] for e in events}
    assert state["counters"]["update_workers_calls"] == 1


def test_search_params_change_cycles_all_workers(client):
    trigger_time = get_state(client)["clock"]
    client.put(
        f"/api/v0/autojobs/{GROUP_ID}/", json={"endpoint_id": ENDPOINT_ID, "search_params": "gpu_ram>=48 num_gpus=1"}
    )
    run_until_update_ends(client)
    state = get_state(client)
    assert all(w["loaded_at"] > trigger_time for w in workers_of(state))
    assert {w["template_id"] for w in workers_of(state)} == {TEMPLATE_ID}


# -- response variants ----------------------------------------------------------------


@pytest.mark.parametrize(("shape", "expected_type"), [("list", list), ("dict", dict)])
def test_worker_list_shape(client, shape, expected_type):
    client.post("/_sandbox/config", json={"worker_list_shape": shape})
    body = client.post("/get_endpoint_workers/", json={"id": ENDPOINT_ID}).json()
    assert isinstance(body, expected_type)
    workers = body if isinstance(body, list) else body["workers"]
    assert len(workers) == 8


def test_status_case_lower(client):
    client.post("/_sandbox/config", json={"status_case": "lower"})
    workers = client.post("/get_endpoint_workers/", json={"id": ENDPOINT_ID}).json()
    assert {w["status"] for w in workers} == {"idle", "stopped"}


def test_loading_error_msg_calls(client):
    client.post("/_sandbox/config", json={"loading_error_msg_calls": 2})
    replies = [client.post("/get_endpoint_workers/", json={"id": ENDPOINT_ID}) for _ in range(3)]
    assert [r.status_code for r in replies] == [200, 200, 200]
    assert "error_msg" in replies[0].json()
    assert "error_msg" in replies[1].json()
    assert isinstance(replies[2].json(), list)


def test_loading_error_status_400(client):
    client.post("/_sandbox/config", json={"loading_error_msg_calls": 1, "loading_error_status": 400})
    response = client.post("/get_workergroup_workers/", json={"id": GROUP_ID})
    assert response.status_code == 400
    assert list(response.json()) == ["error_msg"]


def test_router_error_style_string(client):
    client.post("/_sandbox/config", json={"router_error_style": "string"})
    response = client.post("/get_endpoint_workers/", json={"id": 999})
    assert response.status_code == 400
    assert response.json() == ("authenticate_endpoint_apikey: invalid api_key or endpoint 999 not found")


@pytest.mark.parametrize("included", [True, False])
def test_instance_template_field(client, included):
    client.post("/_sandbox/config", json={"instance_template_field": included})
    instance = client.get("/api/v0/instances/4401/", params={"owner": "me"}).json()["instances"]
    assert ("template_hash_id" in instance) is included
    assert ("template_id" in instance) is included
    assert instance["extra_env"] == [["MODEL_NAME", "Qwen/Qwen3-8B"], ["VLLM_ARGS", "--max-model-len 8192"]]
    assert instance["image_uuid"] == "vllm/vllm-openai:v0.11.0"


def test_instance_unknown_is_null(client):
    assert client.get("/api/v0/instances/1/").json() == {"instances": None}


def test_rate_limit_plain_text(client):
    client.post("/_sandbox/config", json={"rate_limit_seconds": 2.0})
    first = client.get("/api/v0/endptjobs/")
    second = client.get("/api/v0/endptjobs/")
    other_route = client.get("/api/v0/autojobs/")
    assert first.status_code == 200
    assert second.status_code == 429
    assert second.headers["content-type"].startswith("text/plain")
    assert second.text == "API requests too frequent: endpoint threshold=2.0"
    assert "retry-after" not in second.headers
    assert other_route.status_code == 200


def test_rate_limit_retry_after_header(client):
    client.post("/_sandbox/config", json={"rate_limit_seconds": 2.0, "retry_after_header": 3})
    client.get("/api/v0/endptjobs/")
    response = client.get("/api/v0/endptjobs/")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"


@pytest.mark.parametrize(
    ("body_shape", "expected"),
    [
        ("detail", {"detail": "API requests too frequent endpoint threshold=2.0"}),
        (
            "error",
            {
                "success": False,
                "error": "rate_limit_exceeded",
                "msg": "API requests too frequent endpoint threshold=2.0",
            },
        ),
    ],
)
def test_rate_limit_json_body(client, body_shape, expected):
    client.post("/_sandbox/config", json={"rate_limit_seconds": 2.0, "rate_limit_body": body_shape})
    client.get("/api/v0/endptjobs/")
    response = client.get("/api/v0/endptjobs/")
    assert response.status_code == 429
    assert response.json() == expected


@pytest.mark.parametrize(
    ("kind", "status", "content_type"),
    [
        ("429", 429, "text/plain"),
        ("502", 502, "text/html"),
        ("503", 503, "text/html"),
        ("504", 504, "text/html"),
    ],
)
def test_fail_next_status(vast, client, kind, status, content_type):
    vast.world.fail_next("/api/v0/endptjobs/", kind, count=2)
    replies = [client.get("/api/v0/endptjobs/") for _ in range(3)]
    assert [r.status_code for r in replies] == [status, status, 200]
    assert replies[0].headers["content-type"].startswith(content_type)


def test_fail_next_timeout(vast, client):
    vast.world.fail_next("/get_endpoint_workers/", "timeout", timeout_seconds=1.0)
    with pytest.raises(httpx.ReadTimeout):
        client.post("/get_endpoint_workers/", json={"id": ENDPOINT_ID}, timeout=0.2)
    assert client.post("/get_endpoint_workers/", json={"id": ENDPOINT_ID}).status_code == 200


def test_fail_next_disconnect(client):
    client.post("/_sandbox/fail_next", json={"route_prefix": "/api/v0/autojobs/", "kind": "disconnect"})
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/api/v0/autojobs/")
    assert client.get("/api/v0/autojobs/").status_code == 200


def test_faults_apply_only_to_routes(client):
    client.post("/_sandbox/config", json={"faults": {"rate": 0.5, "kinds": ["503"], "routes": ["/api/v0/endptjobs/"]}})
    faulty = [client.get("/api/v0/endptjobs/").status_code for _ in range(40)]
    healthy = [client.get("/api/v0/autojobs/").status_code for _ in range(10)]
    assert set(faulty) == {200, 503}
    assert 8 <= faulty.count(503) <= 32
    assert set(healthy) == {200}


def test_faults_repeat_with_same_seed():
    patterns = []
    for _ in range(2):
        with (
            VastSandbox(api_key=API_KEY, speed=0, seed=7) as sandbox,
            httpx.Client(base_url=sandbox.url, headers={"Authorization": f"Bearer {API_KEY}"}) as http,
        ):
            sandbox.world.add_endpoint("e", workers=1)
            sandbox.world.set_config({"faults": {"rate": 0.5, "kinds": ["502"]}})
            patterns.append([http.get("/api/v0/endptjobs/").status_code for _ in range(20)])
    assert patterns[0] == patterns[1]


# -- holds --------------------------------------------------------------------------


def point_group_request() -> dict:
    """The request that points the group at the default template (a change with no update)."""
    return {"endpoint_id": ENDPOINT_ID, "template_id": TEMPLATE_ID, "search_params": None}


def put_group_in_background(vast: VastSandbox, pool: ThreadPoolExecutor) -> Future:
    def send() -> httpx.Response:
        with httpx.Client(base_url=vast.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5.0) as http:
            return http.put(f"/api/v0/autojobs/{GROUP_ID}/", json=point_group_request())

    return pool.submit(send)


def wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met within the timeout"
        time.sleep(0.01)


def test_hold_before_waits_for_release(vast):
    hold = vast.world.hold("/api/v0/autojobs/", method="PUT", when="before")
    with ThreadPoolExecutor(1) as pool:
        response = put_group_in_background(vast, pool)
        assert hold.wait_held(5)
        time.sleep(0.1)
        assert not response.done()
        assert vast.world.counters["workergroup_updates"] == 0

        hold.release()

        assert response.result(5).json() == {"success": True}
    assert vast.world.counters["workergroup_updates"] == 1


def test_hold_after_applies_before_answering(vast):
    hold = vast.world.hold("/api/v0/autojobs/", method="PUT", when="after")
    with ThreadPoolExecutor(1) as pool:
        response = put_group_in_background(vast, pool)
        assert hold.wait_held(5)
        assert vast.world.counters["workergroup_updates"] == 1
        assert not response.done()

        hold.release()

        assert response.result(5).status_code == 200
    assert vast.world.counters["workergroup_updates"] == 1


def test_hold_drops_request_of_gone_client(vast, client):
    hold = vast.world.hold("/api/v0/autojobs/", method="PUT", when="before")
    body = json.dumps(point_group_request()).encode()
    request = (
        f"PUT /api/v0/autojobs/{GROUP_ID}/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", int(vast.url.rsplit(":", 1)[1])), timeout=5) as connection:
        connection.sendall(request + body)
        assert hold.wait_held(5)

    wait_for(lambda: hold.dropped_count == 1)
    assert vast.world.counters["workergroup_updates"] == 0
    assert client.put(f"/api/v0/autojobs/{GROUP_ID}/", json=point_group_request()).status_code == 200
    assert vast.world.counters["workergroup_updates"] == 1


def test_hold_skips_and_matches_method(vast, client):
    hold = vast.world.hold("/api/v0/autojobs/", method="PUT", when="before", skip=1, seconds=0.2)

    assert client.get("/api/v0/autojobs/").status_code == 200
    assert client.put(f"/api/v0/autojobs/{GROUP_ID}/", json=point_group_request()).status_code == 200
    assert hold.held_count == 0
    started = time.monotonic()
    assert client.put(f"/api/v0/autojobs/{GROUP_ID}/", json=point_group_request()).status_code == 200

    assert time.monotonic() - started >= 0.2
    assert hold.held_count == 1
    assert client.put(f"/api/v0/autojobs/{GROUP_ID}/", json=point_group_request()).status_code == 200
    assert hold.held_count == 1


def test_hold_control_routes(vast, client):
    response = client.post(
        "/_sandbox/hold", json={"route_prefix": "/api/v0/endptjobs/", "method": "GET", "when": "after"}
    )
    assert response.json() == {"success": True}
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(client.get, "/api/v0/endptjobs/")
        wait_for(lambda: get_state(client)["holds"][0]["held_count"] == 1)

        released = client.post("/_sandbox/release")

        assert released.json() == {"success": True, "released": 1}
        assert held.result(5).status_code == 200
    assert get_state(client)["holds"] == [
        {
            "route_prefix": "/api/v0/endptjobs/",
            "method": "GET",
            "when": "after",
            "remaining": 0,
            "skip": 0,
            "seconds": None,
            "held_count": 1,
            "dropped_count": 0,
            "released": True,
        }
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"when": "during"}, "when must be one of before, after"),
        ({"count": 0}, "count must be an integer of at least 1"),
        ({"skip": -1}, "skip must be an integer of at least 0"),
        ({"seconds": "soon"}, "seconds must be null or a non-negative number"),
    ],
)
def test_hold_rejects_invalid_arguments(client, body, message):
    response = client.post("/_sandbox/hold", json={"route_prefix": "/api/v0/autojobs/", **body})
    assert response.status_code == 400
    assert response.json()["msg"].startswith(message)


def test_stop_ends_held_requests(vast):
    hold = vast.world.hold("/api/v0/autojobs/", method="PUT", when="before")
    with ThreadPoolExecutor(1) as pool:
        response = put_group_in_background(vast, pool)
        assert hold.wait_held(5)

        vast.stop()

        with pytest.raises(httpx.TransportError):
            response.result(5)
    wait_for(lambda: hold.dropped_count == 1)
    assert vast.world.counters["workergroup_updates"] == 0


def test_config_rejects_unknown_key(client):
    response = client.post("/_sandbox/config", json={"no_such_key": 1})
    assert response.status_code == 400
    assert "no_such_key" in response.json()["msg"]


# -- instances, logs, counters -----------------------------------------------------------


def test_instances_v1_pages_with_id_filter(client):
    ids = [4401, 4403, 4405, 4407, 4408]
    params = {
        "select_filters": json.dumps({"id": {"in": ids}}),
        "order_by": json.dumps([{"col": "id", "dir": "desc"}]),
        "limit": 2,
    }
    pages = []
    token = None
    while True:
        query = dict(params, **({"after_token": token} if token else {}))
        body = client.get("/api/v1/instances/", params=query).json()
        pages.append([i["id"] for i in body["instances"]])
        assert body["total_instances"] == 5
        token = body["next_token"]
        if token is None:
            break
    assert pages == [[4408, 4407], [4405, 4403], [4401]]


def test_instances_v1_default_limit(vast, client):
    vast.world.add_workergroup(ENDPOINT_ID, workers=22)
    body = client.get("/api/v1/instances/").json()
    assert len(body["instances"]) == 25
    assert body["total_instances"] == 30
    assert body["next_token"] is not None


def test_instances_v1_invalid_token(client):
    response = client.get("/api/v1/instances/", params={"after_token": "garbage"})
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/get_endpoint_logs/", {"id": ENDPOINT_ID}),
        ("/get_endpoint_logs/", {"endpoint": "qwen-chat", "tail": 5}),
        ("/get_workergroup_logs/", {"id": GROUP_ID}),
        ("/get_autogroup_logs/", {"id": GROUP_ID}),
    ],
)
def test_logs_have_every_level(client, path, body):
    logs = client.post(path, json=body).json()
    assert set(logs) == {"info0", "info1", "trace", "debug", "logs"}
    assert f"workergroup {GROUP_ID} created" in logs["info0"]


def test_counters_count_calls_per_route(client):
    client.get("/api/v0/endptjobs/")
    client.get(f"/api/v0/endptjobs/{ENDPOINT_ID}/")
    client.get(f"/api/v0/endptjobs/{ENDPOINT_ID}/")
    calls = get_state(client)["counters"]["calls"]
    assert calls["GET /api/v0/endptjobs/"] == 1
    assert calls["GET /api/v0/endptjobs/{id}/"] == 2


def test_unknown_route_is_404(client):
    response = client.get("/api/v0/nothing/")
    assert response.status_code == 404
    assert response.json()["success"] is False


# -- clock and entry point -----------------------------------------------------------------


def test_ticker_steps_without_requests():
    with VastSandbox(api_key=API_KEY, speed=200.0) as sandbox:
        start = sandbox.world.snapshot()["clock"]
        deadline = time.monotonic() + 5
        while sandbox.world.snapshot()["clock"] < start + 20 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sandbox.world.snapshot()["clock"] >= start + 20


def test_module_entry_serves_demo_world():
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox.vast_server",
            "--port",
            "0",
            "--speed",
            "50",
            "--demo",
            "--log-level",
            "WARNING",
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = process.stdout.readline().strip()
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}) as http:
            endpoints = http.get("/api/v0/endptjobs/").json()["results"]
            groups = http.get("/api/v0/autojobs/").json()["results"]
            workers = http.post("/get_endpoint_workers/", json={"id": 101}).json()
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()
    assert url.startswith("http://127.0.0.1:")
    assert [e["endpoint_name"] for e in endpoints] == ["qwen-chat", "llama-batch"]
    assert [(g["endpoint_name"], g["id"]) for g in groups] == [
        ("qwen-chat", 201),
        ("llama-batch", 202),
        ("llama-batch", 203),
    ]
    assert len(workers) == 8
    assert process.returncode == 0
