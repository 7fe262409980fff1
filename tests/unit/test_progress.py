import pytest

from bot.progress import advance, classify, normalize_status, workers_to_check

OLD, NEW = "old-hash", "new-hash"


def worker(worker_id, status, loaded_at=100.0, reqs=0, **extra):
    return {"id": worker_id, "status": status, "loaded_at": loaded_at, "reqs_working": reqs, **extra}


def run(workers, previous=None, instances=None, now=1000.0, template_changed=True):
    return advance(workers, previous or {}, instances or {}, new_hash=NEW, template_changed=template_changed, now=now)


def rows_by_id(result):
    return {row["worker_id"]: row for row in result.rows}


@pytest.mark.parametrize(
    ("status", "on_new", "reqs", "phase"),
    [
        ("IDLE", False, 0, "waiting"),
        ("IDLE", False, 3, "draining"),
        ("STOPPED", False, 0, "waiting"),
        ("UPDATE_REBOOTING", False, 0, "updating"),
        ("MODEL_LOADING", False, 0, "updating"),
        ("IDLE", True, 2, "rejoined"),
        ("STOPPED", True, 0, "rejoined"),
        ("ERROR", False, 0, "error"),
        ("DESTROYING", False, 0, "other"),
        ("SOMETHING_NEW", False, 0, "other"),
    ],
)
def test_classify_phases(status, on_new, reqs, phase):
    assert classify(status, on_new, reqs) == phase


@pytest.mark.parametrize(
    ("raw", "expected"), [("idle", "IDLE"), (" Idle ", "IDLE"), (None, "UNKNOWN"), ("", "UNKNOWN")]
)
def test_normalize_status_any_case(raw, expected):
    assert normalize_status(raw) == expected


def test_first_poll_counts_without_transitions():
    result = run(
        [worker(1, "IDLE", reqs=2), worker(2, "STOPPED"), worker(3, "IDLE")],
        instances={1: {"template_hash_id": OLD}, 2: {"template_hash_id": OLD}, 3: {"template_hash_id": OLD}},
    )
    assert result.transitions == []
    assert result.progress.to_dict() == {
        "total": 3,
        "rejoined": 0,
        "waiting": 2,
        "draining": 1,
        "updating": 0,
        "errors": 0,
        "ready": 2,
        "other": 0,
    }


def test_drain_update_rejoin_sequence():
    first = run([worker(1, "IDLE", reqs=2)], instances={1: {"template_hash_id": OLD}}, now=1000.0)
    previous = rows_by_id(first)

    second = run([worker(1, "UPDATE_READY")], previous, now=1010.0)
    assert [(t.worker_id, t.old_phase, t.new_phase, t.drained_requests) for t in second.transitions] == [
        (1, "draining", "updating", 2)
    ]
    previous = rows_by_id(second)

    third = run([worker(1, "IDLE", loaded_at=1100.0)], previous, instances={1: {"template_hash_id": NEW}}, now=1122.0)
    assert [(t.new_phase, t.seconds_updating) for t in third.transitions] == [("rejoined", 112.0)]
    assert third.progress.done


def test_rejoined_on_old_template_is_not_done():
    previous = rows_by_id(run([worker(1, "UPDATE_STARTING")]))
    result = run([worker(1, "IDLE", loaded_at=2000.0)], previous, instances={1: {"template_hash_id": OLD}})
    assert result.progress.rejoined == 0
    assert not result.progress.done


def test_instance_without_hash_falls_back_to_loaded_at():
    previous = rows_by_id(run([worker(1, "IDLE", loaded_at=100.0)], instances={1: {}}))
    unchanged = run([worker(1, "IDLE", loaded_at=100.0)], previous, instances={1: {}})
    assert unchanged.progress.rejoined == 0
    reloaded = run([worker(1, "IDLE", loaded_at=150.0)], previous, instances={1: {}})
    assert reloaded.progress.rejoined == 1


def test_search_only_change_uses_loaded_at():
    previous = rows_by_id(run([worker(1, "IDLE", loaded_at=100.0)], template_changed=False))
    result = run([worker(1, "IDLE", loaded_at=300.0)], previous, template_changed=False)
    assert result.progress.done


def test_error_transition_carries_status_msg():
    previous = rows_by_id(run([worker(1, "UPDATE_STARTING")]))
    result = run([worker(1, "ERROR", status_msg="CUDA out of memory")], previous)
    assert [(t.new_phase, t.status_msg) for t in result.transitions] == [("error", "CUDA out of memory")]
    assert result.progress.errors == 1


def test_status_since_resets_only_on_status_change():
    first = rows_by_id(run([worker(1, "MODEL_LOADING")], now=10.0))
    same = rows_by_id(run([worker(1, "MODEL_LOADING")], first, now=50.0))
    assert same[1]["status_since"] == 10.0
    moved = rows_by_id(run([worker(1, "UPDATE_STARTING")], same, now=60.0))
    assert moved[1]["status_since"] == 60.0


def test_workers_to_check_only_changed_settled_workers():
    workers = [worker(1, "IDLE"), worker(2, "UPDATE_READY"), worker(3, "STOPPED")]
    assert workers_to_check(workers, {}) == [1, 3]
    previous = rows_by_id(run(workers, instances={1: {"template_hash_id": OLD}, 3: {"template_hash_id": OLD}}))
    assert workers_to_check(workers, previous) == []
    changed = [worker(1, "IDLE", loaded_at=500.0), worker(2, "IDLE", loaded_at=600.0), worker(3, "STOPPED")]
    assert workers_to_check(changed, previous) == [1, 2]


def test_confirmed_worker_is_not_checked_again():
    previous = rows_by_id(run([worker(1, "UPDATE_STARTING")]))
    rejoined = rows_by_id(run([worker(1, "IDLE", loaded_at=900.0)], previous, instances={1: {"template_hash_id": NEW}}))
    assert workers_to_check([worker(1, "IDLE", loaded_at=950.0)], rejoined) == []


def test_lower_case_statuses_are_understood():
    result = run([worker(1, "update_rebooting"), worker(2, "idle", reqs=1)], instances={2: {"template_hash_id": OLD}})
    assert (result.progress.updating, result.progress.draining) == (1, 1)


def test_worker_seen_updating_after_trigger_needs_no_lookup():
    before = rows_by_id(run([worker(1, "IDLE", loaded_at=100.0)], instances={1: {"template_hash_id": OLD}}, now=5.0))
    updating = rows_by_id(
        advance(
            [worker(1, "UPDATE_REBOOTING")],
            before,
            {},
            new_hash=NEW,
            template_changed=True,
            now=20.0,
            triggered_at=10.0,
        )
    )
    settled = [worker(1, "IDLE", loaded_at=300.0)]
    assert workers_to_check(settled, updating, triggered_at=10.0) == []
    result = advance(settled, updating, {}, new_hash=NEW, template_changed=True, now=30.0, triggered_at=10.0)
    assert result.progress.rejoined == 1


def test_worker_updating_before_trigger_still_checked():
    updating = rows_by_id(run([worker(1, "UPDATE_REBOOTING")], now=5.0))
    settled = [worker(1, "IDLE", loaded_at=300.0)]
    assert workers_to_check(settled, updating, triggered_at=10.0) == [1]
    result = advance(
        settled,
        updating,
        {1: {"template_hash_id": OLD}},
        new_hash=NEW,
        template_changed=True,
        now=30.0,
        triggered_at=10.0,
    )
    assert result.progress.rejoined == 0
