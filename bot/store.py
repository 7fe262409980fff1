"""SQLite storage for proposals, approvals, rollouts, their journal and the Slack outbox.

The listener threads, the scheduler and the outbox worker share one connection, and a lock
serializes its use. Every state change that must be atomic (an approval, taking the worker
group's rollout lock) is a single transaction.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlite_utils

SCHEMA = """
CREATE TABLE IF NOT EXISTS proposals (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL DEFAULT 'change',
    status TEXT NOT NULL,
    endpoint_id INTEGER NOT NULL,
    endpoint_name TEXT NOT NULL,
    workergroup_id INTEGER NOT NULL,
    channel_id TEXT NOT NULL,
    proposer_id TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    change TEXT NOT NULL,
    base_template_hash TEXT NOT NULL,
    base_template_id INTEGER,
    base_search TEXT NOT NULL,
    target_template TEXT,
    target_search TEXT NOT NULL,
    diff TEXT NOT NULL,
    approvals_required INTEGER NOT NULL,
    rollback_of INTEGER,
    status_detail TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    expires_at REAL,
    decided_at REAL
);
CREATE INDEX IF NOT EXISTS proposals_group ON proposals (workergroup_id, status);

CREATE TABLE IF NOT EXISTS approvals (
    proposal_id INTEGER NOT NULL REFERENCES proposals(id),
    user_id TEXT NOT NULL,
    decision TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    at REAL NOT NULL,
    PRIMARY KEY (proposal_id, user_id, decision)
);

CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    proposal_id INTEGER NOT NULL,
    at REAL NOT NULL,
    user_id TEXT,
    action TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS audit_proposal ON audit (proposal_id, id);

CREATE TABLE IF NOT EXISTS rollouts (
    id INTEGER PRIMARY KEY,
    proposal_id INTEGER NOT NULL UNIQUE REFERENCES proposals(id),
    workergroup_id INTEGER NOT NULL,
    endpoint_id INTEGER NOT NULL,
    status TEXT NOT NULL,
    phase TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    old_template_hash TEXT NOT NULL,
    old_template_id INTEGER,
    old_search TEXT NOT NULL,
    new_template_hash TEXT,
    new_template_id INTEGER,
    new_search TEXT NOT NULL,
    triggered_at REAL,
    started_at REAL NOT NULL,
    finished_at REAL,
    worker_total INTEGER NOT NULL DEFAULT 0,
    failed_polls INTEGER NOT NULL DEFAULT 0,
    ready_before INTEGER,
    unreachable_since REAL,
    progress TEXT,
    summary TEXT NOT NULL DEFAULT ''
);
-- At most one running rollout per worker group: the index makes a second one fail to insert.
CREATE UNIQUE INDEX IF NOT EXISTS one_running_rollout
    ON rollouts (workergroup_id) WHERE status = 'running';

CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY,
    rollout_id INTEGER NOT NULL,
    at REAL NOT NULL,
    step TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS journal_rollout ON journal (rollout_id, id);

CREATE TABLE IF NOT EXISTS workers (
    rollout_id INTEGER NOT NULL,
    worker_id INTEGER NOT NULL,
    status TEXT NOT NULL,
    phase TEXT NOT NULL,
    loaded_at REAL,
    baseline_loaded_at REAL,
    reqs_working INTEGER NOT NULL DEFAULT 0,
    on_new INTEGER NOT NULL DEFAULT 0,
    first_seen REAL NOT NULL,
    status_since REAL NOT NULL,
    updating_since REAL,
    rejoined_at REAL,
    status_msg TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (rollout_id, worker_id)
);

CREATE TABLE IF NOT EXISTS alerts (
    rollout_id INTEGER NOT NULL,
    subject TEXT NOT NULL,
    cause TEXT NOT NULL,
    at REAL NOT NULL,
    acknowledged_by TEXT,
    PRIMARY KEY (rollout_id, subject, cause)
);

