import threading

import pytest

from bot.store import Store


@pytest.fixture
def store(tmp_path):
    db = Store(str(tmp_path / "rollcall.db"), clock=lambda: 1000.0)
    yield db
    db.close()


def make_proposal(store, **overrides):
    values = dict(
        status="pending",
        endpoint_id=101,
        endpoint_name="qwen-chat",
        workergroup_id=201,
        channel_id="C1",
        proposer_id="U0ALICE",
        change={"env_set": {"MODEL_NAME": "x"}},
        base_template_hash="old",
        base_template_id=301,
        base_search={"gpu_ram": {"gte": 24}},
        target_template={"env": "-e MODEL_NAME=x"},
        target_search={"gpu_ram": {"gte": 24}},
        diff=[{"label": "MODEL_NAME", "old": "y", "new": "x", "flags": []}],
        approvals_required=1,
    )
    values.update(overrides)
    return store.create_proposal(**values)


def rollout_values():
    return dict(
        workergroup_id=201,
        endpoint_id=101,
        phase="saving_template",
        channel_id="C1",
        old_template_hash="old",
        old_search={},
        new_search={},
    )


def test_proposal_round_trip_decodes_json(store):
    proposal_id = make_proposal(store)
    proposal = store.proposal(proposal_id)
    assert proposal["change"] == {"env_set": {"MODEL_NAME": "x"}}
    assert proposal["base_search"] == {"gpu_ram": {"gte": 24}}
    assert proposal["created_at"] == 1000.0


def test_move_proposal_only_from_expected_status(store):
    proposal_id = make_proposal(store)
    assert store.move_proposal(proposal_id, ("pending",), "rejected")
    assert not store.move_proposal(proposal_id, ("pending",), "approved")
    assert store.proposal(proposal_id)["status"] == "rejected"


def test_add_decision_once_per_user(store):
    proposal_id = make_proposal(store)
    assert store.add_decision(proposal_id, "U0BOB", "approve")
    assert not store.add_decision(proposal_id, "U0BOB", "approve")
    assert [row["user_id"] for row in store.decisions(proposal_id)] == ["U0BOB"]


def test_start_rollout_needs_approved_proposal(store):
    proposal_id = make_proposal(store)
    assert store.start_rollout(proposal_id, **rollout_values()) is None
    store.move_proposal(proposal_id, ("pending",), "approved")
    rollout_id = store.start_rollout(proposal_id, **rollout_values())
    assert rollout_id is not None
    assert store.proposal(proposal_id)["status"] == "running"
    assert store.running_rollout(201)["id"] == rollout_id


def test_one_running_rollout_per_group(store):
    first, second = make_proposal(store, status="approved"), make_proposal(store, status="approved")
    assert store.start_rollout(first, **rollout_values()) is not None
    assert store.start_rollout(second, **rollout_values()) is None
    assert store.proposal(second)["status"] == "approved"


def test_concurrent_starts_create_one_rollout(tmp_path):
    path = str(tmp_path / "race.db")
    setup = Store(path)
    proposal_ids = [make_proposal(setup, status="approved") for _ in range(8)]
    setup.close()
    stores = [Store(path) for _ in proposal_ids]
    results = []
    barrier = threading.Barrier(len(stores))

    def start(store, proposal_id):
        barrier.wait()
        results.append(store.start_rollout(proposal_id, **rollout_values()))

    threads = [threading.Thread(target=start, args=pair) for pair in zip(stores, proposal_ids, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.close()
    assert len([result for result in results if result is not None]) == 1


def test_finish_rollout_closes_proposal_once(store):
    proposal_id = make_proposal(store, status="approved")
    rollout_id = store.start_rollout(proposal_id, **rollout_values())
    assert store.finish_rollout(rollout_id, "completed", "completed", "8/8")
    assert not store.finish_rollout(rollout_id, "failed", "failed")
    assert store.rollout(rollout_id)["status"] == "completed"
    assert store.proposal(proposal_id)["status"] == "completed"
    assert store.running_rollout(201) is None


def test_enqueue_collapses_pending_edits(store):
    store.enqueue("post", "proposal:1", "C1", {"text": "first"})
    store.enqueue("update", "proposal:1", "C1", {"text": "edit 1"})
    store.enqueue("update", "proposal:1", "C1", {"text": "edit 2"})
    rows = store.outbox()
    assert [(row["op"], row["payload"]["text"]) for row in rows] == [("post", "first"), ("update", "edit 2")]


def test_record_delivery_stores_ts(store):
    outbox_id = store.enqueue("post", "proposal:1", "C1", {"text": "hi"})
    store.record_delivery(outbox_id, "proposal:1", "C1", "1.000100")
    assert store.message("proposal:1") == {"key": "proposal:1", "channel_id": "C1", "ts": "1.000100"}
    assert store.outbox() == []


def test_record_alert_once(store):
    assert store.record_alert(1, "worker-4401", "error")
    assert not store.record_alert(1, "worker-4401", "error")
    assert store.record_alert(1, "worker-4401", "stuck")


def test_store_reopens_existing_file(tmp_path):
    path = str(tmp_path / "keep.db")
    first = Store(path)
    proposal_id = make_proposal(first)
    first.close()
    second = Store(path)
    assert second.proposal(proposal_id)["endpoint_name"] == "qwen-chat"
    second.close()
