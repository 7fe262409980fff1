"""The Vast client against the sandbox, in every documented response variant."""

import httpx
import pytest

from bot.vast import VastClient, VastError, VastUnavailable, VastWorkersLoading
from sandbox.vast_server import VastSandbox

KEY = "client-test-key"


@pytest.fixture
def sandbox():
    vast = VastSandbox(api_key=KEY, speed=0, seed=5).start()
    vast.world.add_endpoint(
        "qwen-chat",
        workers=4,
        inactive=1,
        model="Qwen/Qwen3-8B",
        vllm_args="--max-model-len 8192",
        image="vllm/vllm-openai",
        tag="v0.11.0",
        search="gpu_ram>=24 num_gpus=1 verified=True",
    )
    yield vast
    vast.stop()


@pytest.fixture
def http():
    with httpx.Client(timeout=1.0) as client:
        yield client


@pytest.fixture
def waits():
    return []


@pytest.fixture
def client(sandbox, http, waits):
    return VastClient(
        KEY, sandbox.url, sandbox.url, http=http, min_interval=0, attempts=3, backoff=0.01, sleep=waits.append
    )


def group(sandbox):
    return sandbox.world.snapshot()["workergroups"][0]


def test_lists_endpoints_and_groups(client):
    assert [endpoint["endpoint_name"] for endpoint in client.list_endpoints()] == ["qwen-chat"]
    groups = client.list_workergroups()
    assert len(groups) == 1
    assert groups[0]["search_query"]["gpu_ram"] == {"gte": 24}


def test_wrong_key_raises_with_vast_message(sandbox, http):
    client = VastClient("wrong", sandbox.url, sandbox.url, http=http, min_interval=0)
    with pytest.raises(VastError) as raised:
        client.list_endpoints()
    assert raised.value.status == 401
    assert "wrong" not in str(raised.value)


def test_find_template_by_hash(client, sandbox):
    template = client.find_template(group(sandbox)["template_hash"])
    assert template["image"] == "vllm/vllm-openai"
    assert client.find_template("0" * 32) is None


def test_save_template_gives_new_id_and_hash(client, sandbox):
    old = client.find_template(group(sandbox)["template_hash"])
    edited = {**old, "env": old["env"].replace("Qwen3-8B", "Qwen3-14B")}
    saved = client.save_template(edited)
    assert saved["hash_id"] != old["hash_id"]
    assert saved["id"] != old["id"]
    assert client.find_template(old["hash_id"]) is not None


def test_create_existing_template_is_success(client, sandbox):
    old = client.find_template(group(sandbox)["template_hash"])
    content = {key: old[key] for key in ("name", "image", "tag", "env", "runtype") if key in old}
    first = client.create_template(content)
    again = client.create_template(content)
    assert again["hash_id"] == first["hash_id"]
    assert again["id"] == first["id"]


def test_update_workergroup_sends_complete_filter(client, sandbox):
    current = group(sandbox)
    client.update_workergroup(
        current["id"],
        current["endpoint_id"],
        template_hash=current["template_hash"],
        template_id=current["template_id"],
        search_params="gpu_ram>=48 num_gpus=1 verified=True",
    )
    assert group(sandbox)["search_query"] == {"gpu_ram": {"gte": 48}, "num_gpus": {"eq": 1}, "verified": {"eq": True}}


def test_update_workergroup_error_carries_msg(client, sandbox):
    current = group(sandbox)
    with pytest.raises(VastError) as raised:
        client.update_workergroup(
            current["id"], current["endpoint_id"], template_hash="f" * 32, template_id=None, search_params="gpu_ram>=24"
        )
    assert raised.value.status == 400
    assert raised.value.detail