CREATE TABLE IF NOT EXISTS messages (
    key TEXT PRIMARY KEY,
    channel_id TEXT NOT NULL,
    ts TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    op TEXT NOT NULL,
    key TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    thread_key TEXT,
    payload TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_state ON outbox (state, id);
"""

JSON_COLUMNS = {
    "change",
    "base_search",
    "target_template",
    "target_search",
    "diff",
    "old_search",
    "new_search",
    "progress",
}


def _decode(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    for column in JSON_COLUMNS & row.keys():
        if isinstance(row[column], str):
            row[column] = json.loads(row[column])
    return row


def _encode(values: dict[str, Any]) -> dict[str, Any]:
    return {
        key: json.dumps(value) if key in JSON_COLUMNS and value is not None else value for key, value in values.items()
    }


class Batch:
    """Writes that commit together: a state change and the Slack messages that report it.

    A crash can then lose both or neither, never the message alone. Created by
    `Store.batch()`; every method uses the batch's open transaction.
    """

    def __init__(self, connection: sqlite3.Connection, clock: Callable[[], float]) -> None:
        self.connection = connection
        self.clock = clock
        self.queued = 0

    def update_rollout(self, rollout_id: int, **values: Any) -> None:
        encoded = _encode(values)
        columns = ", ".join(f"{name} = ?" for name in encoded)
        self.connection.execute(f"UPDATE rollouts SET {columns} WHERE id = ?", (*encoded.values(), rollout_id))

    def finish_rollout(self, rollout_id: int, status: str, proposal_status: str, summary: str = "") -> bool:
        """Close a running rollout and its proposal together; False if it was not running."""
        now = self.clock()
        cursor = self.connection.execute(
            "UPDATE rollouts SET status = ?, phase = 'done', finished_at = ?, summary = ? "
            "WHERE id = ? AND status = 'running'",
            (status, now, summary, rollout_id),
        )
        if cursor.rowcount != 1:
            return False
        self.connection.execute(
            "UPDATE proposals SET status = ?, decided_at = COALESCE(decided_at, ?) "
            "WHERE id = (SELECT proposal_id FROM rollouts WHERE id = ?)",
            (proposal_status, now, rollout_id),
        )
        return True

    def journal(self, rollout_id: int, step: str, detail: str = "") -> None:
        self.connection.execute(
            "INSERT INTO journal (rollout_id, at, step, detail) VALUES (?, ?, ?, ?)",
            (rollout_id, self.clock(), step, detail),
        )

    def audit(self, proposal_id: int, action: str, user_id: str | None = None, detail: str = "") -> None:
        self.connection.execute(
            "INSERT INTO audit (proposal_id, at, user_id, action, detail) VALUES (?, ?, ?, ?, ?)",
            (proposal_id, self.clock(), user_id, action, detail),
        )

    def save_workers(self, rollout_id: int, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            values = {"rollout_id": rollout_id, **row}
            marks = ", ".join("?" for _ in values)
            self.connection.execute(
                f"INSERT OR REPLACE INTO workers ({', '.join(values)}) VALUES ({marks})", tuple(values.values())
            )

    def enqueue(
        self, op: str, key: str, channel_id: str, payload: dict[str, Any], thread_key: str | None = None
    ) -> int:
        """Queue a Slack post or edit; a newer edit of a message replaces any edit still queued."""
        if op == "update":
            self.connection.execute("DELETE FROM outbox WHERE op = 'update' AND key = ? AND state = 'pending'", (key,))
        cursor = self.connection.execute(
            "INSERT INTO outbox (op, key, channel_id, thread_key, payload, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (op, key, channel_id, thread_key, json.dumps(payload), self.clock()),
        )
        self.queued += 1
        return int(cursor.lastrowid)  # type: ignore[arg-type]


class Store:
    """Rollcall's database.

    Args:
        path: the SQLite file; created with its schema when missing.
        clock: returns the current time as epoch seconds.
    """

    def __init__(self, path: str, *, clock: Callable[[], float] = time.time) -> None:
        connection = sqlite3.connect(path, check_same_thread=False, timeout=30, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA busy_timeout=30000")
        connection.execute("PRAGMA foreign_keys=ON")
        self.db = sqlite_utils.Database(connection)
        self.clock = clock
        self._lock = threading.RLock()
        with self._lock:
            connection.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self.db.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run statements as one `BEGIN IMMEDIATE` transaction, holding the store's lock."""
        with self._lock:
            connection = self.db.conn
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    @contextmanager
    def batch(self) -> Iterator[Batch]:
        """Group writes into one transaction (see `Batch`)."""
        with self.transaction() as connection:
            yield Batch(connection, self.clock)

    def _one(self, sql: str, params: tuple[Any, ...] = ()) -> dict[str, Any] | None:
        with self._lock:
            rows = list(self.db.query(sql, params))
        return _decode(rows[0]) if rows else None

    def _all(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return [_decode(row) for row in self.db.query(sql, params)]  # type: ignore[misc]

    # Proposals ------------------------------------------------------------------------------

    def create_proposal(self, **values: Any) -> int:
        values.setdefault("created_at", self.clock())
        with self._lock:
            table = self.db.table("proposals")
            table.insert(_encode(values))
            return int(table.last_pk)  # type: ignore[arg-type]

    def proposal(self, proposal_id: int) -> dict[str, Any] | None:
        return self._one("SELECT * FROM proposals WHERE id = ?", (proposal_id,))

    def update_proposal(self, proposal_id: int, **values: Any) -> None:
        with self._lock:
            self.db.table("proposals").update(proposal_id, _encode(values))

    def move_proposal(self, proposal_id: int, from_statuses: tuple[str, ...], to_status: str, **values: Any) -> bool:
        """Change a proposal's status only if it is in one of `from_statuses`; True if it moved."""
        assignments = {"status": to_status, **_encode(values)}
        columns = ", ".join(f"{name} = ?" for name in assignments)
        marks = ", ".join("?" for _ in from_statuses)
        with self.transaction() as connection:
            cursor = connection.execute(
                f"UPDATE proposals SET {columns} WHERE id = ? AND status IN ({marks})",
                (*assignments.values(), proposal_id, *from_statuses),
            )
            return cursor.rowcount == 1

    def proposals(
        self,
        *,
        statuses: tuple[str, ...] = (),
        workergroup_id: int | None = None,
        endpoint_id: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        if statuses:
            where.append(f"status IN ({', '.join('?' for _ in statuses)})")
            params.extend(statuses)
        if workergroup_id is not None:
            where.append("workergroup_id = ?")
            params.append(workergroup_id)
        if endpoint_id is not None:
            where.append("endpoint_id = ?")
            params.append(endpoint_id)
        sql = f"SELECT * FROM proposals WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?"
        return self._all(sql, (*params, limit))

    # Approvals and audit --------------------------------------------------------------------

    def add_decision(self, proposal_id: int, user_id: str, decision: str, reason: str = "") -> bool:
        """Record an approval or rejection once per user; False if it was already recorded."""
        with self.transaction() as connection:
            cursor = connection.execute(
                "INSERT OR IGNORE INTO approvals (proposal_id, user_id, decision, reason, at) VALUES (?, ?, ?, ?, ?)",
                (proposal_id, user_id, decision, reason, self.clock()),
            )
            return cursor.rowcount == 1

    def decisions(self, proposal_id: int, decision: str = "approve") -> list[dict[str, Any]]:
        return self._all(
            "SELECT * FROM approvals WHERE proposal_id = ? AND decision = ? ORDER BY at",
            (proposal_id, decision),
        )

    def audit(self, proposal_id: int, action: str, user_id: str | None = None, detail: str = "") -> None:
        with self.batch() as batch:
            batch.audit(proposal_id, action, user_id, detail)

    def audit_trail(self, proposal_id: int) -> list[dict[str, Any]]:
        return self._all("SELECT * FROM audit WHERE proposal_id = ? ORDER BY id", (proposal_id,))

    # Rollouts -------------------------------------------------------------------------------

    def start_rollout(self, proposal_id: int, **values: Any) -> int | None:
        """Move an approved proposal to running and create its rollout in one transaction.

        Returns:
            The new rollout id, or None when the proposal is no longer approved or another
            rollout already runs on the same worker group.
        """
        values = _encode({"status": "running", "started_at": self.clock(), **values})
        columns = ", ".join(["proposal_id", *values])
        marks = ", ".join("?" for _ in range(len(values) + 1))
        with self.transaction() as connection:
            moved = connection.execute(
                "UPDATE proposals SET status = 'running' WHERE id = ? AND status = 'approved'",
                (proposal_id,),
            )
            if moved.rowcount != 1:
                return None
            try:
                cursor = connection.execute(
                    f"INSERT INTO rollouts ({columns}) VALUES ({marks})",
                    (proposal_id, *values.values()),
                )
            except sqlite3.IntegrityError:
                connection.execute("UPDATE proposals SET status = 'approved' WHERE id = ?", (proposal_id,))
                return None
            return int(cursor.lastrowid)  # type: ignore[arg-type]

    def rollout(self, rollout_id: int) -> dict[str, Any] | None:
        return self._one("SELECT * FROM rollouts WHERE id = ?", (rollout_id,))

    def rollout_for_proposal(self, proposal_id: int) -> dict[str, Any] | None:
        return self._one("SELECT * FROM rollouts WHERE proposal_id = ?", (proposal_id,))

    def running_rollout(self, workergroup_id: int) -> dict[str, Any] | None:
        return self._one("SELECT * FROM rollouts WHERE workergroup_id = ? AND status = 'running'", (workergroup_id,))

    def running_rollouts(self) -> list[dict[str, Any]]:
        return self._all("SELECT * FROM rollouts WHERE status = 'running' ORDER BY id")

    def last_rollout(self, workergroup_id: int, statuses: tuple[str, ...]) -> dict[str, Any] | None:
        marks = ", ".join("?" for _ in statuses)
        return self._one(
            f"SELECT * FROM rollouts WHERE workergroup_id = ? AND status IN ({marks}) ORDER BY id DESC LIMIT 1",
            (workergroup_id, *statuses),
        )

    def update_rollout(self, rollout_id: int, **values: Any) -> None:
        with self.batch() as batch:
            batch.update_rollout(rollout_id, **values)

    def finish_rollout(self, rollout_id: int, status: str, proposal_status: str, summary: str = "") -> bool:
        """Close a running rollout and its proposal together; False if it was not running."""
        with self.batch() as batch:
            return batch.finish_rollout(rollout_id, status, proposal_status, summary)

    def journal(self, rollout_id: int, step: str, detail: str = "") -> None:
        with self.batch() as batch:
            batch.journal(rollout_id, step, detail)

    def journal_entries(self, rollout_id: int) -> list[dict[str, Any]]:
        return self._all("SELECT * FROM journal WHERE rollout_id = ? ORDER BY id", (rollout_id,))

    # Worker progress ------------------------------------------------------------------------

    def workers(self, rollout_id: int) -> dict[int, dict[str, Any]]:
        rows = self._all("SELECT * FROM workers WHERE rollout_id = ?", (rollout_id,))
        return {row["worker_id"]: row for row in rows}

    def save_workers(self, rollout_id: int, rows: list[dict[str, Any]]) -> None:
        with self.batch() as batch:
            batch.save_workers(rollout_id, rows)

    # Alerts ---------------------------------------------------------------------------------

    def record_alert(self, rollout_id: int, subject: str, cause: str) -> bool:
        """Record an alert once per rollout, subject and cause; False if it was already raised."""
        with self.transaction() as connection:
            cursor = connection.execute(
                "INSERT OR IGNORE INTO alerts (rollout_id, subject, cause, at) VALUES (?, ?, ?, ?)",
                (rollout_id, subject, cause, self.clock()),
            )
            return cursor.rowcount == 1

    def alert(self, rollout_id: int, subject: str, cause: str) -> dict[str, Any] | None:
        return self._one(
            "SELECT * FROM alerts WHERE rollout_id = ? AND subject = ? AND cause = ?",
            (rollout_id, subject, cause),
        )

    def cause_acknowledged(self, rollout_id: int, cause: str) -> bool:
        row = self._one(
            "SELECT 1 AS found FROM alerts WHERE rollout_id = ? AND cause = ? AND acknowledged_by IS NOT NULL",
            (rollout_id, cause),
        )
        return row is not None

    def acknowledge_alert(self, rollout_id: int, subject: str, cause: str, user_id: str) -> bool:
        with self.transaction() as connection:
            cursor = connection.execute(
                "UPDATE alerts SET acknowledged_by = ? WHERE rollout_id = ? AND subject = ? "
                "AND cause = ? AND acknowledged_by IS NULL",
                (user_id, rollout_id, subject, cause),
            )
            return cursor.rowcount == 1

    # Slack messages and the outbox ------------------------------------------------------------

    def message(self, key: str) -> dict[str, Any] | None:
        return self._one("SELECT * FROM messages WHERE key = ?", (key,))

    def enqueue(
        self, op: str, key: str, channel_id: str, payload: dict[str, Any], thread_key: str | None = None
    ) -> int:
        """Queue a Slack post or edit; a newer edit of a message replaces any edit still queued."""
        with self.batch() as batch:
            return batch.enqueue(op, key, channel_id, payload, thread_key)

    def outbox(self, states: tuple[str, ...] = ("pending", "sending")) -> list[dict[str, Any]]:
        marks = ", ".join("?" for _ in states)
        rows = self._all(f"SELECT * FROM outbox WHERE state IN ({marks}) ORDER BY id", states)
        for row in rows:
            row["payload"] = json.loads(row["payload"])
        return rows

    def outbox_latest(self, key: str) -> dict[str, Any] | None:
        """Return the newest queued or delivered row for a message key, with its payload decoded."""
        row = self._one("SELECT * FROM outbox WHERE key = ? ORDER BY id DESC LIMIT 1", (key,))
        if row:
            row["payload"] = json.loads(row["payload"])
        return row

    def outbox_row(self, outbox_id: int) -> dict[str, Any] | None:
        return self._one("SELECT * FROM outbox WHERE id = ?", (outbox_id,))

    def mark_outbox(self, outbox_id: int, state: str, **values: Any) -> None:
        with self._lock:
            self.db.table("outbox").update(outbox_id, {"state": state, **values})

    def record_delivery(self, outbox_id: int, key: str, channel_id: str, ts: str | None) -> None:
        """Mark an outbox row sent and remember the message's ts, in one transaction."""
        with self.transaction() as connection:
            connection.execute("UPDATE outbox SET state = 'sent' WHERE id = ?", (outbox_id,))
            if ts:
                connection.execute(
                    "INSERT OR REPLACE INTO messages (key, channel_id, ts) VALUES (?, ?, ?)",
                    (key, channel_id, ts),
                )
