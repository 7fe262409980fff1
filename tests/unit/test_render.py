import pytest

from bot import render
from bot.progress import Transition

PROPOSAL = {
    "id": 7,
    "kind": "change",
    "status": "pending",
    "endpoint_id": 101,
    "endpoint_name": "qwen-chat",
    "workergroup_id": 201,
    "proposer_id": "U0ALICE",
    "reason": "<!channel> bigger & better",
    "base_template_hash": "abc",
    "approvals_required": 2,
    "expires_at": 1_800_000_000.0,
    "diff": [
        {"label": "MODEL_NAME", "old": "Qwen/Qwen3-8B", "new": "Qwen/Qwen3-14B", "flags": []},
        {
            "label": "VLLM_ARGS",
            "old": "--max-model-len 8192",
            "new": "--max-model-len 16384 --enforce-eager",
            "flags": [
                {"flag": "--max-model-len", "old": "8192", "new": "16384", "added": False, "removed": False},
                {"flag": "--enforce-eager", "old": None, "new": None, "added": True, "removed": False},
            ],
        },
    ],
}


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [("<!channel>", "&lt;!channel&gt;"), ("a & b", "a &amp; b"), ("<@U1>", "&lt;@U1&gt;"), ("plain", "plain")],
)
def test_escape_control_characters(raw, escaped):
    assert render.escape(raw) == escaped


def test_code_swaps_backticks_and_shows_empty():
    assert render.code("a`b") == "`aˋb`"
    assert render.code("") == "_(empty)_"
    assert render.code(None) == "_(unset)_"


@pytest.mark.parametrize(("seconds", "text"), [(5, "5s"), (112, "1m52s"), (3725, "1h02m")])
def test_duration(seconds, text):
    assert render.duration(seconds) == text


def test_pending_proposal_shows_diff_approvals_and_buttons():
    text, blocks = render.proposal_message(PROPOSAL, [{"user_id": "U0BOB", "at": 1.0}])
    body = str(blocks)
    assert "Proposal #7: qwen-chat / group 201" in text
    assert "`Qwen/Qwen3-8B` → `Qwen/Qwen3-14B`" in body
    assert "`--max-model-len`: `8192` → `16384`" in body
    assert "+ `--enforce-eager`" in body
    assert "1 of 2" in body
    assert "<@U0BOB>" in body
    assert "&lt;!channel&gt; bigger &amp; better" in body
    assert "<!channel>" not in body
    assert blocks[-1]["type"] == "actions"
    assert [element["action_id"] for element in blocks[-1]["elements"]] == ["approve", "reject", "cancel_proposal"]


def test_decided_proposal_has_no_buttons():
    _, blocks = render.proposal_message(
        {**PROPOSAL, "status": "completed"},
        [{"user_id": "U0BOB", "at": 1.0}],
        progress={"total": 8, "rejoined": 8},
        rollout={"phase": "done"},
    )
    assert "actions" not in [block["type"] for block in blocks]
    assert "*8/8*" in str(blocks)


def test_worker_updates_stay_within_slack_limits():
    transitions = [
        Transition(worker_id=4000 + i, old_phase="updating", new_phase="rejoined", status="IDLE", seconds_updating=90.0)
        for i in range(1000)
    ]
    transitions += [
        Transition(worker_id=9000 + i, old_phase="updating", new_phase="error", status="ERROR", status_msg="x" * 500)
        for i in range(40)
    ]
    text, blocks = render.worker_updates(transitions, {"total": 1040, "rejoined": 1000})
    assert len(blocks) <= 50
    assert all(len(block.get("text", {}).get("text", "")) <= 3000 for block in blocks)
    body = "\n".join(block["text"]["text"] for block in blocks if block["type"] == "section")
    assert "and 1000 more rejoined on the new configuration" in body
    assert "and 15 more went into ERROR" in body
    assert body.startswith("• worker 9000 is in ERROR: " + "x" * 199 + "…")
    assert len(text) <= 3000


def test_transition_lines():
    drained = Transition(worker_id=1, old_phase="draining", new_phase="updating", status="UPDATE_READY")
    assert render.transition_line(drained) == "worker 1 drained and is updating (UPDATE_READY)"
    rejoined = Transition(worker_id=2, old_phase="updating", new_phase="rejoined", status="IDLE", seconds_updating=112)
    assert render.transition_line(rejoined) == "worker 2 rejoined on the new configuration after 1m52s"
    before = Transition(worker_id=3, old_phase=None, new_phase="error", status="ERROR")
    assert render.transition_line(before) == "worker 3 was already in ERROR"


def test_alert_mentions_each_person_once():
    text, blocks = render.alert_message(
        headline="worker 1 went into ERROR",
        proposal=PROPOSAL,
        people=["U0ALICE", "U0BOB", "U0ALICE"],
        thread="rollout thread",
        buttons=render.alert_buttons("1|worker-1|error", running=True),
    )
    assert text.count("<@U0ALICE>") == 1
    assert text.count("<@U0BOB>") == 1
    assert [b["action_id"] for b in blocks[-1]["elements"]] == ["alert_abort", "alert_rollback", "alert_keep_waiting"]
    assert [b["action_id"] for b in render.alert_buttons("1|r|failed", running=False)] == ["alert_rollback"]