@pytest.mark.parametrize("shape", ["list", "dict"])
@pytest.mark.parametrize("case", ["upper", "lower"])
def test_worker_list_variants(client, sandbox, shape, case):
    sandbox.world.set_config({"worker_list_shape": shape, "status_case": case})
    workers = client.workergroup_workers(group(sandbox)["id"])
    assert len(workers) == 4
    statuses = {worker["status"] for worker in workers}
    assert statuses == ({"IDLE", "STOPPED"} if case == "upper" else {"idle", "stopped"})
    assert len(client.endpoint_workers(group(sandbox)["endpoint_id"])) == 4


def test_error_msg_while_loading(client, sandbox):
    sandbox.world.set_config({"loading_error_msg_calls": 1})
    with pytest.raises(VastWorkersLoading):
        client.workergroup_workers(group(sandbox)["id"])
    assert len(client.workergroup_workers(group(sandbox)["id"])) == 4


def test_instances_in_pages(client, sandbox):
    ids = [worker["id"] for worker in client.workergroup_workers(group(sandbox)["id"])]
    instances = client.instances(ids)
    assert sorted(instances) == sorted(ids)
    assert all(row["template_hash_id"] == group(sandbox)["template_hash"] for row in instances.values())
    assert client.instance(ids[0])["id"] == ids[0]


@pytest.mark.parametrize("kind", ["429", "502", "503", "504", "disconnect"])
def test_transient_failure_is_retried(client, sandbox, waits, kind):
    sandbox.world.fail_next("/api/v0/endptjobs/", kind, count=2)
    assert client.list_endpoints()
    assert len(waits) == 2
    assert waits[1] > waits[0]


def test_timeout_is_retried(sandbox, http, waits):
    client = VastClient(
        KEY, sandbox.url, sandbox.url, http=http, min_interval=0, attempts=2, backoff=0.01, sleep=waits.append
    )
    sandbox.world.fail_next("/api/v0/endptjobs/", "timeout", count=1, timeout_seconds=1.5)
    assert client.list_endpoints()
    assert len(waits) == 1


def test_retries_exhausted_raise_unavailable(client, sandbox):
    sandbox.world.fail_next("/api/v0/autojobs/", "503", count=3)
    with pytest.raises(VastUnavailable, match="after 3 attempts"):
        client.list_workergroups()


def test_plain_text_429_without_retry_after(client, sandbox, waits):
    sandbox.world.set_config({"rate_limit_seconds": 5.0})
    client.list_endpoints()
    with pytest.raises(VastUnavailable, match="API requests too frequent"):
        client.list_endpoints()
    assert waits == [0.01, 0.02]


def test_retry_after_header_is_honoured(client, sandbox, waits):
    sandbox.world.set_config({"rate_limit_seconds": 5.0, "retry_after_header": 3})
    client.list_endpoints()
    with pytest.raises(VastUnavailable):
        client.list_endpoints()
    assert waits == [3.0, 3.0]


def test_min_interval_spaces_calls_per_route(sandbox, http, waits):
    client = VastClient(KEY, sandbox.url, sandbox.url, http=http, min_interval=2.0, sleep=waits.append)
    client.list_endpoints()
    client.list_workergroups()
    assert waits == []
    client.list_endpoints()
    assert len(waits) == 1
    assert 1.5 < waits[0] <= 2.0


def test_cancel_update(client, sandbox):
    current = group(sandbox)
    old = client.find_template(current["template_hash"])
    saved = client.save_template({**old, "env": old["env"].replace("Qwen3-8B", "Qwen3-14B")})
    client.update_workergroup(
        current["id"],
        current["endpoint_id"],
        template_hash=saved["hash_id"],
        template_id=saved["id"],
        search_params="gpu_ram>=24 num_gpus=1 verified=True",
    )
    assert client.cancel_update(current["id"])["success"]
    assert sandbox.world.counters["cancels"] == 1


def test_api_key_never_in_error_text(sandbox, http):
    client = VastClient(KEY, sandbox.url, sandbox.url, http=http, min_interval=0, attempts=1)
    sandbox.world.fail_next("/api/v0/endptjobs/", "503", count=1)
    with pytest.raises(VastUnavailable) as raised:
        client.list_endpoints()
    assert KEY not in str(raised.value)
