"""Simulation model behind the local Vast.ai API sandbox, without any HTTP.

`VastWorld` contains endpoints, worker groups, content-hashed templates and
workers, and steps them on a simulated clock. It runs the serverless rolling
update that Vast starts when a worker group gets a new template or new search
filters: inactive workers are started and updated first, then active workers
drain their in-flight requests, reboot into the new template and rejoin. At
most `parallel_updates` workers of a group are out of service at a time.

The API operations (`list_endpoints`, `update_workergroup`, ...) take and
return the JSON bodies of the Vast console and router dialect and raise
`ApiError` for error responses, so `sandbox.vast_server` only maps HTTP to
calls. Every public method of `VastWorld` takes the world's single lock.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import json
import logging
import math
import random
import re
import shlex
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

logger = logging.getLogger(__name__)

FIRST_ENDPOINT_ID = 101
FIRST_WORKERGROUP_ID = 201
FIRST_TEMPLATE_ID = 301
FIRST_WORKER_ID = 4401
USER_ID = 1

# Worker status tokens as the Vast router reports them (upper case).
CREATING = "CREATING"
LOADING = "LOADING"
MODEL_LOADING = "MODEL_LOADING"
IDLE = "IDLE"
STOPPED = "STOPPED"
STARTING = "STARTING"
UPDATE_READY = "UPDATE_READY"
UPDATE_REBOOTING = "UPDATE_REBOOTING"
UPDATE_STARTING = "UPDATE_STARTING"
ERROR = "ERROR"

# Phase lengths in simulated seconds. "creating" and "loading" apply to workers
# recruited for a worker group created through the API.
DEFAULT_DURATIONS: dict[str, float] = {
    "creating": 5,
    "loading": 20,
    "starting": 10,
    "update_ready": 3,
    "update_rebooting": 15,
    "update_starting": 10,
    "model_load": 60,
}

# Request traffic. A group's arrival rate defaults to
# `arrivals_per_active_worker` times the number of workers active when the group
# was created. `old_template_penalty` is added to the in-flight count of a
# worker that is not on the group's template yet, so the router prefers updated
# workers without leaving old ones idle.
DEFAULT_TRAFFIC: dict[str, float] = {
    "arrivals_per_active_worker": 0.06,
    "min_seconds": 5,
    "max_seconds": 40,
    "max_per_worker": 4,
    "old_template_penalty": 1,
}

DEFAULT_CONFIG: dict[str, Any] = {
    "worker_list_shape": "list",
    "status_case": "upper",
    "loading_error_msg_calls": 0,
    "instance_template_field": True,
    "rate_limit_seconds": None,
    "retry_after_header": None,
    "faults": None,
    "parallel_updates": None,
    "recruit_workers": 2,
    "loading_error_status": 200,
    "router_error_style": "json",
    "rate_limit_body": "text",
}

# 429 body shapes: plain text (what the console sends), and the two JSON forms
# that the examples in Vast's OpenAPI description (vast-ai/docs) show.
RATE_LIMIT_BODIES = ("text", "detail", "error")

FAULT_KINDS = ("429", "502", "503", "504", "timeout", "disconnect")

# Template fields that make up its content, and so its hash_id.
TEMPLATE_CONTENT_FIELDS: dict[str, Any] = {
    "name": None,
    "image": None,
    "tag": None,
    "env": "",
    "onstart": None,
    "runtype": "args",
    "extra_filters": None,
    "ssh_direct": False,
    "jup_direct": False,
    "use_ssh": False,
    "use_jupyter_lab": False,
    "jupyter_dir": None,
    "docker_login_repo": None,
    "recommended_disk_space": 8,
    "readme": None,
    "readme_visible": False,
    "desc": None,
    "private": True,
    "href": None,
    "repo": None,
    "args_str": None,
    "volume_info": None,
}

# Keys a v0 template PUT accepts besides the content fields. Registry
# credentials are accepted but not stored, because the sandbox never pulls images.
TEMPLATE_V0_EXTRA_KEYS = {"hash_id", "id", "api_key", "client_id", "docker_login_user",
                          "docker_login_pass"}

# The default extra_filters of `vastai create template` (vastai 1.9.1).
DEFAULT_EXTRA_FILTERS = {"verified": {"eq": True}, "external": {"eq": False},
                         "rentable": {"eq": True}}

FILTER_OPERATORS = {"eq", "neq", "lt", "lte", "gt", "gte", "in", "notin", "nin"}

# (gpu_name, gpu_ram in MB, dlperf range, measured_perf range in tokens/s, $/hour)
GPU_CATALOG = (
    ("RTX 4090", 24564, (70.0, 95.0), (140.0, 190.0), 0.42),
    ("RTX 3090", 24576, (45.0, 60.0), (95.0, 125.0), 0.24),
    ("L40S", 46068, (80.0, 105.0), (150.0, 200.0), 0.79),
    ("RTX A6000", 49140, (55.0, 70.0), (110.0, 140.0), 0.47),
    ("A100 PCIE", 40960, (95.0, 120.0), (180.0, 230.0), 1.10),
)

MAX_LOG_LINES = 5000
DEFAULT_LOG_TAIL = 10000
DEFAULT_PAGE_LIMIT = 25
MAX_PAGE_LIMIT = 100


class ApiError(Exception):
    """An error response of the Vast API: HTTP status plus a JSON body."""

    def __init__(self, status: int, error: str, msg: str, body: dict | None = None):
        super().__init__(f"{status} {error}: {msg}")
        self.status = status
        self.error = error
        self.msg = msg
        self.body = body if body is not None else {"success": False, "error": error, "msg": msg}


def invalid_args(msg: str) -> ApiError:
    return ApiError(400, "invalid_args", msg)


def router_error(status: int, msg: str) -> ApiError:
    """Build a router error, which Vast sends as `error_msg` (plus the console keys)."""
    body = {"success": False, "error": "invalid_request", "msg": msg, "error_msg": msg}
    return ApiError(status, "invalid_request", msg, body)


# ---------------------------------------------------------------------------
# Parsing helpers
# ---------------------------------------------------------------------------

_SEARCH_TERM = re.compile(
    r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*"
    r"(>=|<=|!=|==|=|>|<|\s(?:not\s?in|notin|nin|in|neq|eq|gte|gt|lte|lt)\s)\s*"
    r"(\"[^\"]*\"|\[[^\]]*\]|[^\s\"\[<>=!][^\s\"\[]*)\s*"
)
_SEARCH_OPERATORS = {
    ">=": "gte", "<=": "lte", "!=": "neq", "==": "eq", "=": "eq", ">": "gt", "<": "lt",
    "in": "in", "notin": "notin", "not in": "notin", "nin": "notin",
    "eq": "eq", "neq": "neq", "gte": "gte", "gt": "gt", "lte": "lte", "lt": "lt",
}


def _parse_scalar(text: str) -> Any:
    """Convert one search value. Underscores in bare words stand for spaces, as in RTX_4090."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    lowered = text.lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text.replace("_", " ")


def parse_search_string(text: str) -> dict[str, dict[str, Any]]:
    """Parse an offer filter such as `gpu_ram>=24 num_gpus=1 verified=True`.

    Returns the query dict the console stores, e.g. `{"gpu_ram": {"gte": 24}}`.
    Raises ValueError on text that is not a list of `field op value` terms.
    """
    query: dict[str, dict[str, Any]] = {}
    position = 0
    text = text.strip()
    while position < len(text):
        match = _SEARCH_TERM.match(text, position)
        if match is None or match.end() == position:
            raise ValueError(f"cannot parse search_params near {text[position:]!r}")
        name, operator_text, value_text = match.groups()
        operator = _SEARCH_OPERATORS[" ".join(operator_text.split())]
        if operator in ("in", "notin"):
            items = value_text.strip("[]").split(",")
            value: Any = [_parse_scalar(item) for item in items if item.strip()]
        else:
            value = _parse_scalar(value_text)
        query.setdefault(name, {})[operator] = value
        position = match.end()
    return query


def _normalize_query_dict(raw: dict) -> dict[str, dict[str, Any]]:
    query: dict[str, dict[str, Any]] = {}
    for name, condition in raw.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"invalid filter field {name!r}")
        if isinstance(condition, dict):
            for operator in condition:
                if operator not in FILTER_OPERATORS:
                    raise ValueError(f"unknown operator {operator!r} for field {name!r}")
            query[name] = dict(condition)
        else:
            query[name] = {"eq": condition}
    return query


def parse_search_params(value: Any) -> dict[str, dict[str, Any]]:
    """Parse `search_params` given as a string, a query dict or a list of either."""
    if isinstance(value, str):
        return parse_search_string(value)
    if isinstance(value, dict):
        return _normalize_query_dict(value)
    if isinstance(value, list):
        query: dict[str, dict[str, Any]] = {}
        for item in value:
            part = parse_search_params(item)
            for name, condition in part.items():
                query.setdefault(name, {}).update(condition)
        return query
    raise ValueError(f"search_params must be a string, dict or list, not {type(value).__name__}")


def parse_env_pairs(env: str | None) -> list[list[str]]:
    """Return the `-e KEY=VALUE` pairs of a docker flag string as [[key, value], ...].

    Returns an empty list when the string has unbalanced quotes, as the
    template is still stored then.
    """
    if not env:
        return []
    try:
        tokens = shlex.split(env)
    except ValueError:
        return []
    pairs: list[list[str]] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        assignment = None
        if token in ("-e", "--env") and index + 1 < len(tokens):
            assignment = tokens[index + 1]
            index += 1
        elif token.startswith("-e") and "=" in token and not token.startswith("--"):
            assignment = token[2:]
        elif token.startswith("--env="):
            assignment = token[len("--env="):]
        if assignment and "=" in assignment:
            key, _, value = assignment.partition("=")
            pairs.append([key, value])
        index += 1
    return pairs


def build_env(model: str, vllm_args: str | None) -> str:
    parts = [f"-e MODEL_NAME={shlex.quote(model)}"]
    if vllm_args:
        parts.append(f"-e VLLM_ARGS={shlex.quote(vllm_args)}")
    parts.append("-p 8000:8000")
    return " ".join(parts)


def content_hash(content: dict) -> str:
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.md5(canonical.encode("utf-8")).hexdigest()


def _coerce_like(actual: Any, expected: Any) -> Any:
    """Convert a string filter value to the type of the stored value.

    The Vast CLI sends every query value as a string (`{"id": {"eq": "301"}}`)
    and the console compares it with the column's type.
    """
    if not isinstance(expected, str) or isinstance(actual, str) or actual is None:
        return expected
    if isinstance(actual, bool):
        lowered = expected.strip().lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        return expected
    if isinstance(actual, int | float):
        try:
            number = float(expected)
        except ValueError:
            return expected
        return int(number) if number.is_integer() and isinstance(actual, int) else number
    return expected


def _compare(actual: Any, operator: str, expected: Any) -> bool:
    if isinstance(expected, list):
        expected = [_coerce_like(actual, item) for item in expected]
    else:
        expected = _coerce_like(actual, expected)
    try:
        if operator == "eq":
            return actual == expected
        if operator == "neq":
            return actual != expected
        if operator in ("in", "notin", "nin"):
            values = expected if isinstance(expected, list) else [expected]
            return (actual in values) == (operator == "in")
        if actual is None or expected is None:
            return False
        if operator == "lt":
            return actual < expected
        if operator == "lte":
            return actual <= expected
        if operator == "gt":
            return actual > expected
        if operator == "gte":
            return actual >= expected
    except TypeError:
        return False
    raise ValueError(f"unknown operator {operator!r}")


def filter_records(records: list[dict], filters: Any) -> list[dict]:
    """Apply console `select_filters` such as `{"id": {"in": [1, 2]}}`.

    Raises ValueError for a malformed filter or a field the records lack.
    """
    if filters in (None, {}):
        return list(records)
    if not isinstance(filters, dict):
        raise ValueError("select_filters must be a JSON object")
    query = _normalize_query_dict(filters)
    known_fields = set(records[0]) if records else set()
    for name in query:
        if records and name not in known_fields:
            raise ValueError(f"unknown filter field {name!r}")
    return [
        record for record in records
        if all(_compare(record.get(name), operator, expected)
               for name, condition in query.items()
               for operator, expected in condition.items())
    ]


def order_records(records: list[dict], order_by: Any) -> list[dict]:
    """Sort by `order_by`: a list of `{"col": c, "dir": "asc"|"desc"}` or `[c, dir]` items."""
    if not order_by:
        return sorted(records, key=lambda record: record.get("id", 0))
    if isinstance(order_by, dict | str):
        order_by = [order_by]
    if not isinstance(order_by, list):
        raise ValueError("order_by must be a JSON list")
    ordered = list(records)
    for item in reversed(order_by):
        if isinstance(item, dict):
            column, direction = item.get("col"), item.get("dir", "asc")
        elif isinstance(item, list | tuple) and item:
            column = item[0]
            direction = item[1] if len(item) > 1 else "asc"
        elif isinstance(item, str):
            column, direction = item, "asc"
        else:
            raise ValueError(f"invalid order_by item {item!r}")
        if direction not in ("asc", "desc"):
            raise ValueError(f"invalid order_by direction {direction!r}")
        ordered.sort(key=lambda record, c=column: (record.get(c) is None, record.get(c)),
                     reverse=direction == "desc")
    return ordered


def encode_page_token(offset: int) -> str:
    raw = json.dumps({"offset": offset}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str) -> int:
    try:
        padded = token + "=" * (-len(token) % 4)
        offset = json.loads(base64.urlsafe_b64decode(padded.encode()))["offset"]
    except (binascii.Error, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"invalid after_token {token!r}") from error
    if not isinstance(offset, int) or offset < 0:
        raise ValueError(f"invalid after_token {token!r}")
    return offset


def paginate(records: list[dict], limit: Any, after_token: Any) -> tuple[list[dict], str | None]:
    if limit is None:
        limit = DEFAULT_PAGE_LIMIT
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive integer, not {limit!r}")
    limit = min(limit, MAX_PAGE_LIMIT)
    offset = decode_page_token(str(after_token)) if after_token else 0
    page = records[offset:offset + limit]
    next_offset = offset + len(page)
    next_token = encode_page_token(next_offset) if next_offset < len(records) else None
    return page, next_token


def as_int(value: Any) -> int | None:
    """Return `value` as an int when it is an int or a string of digits, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _format_sim_time(sim_time: float) -> str:
    return datetime.fromtimestamp(sim_time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------
# Model objects
# ---------------------------------------------------------------------------

@dataclass
class Template:
    """One template version. Its content never changes after hash_id is computed,
    except by an in-place edit of a template no group or worker uses."""

    id: int
    hash_id: str
    content: dict[str, Any]
    created_at: float
    count_created: int = 0

    @property
    def model_name(self) -> str | None:
        for key, value in parse_env_pairs(self.content.get("env")):
            if key == "MODEL_NAME":
                return value
        return None

    def to_dict(self) -> dict[str, Any]:
        result = {"id": self.id, "hash_id": self.hash_id}
        result.update(copy.deepcopy(self.content))
        result.update({
            "creator_id": USER_ID,
            "created_at": self.created_at,
            "recent_create_date": self.created_at,
            "count_created": self.count_created,
            "default_tag": self.content.get("tag"),
            "recommended": False,
        })
        return result


@dataclass
class Endpoint:
    """An endpoint ("endptjob"): the routing target that contains worker groups."""

    id: int
    endpoint_name: str
    api_key: str
    created_at: float
    min_load: float = 0.0
    min_cold_load: float = 0.0
    target_util: float = 0.9
    cold_mult: float = 2.5
    cold_workers: int = 5
    max_workers: int = 20
    max_queue_time: float = 30.0
    target_queue_time: float = 10.0
    inactivity_timeout: float | None = None
    endpoint_state: str = "active"
    workergroup_ids: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "endpoint_name": self.endpoint_name,
            "min_load": self.min_load,
            "min_cold_load": self.min_cold_load,
            "target_util": self.target_util,
            "cold_mult": self.cold_mult,
            "cold_workers": self.cold_workers,
            "max_workers": self.max_workers,
            "max_queue_time": self.max_queue_time,
            "target_queue_time": self.target_queue_time,
            "inactivity_timeout": self.inactivity_timeout,
            "endpoint_state": self.endpoint_state,
            "api_key": self.api_key,
            "user_id": USER_ID,
            "created_at": self.created_at,
            "auto_delete_in_seconds": None if self.workergroup_ids else 86400.0,
            "auto_delete_due_24h": not self.workergroup_ids,
        }


@dataclass
class RollingUpdate:
    """A rolling update in progress on one worker group."""

    target_template_id: int
    started_at: float
    force: bool
    queue: list[int] = field(default_factory=list)
    in_progress: set[int] = field(default_factory=set)
    cancelled: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "target_template_id": self.target_template_id,
            "started_at": self.started_at,
            "force": self.force,
            "queue": list(self.queue),
            "in_progress": sorted(self.in_progress),
            "cancelled": self.cancelled,
        }


@dataclass
class WorkerGroup:
    """A worker group ("autojob"): a template plus offer filters on one endpoint."""

    id: int
    endpoint_id: int
    template_id: int
    template_hash: str
    search_query: dict[str, Any]
    api_key: str
    created_at: float
    request_rate: float
    launch_args: str | None = None
    gpu_ram: float = 24.0
    min_load: float | None = None
    target_util: float | None = None
    cold_mult: float | None = None
    cold_workers: int | None = None
    parallel_updates: int | None = None
    worker_ids: list[int] = field(default_factory=list)
    update: RollingUpdate | None = None


@dataclass
class Worker:
    """A serverless worker. Its id is also its instance id."""

    id: int
    workergroup_id: int
    endpoint_id: int
    status: str
    template_id: int
    template_hash: str
    gpu_name: str
    gpu_ram: int
    dlperf: float
    benchmark_perf: float
    reliability: float
    disk_usage: float
    dph_total: float
    machine_id: int
    started_at: float
    loaded_at: float
    status_msg: str = ""
    request_ends: list[float] = field(default_factory=list)
    phase_ends_at: float | None = None
    picked: bool = False
    draining: bool = False
    target_template_id: int | None = None
    model_before_reboot: str | None = None
    last_cycled_at: float = float("-inf")
    arrivals_this_step: int = 0
    cur_load_rolling_avg: float = 0.0

    @property
    def reqs_working(self) -> int:
        return len(self.request_ends)

    @property
    def measured_perf(self) -> float:
        # Vast reports the benchmark result only once the worker is ready, and the
        # DLPerf score before that (noted in the vastai 1.9.1 benchmark command).
        if self.status in (IDLE, STOPPED):
            return round(self.benchmark_perf, 2)
        return round(self.dlperf, 2)

    def load_per_request(self, max_per_worker: float) -> float:
        return self.benchmark_perf / max(max_per_worker, 1)


HOLD_POINTS = ("before", "after")
# How often a held request checks whether it was released or its client went away.
HOLD_CHECK_SECONDS = 0.02


class Hold:
    """A gate that stops matching API requests before or after the world applies them.

    With `when="before"` a held request has not changed anything yet. With `when="after"`
    the change is made and only the response waits. A request stays held until `release()`,
    until `seconds` pass (None: no limit), until its client disconnects or until the sandbox
    stops. A "before" request whose client disconnected or whose sandbox stopped is dropped
    without being applied, like a request that never reached the server.
    """

    def __init__(self, route_prefix: str, method: str | None, when: str, count: int,
                 skip: int, seconds: float | None):
        self.route_prefix = route_prefix
        self.method = method.upper() if method else None
        self.when = when
        self.remaining = count
        self.skip = skip
        self.seconds = seconds
        self.held_count = 0
        self.dropped_count = 0
        self.released = threading.Event()
        self._first_held = threading.Event()
        self._lock = threading.Lock()

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and path.startswith(self.route_prefix)

    def release(self) -> None:
        """Let every request held now or later through."""
        self.released.set()

    def wait_held(self, timeout: float) -> bool:
        """Wait until a request reaches the hold, which for "after" is once its change is made.

        Returns:
            False when no request arrived within `timeout` seconds.
        """
        return self._first_held.wait(timeout)

    def wait(self, client_gone: Callable[[], bool], stopping: threading.Event) -> bool:
        """Block the calling request thread at the hold.

        Returns:
            True when the request may go on: released, or `seconds` passed. False when its
            client disconnected or the sandbox stopped first.
        """
        with self._lock:
            self.held_count += 1
        self._first_held.set()
        deadline = None if self.seconds is None else time.monotonic() + self.seconds
        while not self.released.wait(HOLD_CHECK_SECONDS):
            if stopping.is_set() or client_gone():
                if self.when == "before":
                    with self._lock:
                        self.dropped_count += 1
                return False
            if deadline is not None and time.monotonic() >= deadline:
                return True
        return True

    def to_dict(self) -> dict[str, Any]:
        return {"route_prefix": self.route_prefix, "method": self.method, "when": self.when,
                "remaining": self.remaining, "skip": self.skip, "seconds": self.seconds,
                "held_count": self.held_count, "dropped_count": self.dropped_count,
                "released": self.released.is_set()}


# ---------------------------------------------------------------------------
# The world
# ---------------------------------------------------------------------------

class VastWorld:
    """Simulated Vast.ai account: endpoints, worker groups, templates and workers.

    Simulated time is `start_epoch + real_elapsed * speed + manual offset`.
    `speed=0` leaves the clock to `advance()`. The simulation moves in
    one-second steps driven by a seeded `random.Random`, so a run with manual
    time is deterministic.
    """

    def __init__(self, api_key: str = "sandbox-key", speed: float = 50.0, seed: int = 1,
                 start_epoch: float | None = None):
        self.lock = threading.RLock()
        self.api_key = api_key
        self.speed = float(speed)
        self.seed = seed
        self.rng = random.Random(seed)
        self.fault_rng = random.Random(seed + 1)
        self.start_epoch = float(start_epoch if start_epoch is not None else int(time.time()))
        self._real_start = time.monotonic()
        self._offset = 0.0
        self._sim_time = self.start_epoch

        self.durations: dict[str, float] = dict(DEFAULT_DURATIONS)
        self.traffic: dict[str, float] = dict(DEFAULT_TRAFFIC)
        self.config: dict[str, Any] = copy.deepcopy(DEFAULT_CONFIG)
        self.fail_models: dict[str, str] = {}
        self.hang_models: set[str] = set()

        self.endpoints: dict[int, Endpoint] = {}
        self.workergroups: dict[int, WorkerGroup] = {}
        self.templates: dict[int, Template] = {}
        self.workers: dict[int, Worker] = {}
        self.events: list[dict[str, Any]] = []
        self.counters: dict[str, Any] = {
            "calls": {},
            "template_saves": 0,
            "workergroup_updates": 0,
            "update_workers_calls": 0,
            "cancels": 0,
            "requests_served": 0,
            "requests_rejected": 0,
        }
        self._scripted_faults: list[list[Any]] = []
        self.holds: list[Hold] = []
        self._last_call_at: dict[tuple[str, str], float] = {}
        self._logs: deque[tuple[float, int, int | None, int | None, str]] = deque(
            maxlen=MAX_LOG_LINES)
        self._next_ids = {
            "endpoint": FIRST_ENDPOINT_ID,
            "workergroup": FIRST_WORKERGROUP_ID,
            "template": FIRST_TEMPLATE_ID,
            "worker": FIRST_WORKER_ID,
        }

    # -- clock ---------------------------------------------------------------

    @property
    def clock(self) -> float:
        """Current simulated time as a Unix epoch in seconds."""
        with self.lock:
            return self._target_time()

    def _target_time(self) -> float:
        elapsed = time.monotonic() - self._real_start
        return self.start_epoch + elapsed * self.speed + self._offset

    def advance(self, seconds: float) -> float:
        """Move the clock forward by `seconds`, step the simulation and return the new time."""
        if seconds < 0:
            raise ValueError(f"seconds must not be negative, got {seconds}")
        with self.lock:
            self._offset += seconds
            self._step_until(self._target_time())
            return self._sim_time

    def step_to_now(self) -> None:
        """Run every one-second step due up to the current simulated time."""
        with self.lock:
            self._step_until(self._target_time())

    def _step_until(self, target: float) -> None:
        while self._sim_time + 1 <= target + 1e-9:
            self._sim_time += 1
            self._step()

    def _new_id(self, kind: str) -> int:
        value = self._next_ids[kind]
        self._next_ids[kind] = value + 1
        return value

    # -- logging and events --------------------------------------------------

    def _log(self, level: int, text: str, endpoint_id: int | None = None,
             workergroup_id: int | None = None) -> None:
        self._logs.append((self._sim_time, level, endpoint_id, workergroup_id, text))
        logger.debug("sim %s: %s", _format_sim_time(self._sim_time), text)

    def _set_status(self, worker: Worker, new_status: str, phase: str | None = None) -> None:
        """Change a worker's status, log the event and start the phase timer `phase`."""
        old_status = worker.status
        worker.status = new_status
        if phase is None:
            worker.phase_ends_at = None
        else:
            worker.phase_ends_at = self._sim_time + float(self.durations[phase])
        if old_status != new_status:
            self._record_event(worker, old_status, new_status)

    def _record_event(self, worker: Worker, old_status: str | None, new_status: str) -> None:
        self.events.append({
            "worker_id": worker.id,
            "workergroup_id": worker.workergroup_id,
            "old": old_status,
            "new": new_status,
            "wall_time": time.time(),
            "sim_time": self._sim_time,
        })
        level = 0 if new_status == ERROR else 1
        self._log(level, f"worker {worker.id}: {old_status or 'new'} -> {new_status}",
                  worker.endpoint_id, worker.workergroup_id)

    # -- building the world --------------------------------------------------

    def create_template(self, **content: Any) -> Template:
        """Create a template from content fields, or return the one with the same content."""
        with self.lock:
            template, _ = self._create_template(content)
            return template

    def _create_template(self, content: dict[str, Any]) -> tuple[Template, bool]:
        full = {key: copy.deepcopy(content.get(key, default))
                for key, default in TEMPLATE_CONTENT_FIELDS.items()}
        hash_id = content_hash(full)
        existing = self._templates_with_hash(hash_id)
        if existing:
            return existing[0], False
        template = Template(id=self._new_id("template"), hash_id=hash_id, content=full,
                            created_at=self._sim_time)
        self.templates[template.id] = template
        return template, True

    def _templates_with_hash(self, hash_id: str) -> list[Template]:
        return sorted((t for t in self.templates.values() if t.hash_id == hash_id),
                      key=lambda t: t.id)

    def add_endpoint(self, name: str, workers: int = 8, inactive: int = 0,
                     model: str = "Qwen/Qwen3-8B", vllm_args: str | None = "--max-model-len 8192",
                     image: str = "vllm/vllm-openai", tag: str = "v0.11.0",
                     search: Any = "gpu_ram>=24 num_gpus=1 verified=True",
                     template_id: int | None = None, request_rate: float | None = None,
                     parallel_updates: int | None = None, **endpoint_params: Any) -> Endpoint:
        """Create an endpoint with one worker group of `workers` workers.

        The last `inactive` workers start STOPPED and the rest IDLE. Extra keyword
        arguments set Endpoint fields such as `max_workers`.
        """
        with self.lock:
            endpoint = self._new_endpoint(name, endpoint_params)
            try:
                self.add_workergroup(endpoint.id, workers=workers, inactive=inactive,
                                     model=model, vllm_args=vllm_args, image=image, tag=tag,
                                     search=search, template_id=template_id,
                                     request_rate=request_rate,
                                     parallel_updates=parallel_updates)
            except ValueError:
                del self.endpoints[endpoint.id]
                raise
            return endpoint

    def _new_endpoint(self, name: str, params: dict[str, Any]) -> Endpoint:
        if any(e.endpoint_name == name for e in self.endpoints.values()):
            raise ValueError(f"endpoint name {name!r} already exists")
        endpoint = Endpoint(id=self._new_id("endpoint"), endpoint_name=name,
                            api_key=f"{self.rng.getrandbits(128):032x}",
                            created_at=self._sim_time)
        for key, value in params.items():
            if not hasattr(endpoint, key) or key in ("id", "workergroup_ids", "api_key"):
                raise ValueError(f"unknown endpoint field {key!r}")
            setattr(endpoint, key, value)
        self.endpoints[endpoint.id] = endpoint
        self._log(0, f"endpoint {endpoint.id} {name!r} created", endpoint.id)
        return endpoint

    def add_workergroup(self, endpoint_id: int, workers: int = 4, inactive: int = 0,
                        model: str = "Qwen/Qwen3-8B",
                        vllm_args: str | None = "--max-model-len 8192",
                        image: str = "vllm/vllm-openai", tag: str = "v0.11.0",
                        search: Any = "gpu_ram>=24 num_gpus=1 verified=True",
                        template_id: int | None = None, request_rate: float | None = None,
                        parallel_updates: int | None = None) -> WorkerGroup:
        """Add a worker group with ready workers to an existing endpoint.

        The template comes from `template_id` or is built from model, vllm_args,
        image and tag. The last `inactive` workers start STOPPED.
        """
        with self.lock:
            endpoint = self.endpoints.get(endpoint_id)
            if endpoint is None:
                raise ValueError(f"endpoint {endpoint_id} not found")
            if not 0 <= inactive <= workers:
                raise ValueError(f"inactive must be between 0 and workers ({workers})")
            if template_id is not None:
                template = self.templates.get(template_id)
                if template is None:
                    raise ValueError(f"template {template_id} not found")
            else:
                template = self.create_template(
                    name=f"{endpoint.endpoint_name} vLLM", image=image, tag=tag,
                    env=build_env(model, vllm_args), onstart="entrypoint.sh",
                    extra_filters=copy.deepcopy(DEFAULT_EXTRA_FILTERS))
            search_query = parse_search_params(search)
            active = workers - inactive
            if request_rate is None:
                request_rate = self.traffic["arrivals_per_active_worker"] * max(active, 1)
            group = WorkerGroup(id=self._new_id("workergroup"), endpoint_id=endpoint.id,
                                template_id=template.id, template_hash=template.hash_id,
                                search_query=search_query,
                                api_key=endpoint.api_key, created_at=self._sim_time,
                                request_rate=request_rate, parallel_updates=parallel_updates)
            self.workergroups[group.id] = group
            endpoint.workergroup_ids.append(group.id)
            for index in range(workers):
                status = STOPPED if index >= active else IDLE
                self._add_ready_worker(group, template, status)
            self._log(0, f"workergroup {group.id} created on endpoint {endpoint.id} with "
                         f"{workers} workers ({inactive} inactive), template {template.id}",
                      endpoint.id, group.id)
            return group

    def _new_worker(self, group: WorkerGroup, template: Template, status: str) -> Worker:
        gpu_name, gpu_ram, dlperf_range, perf_range, price = self.rng.choice(GPU_CATALOG)
        started_at = self._sim_time - self.rng.uniform(3600, 86400)
        worker = Worker(
            id=self._new_id("worker"), workergroup_id=group.id, endpoint_id=group.endpoint_id,
            status=status, template_id=template.id, template_hash=template.hash_id,
            gpu_name=gpu_name, gpu_ram=gpu_ram, dlperf=self.rng.uniform(*dlperf_range),
            benchmark_perf=self.rng.uniform(*perf_range),
            reliability=self.rng.uniform(0.95, 0.999),
            disk_usage=self.rng.uniform(25.0, 60.0),
            dph_total=round(price * self.rng.uniform(0.9, 1.2), 4),
            machine_id=self.rng.randint(10000, 99999),
            started_at=started_at, loaded_at=started_at + self.rng.uniform(60, 300),
        )
        self.workers[worker.id] = worker
        group.worker_ids.append(worker.id)
        return worker

    def _add_ready_worker(self, group: WorkerGroup, template: Template, status: str) -> None:
        worker = self._new_worker(group, template, status)
        worker.status_msg = self._success_message(template)
        if status == IDLE:
            # Requests already in flight, so a rolling update has something to drain.
            for _ in range(self.rng.randint(1, 3)):
                worker.request_ends.append(
                    self._sim_time + self.rng.uniform(1, self.traffic["max_seconds"]))
            worker.cur_load_rolling_avg = (
                worker.reqs_working * worker.load_per_request(self.traffic["max_per_worker"]))

    def _recruit_worker(self, group: WorkerGroup) -> None:
        template = self.templates[group.template_id]
        worker = self._new_worker(group, template, CREATING)
        worker.started_at = self._sim_time
        worker.loaded_at = 0.0
        worker.phase_ends_at = self._sim_time + float(self.durations["creating"])
        self._record_event(worker, None, CREATING)

    @staticmethod
    def _success_message(template: Template) -> str:
        return f"success, running {template.content.get('image')}:{template.content.get('tag')}"

    # -- simulation step -----------------------------------------------------

    def _step(self) -> None:
        for group in sorted(self.workergroups.values(), key=lambda g: g.id):
            self._pick_workers(group)
        for worker in sorted(self.workers.values(), key=lambda w: w.id):
            worker.arrivals_this_step = 0
            self._finish_requests(worker)
            self._advance_phase(worker)
        for group in sorted(self.workergroups.values(), key=lambda g: g.id):
            self._route_arrivals(group)
            self._finish_update_if_done(group)
        for worker in self.workers.values():
            load = worker.reqs_working * worker.load_per_request(self.traffic["max_per_worker"])
            worker.cur_load_rolling_avg = 0.9 * worker.cur_load_rolling_avg + 0.1 * load

    def _finish_requests(self, worker: Worker) -> None:
        remaining = [end for end in worker.request_ends if end > self._sim_time]
        self.counters["requests_served"] += worker.reqs_working - len(remaining)
        worker.request_ends = remaining

    def _advance_phase(self, worker: Worker) -> None:
        if worker.status == IDLE and worker.draining:
            if worker.request_ends:
                return
            worker.draining = False
            self._log(2, f"worker {worker.id}: drained, starting update",
                      worker.endpoint_id, worker.workergroup_id)
            self._set_status(worker, UPDATE_READY, "update_ready")
            return
        if worker.phase_ends_at is None or self._sim_time < worker.phase_ends_at:
            return
        status = worker.status
        if status == CREATING:
            self._set_status(worker, LOADING, "loading")
        elif status == LOADING:
            worker.model_before_reboot = None
            self._set_status(worker, MODEL_LOADING, "model_load")
        elif status == STARTING:
            self._set_status(worker, UPDATE_READY, "update_ready")
        elif status == UPDATE_READY:
            self._reboot(worker)
        elif status == UPDATE_REBOOTING:
            worker.started_at = self._sim_time
            self._set_status(worker, UPDATE_STARTING, "update_starting")
        elif status == UPDATE_STARTING:
            self._after_boot(worker)
        elif status == MODEL_LOADING:
            self._after_model_load(worker)

    def _reboot(self, worker: Worker) -> None:
        """Reboot a worker into its target template, which its instance reports from now on."""
        current = self.templates.get(worker.template_id)
        worker.model_before_reboot = current.model_name if current else None
        target = self.templates.get(worker.target_template_id or worker.template_id)
        if target is not None:
            worker.template_id = target.id
            worker.template_hash = target.hash_id
        worker.status_msg = "rebooting into the updated template"
        self._set_status(worker, UPDATE_REBOOTING, "update_rebooting")

    def _after_boot(self, worker: Worker) -> None:
        template = self.templates.get(worker.template_id)
        model = template.model_name if template else None
        if model in self.hang_models or model != worker.model_before_reboot:
            worker.status_msg = f"loading model {model}"
            self._set_status(worker, MODEL_LOADING, "model_load")
        elif model in self.fail_models:
            self._fail(worker, self.fail_models[model])
        else:
            self._become_ready(worker)

    def _after_model_load(self, worker: Worker) -> None:
        template = self.templates.get(worker.template_id)
        model = template.model_name if template else None
        if model in self.hang_models:
            # Check again every second, so removing the model from hang_models
            # lets the worker finish.
            worker.phase_ends_at = self._sim_time + 1
        elif model in self.fail_models:
            self._fail(worker, self.fail_models[model])
        else:
            self._become_ready(worker)

    def _release_pick(self, worker: Worker) -> None:
        group = self.workergroups.get(worker.workergroup_id)
        if group is not None and group.update is not None:
            group.update.in_progress.discard(worker.id)
        worker.picked = False
        worker.draining = False
        worker.target_template_id = None

    def _become_ready(self, worker: Worker) -> None:
        template = self.templates.get(worker.template_id)
        worker.loaded_at = self._sim_time
        worker.status_msg = self._success_message(template) if template else ""
        self._release_pick(worker)
        self._set_status(worker, IDLE)

    def _fail(self, worker: Worker, message: str) -> None:
        worker.status_msg = message
        worker.request_ends = []
        self._release_pick(worker)
        self._set_status(worker, ERROR)

    # -- rolling update ------------------------------------------------------

    def _parallel_limit(self, group: WorkerGroup) -> int:
        if group.parallel_updates is not None:
            return max(1, int(group.parallel_updates))
        if self.config.get("parallel_updates") is not None:
            return max(1, int(self.config["parallel_updates"]))
        return max(1, len(group.worker_ids) // 4)

    @staticmethod
    def _needs_update(worker: Worker, update: RollingUpdate) -> bool:
        if worker.template_id != update.target_template_id:
            return True
        return update.force and worker.last_cycled_at < update.started_at

    def _start_update(self, group: WorkerGroup, force: bool) -> int:
        """Start a rolling update of `group` to its current template and return the worker count.

        Workers already mid-update are retargeted: those that have rebooted
        reboot again into the new template, the others continue with it.
        """
        update = RollingUpdate(target_template_id=group.template_id,
                               started_at=self._sim_time, force=force)
        previous = group.update
        if previous is not None:
            for worker_id in sorted(previous.in_progress):
                worker = self.workers.get(worker_id)
                if worker is None:
                    continue
                update.in_progress.add(worker_id)
                if worker.target_template_id != update.target_template_id:
                    self._retarget(worker, update.target_template_id)
        workers = [self.workers[wid] for wid in group.worker_ids
                   if wid not in update.in_progress]
        candidates = [w for w in workers if self._needs_update(w, update)]
        candidates.sort(key=lambda w: (w.status != STOPPED, w.id))
        update.queue = [w.id for w in candidates]
        if not update.queue and not update.in_progress:
            group.update = None
            return 0
        group.update = update
        target = self.templates[group.template_id]
        self._log(0, f"rolling update of workergroup {group.id} to template {target.id} "
                     f"({target.hash_id}) started: {len(update.queue)} queued, "
                     f"{len(update.in_progress)} in progress, "
                     f"{self._parallel_limit(group)} at a time",
                  group.endpoint_id, group.id)
        return len(update.queue) + len(update.in_progress)

    def _retarget(self, worker: Worker, template_id: int) -> None:
        worker.target_template_id = template_id
        if worker.status in (UPDATE_STARTING, MODEL_LOADING):
            self._reboot(worker)
        elif worker.status == UPDATE_REBOOTING:
            target = self.templates[template_id]
            worker.template_id = target.id
            worker.template_hash = target.hash_id

    def _pick_workers(self, group: WorkerGroup) -> None:
        update = group.update
        if update is None or update.cancelled:
            return
        limit = self._parallel_limit(group)
        while len(update.in_progress) < limit:
            worker = self._next_pickable(update)
            if worker is None:
                return
            update.queue.remove(worker.id)
            if not self._needs_update(worker, update):
                continue
            self._pick(worker, update)

    def _next_pickable(self, update: RollingUpdate) -> Worker | None:
        for worker_id in list(update.queue):
            worker = self.workers.get(worker_id)
            if worker is None:
                update.queue.remove(worker_id)
                continue
            # Workers still being recruited wait until they are ready or stopped.
            if worker.status in (STOPPED, IDLE, ERROR) and not worker.picked:
                return worker
        return None

    def _pick(self, worker: Worker, update: RollingUpdate) -> None:
        worker.picked = True
        worker.target_template_id = update.target_template_id
        worker.last_cycled_at = self._sim_time
        update.in_progress.add(worker.id)
        self._log(2, f"worker {worker.id}: picked for update ({worker.status}, "
                     f"{worker.reqs_working} requests in flight)",
                  worker.endpoint_id, worker.workergroup_id)
        if worker.status == STOPPED:
            worker.started_at = self._sim_time
            self._set_status(worker, STARTING, "starting")
        elif worker.status == ERROR:
            worker.status_msg = ""
            self._set_status(worker, UPDATE_READY, "update_ready")
        else:
            worker.draining = True

    def _finish_update_if_done(self, group: WorkerGroup) -> None:
        update = group.update
        if update is None or update.in_progress:
            return
        if update.queue and not update.cancelled:
            return
        outcome = "cancelled" if update.cancelled else "finished"
        self._log(0, f"rolling update of workergroup {group.id} {outcome}",
                  group.endpoint_id, group.id)
        group.update = None

    # -- traffic -------------------------------------------------------------

    def _poisson(self, mean: float) -> int:
        if mean <= 0:
            return 0
        threshold = math.exp(-mean)
        count, product = 0, self.rng.random()
        while product > threshold:
            count += 1
            product *= self.rng.random()
        return count

    def _route_arrivals(self, group: WorkerGroup) -> None:
        """Send this second's new requests to the least busy ready workers of `group`."""
        max_per_worker = int(self.traffic["max_per_worker"])
        penalty = self.traffic["old_template_penalty"]

        def score(worker: Worker) -> float:
            stale = worker.template_id != group.template_id
            return worker.reqs_working + (penalty if stale else 0)

        for _ in range(self._poisson(group.request_rate)):
            candidates = []
            for worker_id in group.worker_ids:
                worker = self.workers[worker_id]
                if (worker.status == IDLE and not worker.picked
                        and worker.reqs_working < max_per_worker):
                    candidates.append(worker)
            if not candidates:
                self.counters["requests_rejected"] += 1
                continue
            best = min(score(w) for w in candidates)
            chosen = self.rng.choice([w for w in candidates if score(w) == best])
            duration = self.rng.uniform(self.traffic["min_seconds"], self.traffic["max_seconds"])
            chosen.request_ends.append(self._sim_time + duration)
            chosen.arrivals_this_step += 1

    # -- views ---------------------------------------------------------------

    def _worker_view(self, worker: Worker, include_measured_perf: bool = True) -> dict[str, Any]:
        unit = worker.load_per_request(self.traffic["max_per_worker"])
        active = worker.status not in (STOPPED, ERROR)
        view = {
            "id": worker.id,
            "status": worker.status,
            "cur_load": round(worker.reqs_working * unit, 3),
            "new_load": round(worker.arrivals_this_step * unit, 3),
            "cur_load_rolling_avg": round(worker.cur_load_rolling_avg, 3),
            "cur_perf": round(worker.reqs_working * unit, 3),
            "perf": round(worker.benchmark_perf * worker.reliability, 3) if active else 0.0,
            "measured_perf": worker.measured_perf,
            "dlperf": round(worker.dlperf, 3),
            "reliability": round(worker.reliability, 4),
            "reqs_working": worker.reqs_working,
            "disk_usage": round(worker.disk_usage, 2),
            "loaded_at": worker.loaded_at,
            "started_at": worker.started_at,
            "gpu_name": worker.gpu_name,
        }
        if not include_measured_perf:
            del view["measured_perf"]
        return view

    def _instance_view(self, worker: Worker) -> dict[str, Any]:
        template = self.templates.get(worker.template_id)
        content = template.content if template else {}
        if worker.status == STOPPED:
            actual, intended = "exited", "stopped"
        elif worker.status == CREATING:
            actual, intended = "created", "running"
        elif worker.status in (LOADING, UPDATE_REBOOTING):
            actual, intended = "loading", "running"
        else:
            actual, intended = "running", "running"
        view = {
            "id": worker.id,
            "machine_id": worker.machine_id,
            "actual_status": actual,
            "intended_status": intended,
            "cur_state": intended,
            "next_state": intended,
            "status_msg": worker.status_msg,
            "start_date": worker.started_at,
            "uptime_mins": max(0.0, (self._sim_time - worker.started_at) / 60.0)
            if actual == "running" else None,
            "dph_total": worker.dph_total,
            "gpu_name": worker.gpu_name,
            "num_gpus": 1,
            "gpu_ram": worker.gpu_ram,
            "gpu_util": min(100.0, 25.0 * worker.reqs_working) if actual == "running" else 0.0,
            "cpu_cores_effective": 16.0,
            "cpu_ram": 64000,
            "disk_space": float(content.get("recommended_disk_space") or 8),
            "disk_usage": round(worker.disk_usage, 2),
            "dlperf": round(worker.dlperf, 3),
            "reliability2": round(worker.reliability, 4),
            "inet_up": 800.0,
            "inet_down": 1200.0,
            "ssh_host": None,
            "ssh_port": None,
            "label": None,
            "template_id": worker.template_id,
            "template_hash_id": worker.template_hash,
            "template_name": content.get("name"),
            "image_uuid": f"{content.get('image')}:{content.get('tag')}" if content else None,
            "image_runtype": content.get("runtype"),
            "onstart": content.get("onstart"),
            "extra_env": parse_env_pairs(content.get("env")),
        }
        if not self.config.get("instance_template_field", True):
            del view["template_id"]
            del view["template_hash_id"]
        return view

    def _workergroup_view(self, group: WorkerGroup) -> dict[str, Any]:
        endpoint = self.endpoints[group.endpoint_id]
        return {
            "id": group.id,
            "endpoint_id": group.endpoint_id,
            "endpoint_name": endpoint.endpoint_name,
            "template_hash": group.template_hash,
            "template_id": group.template_id,
            "search_query": copy.deepcopy(group.search_query),
            "launch_args": group.launch_args,
            "gpu_ram": group.gpu_ram,
            "min_load": group.min_load if group.min_load is not None else endpoint.min_load,
            "target_util": (group.target_util if group.target_util is not None
                            else endpoint.target_util),
            "cold_mult": group.cold_mult if group.cold_mult is not None else endpoint.cold_mult,
            "cold_workers": (group.cold_workers if group.cold_workers is not None
                             else endpoint.cold_workers),
            "api_key": group.api_key,
            "created_at": group.created_at,
            "user_id": USER_ID,
        }

    def snapshot(self) -> dict[str, Any]:
        """Return the whole world as JSON-ready data, including internal worker fields."""
        with self.lock:
            workers = []
            for worker in sorted(self.workers.values(), key=lambda w: w.id):
                view = self._worker_view(worker)
                view.update({
                    "workergroup_id": worker.workergroup_id,
                    "endpoint_id": worker.endpoint_id,
                    "template_id": worker.template_id,
                    "template_hash": worker.template_hash,
                    "status_msg": worker.status_msg,
                    "picked": worker.picked,
                    "draining": worker.draining,
                    "target_template_id": worker.target_template_id,
                    "phase_ends_at": worker.phase_ends_at,
                })
                workers.append(view)
            groups = []
            for group in sorted(self.workergroups.values(), key=lambda g: g.id):
                view = self._workergroup_view(group)
                view.update({
                    "worker_ids": list(group.worker_ids),
                    "request_rate": group.request_rate,
                    "parallel_updates": self._parallel_limit(group),
                    "update": group.update.to_dict() if group.update else None,
                })
                groups.append(view)
            return {
                "clock": self._sim_time,
                "start_epoch": self.start_epoch,
                "speed": self.speed,
                "seed": self.seed,
                "config": copy.deepcopy(self.config),
                "durations": dict(self.durations),
                "traffic": dict(self.traffic),
                "fail_models": dict(self.fail_models),
                "hang_models": sorted(self.hang_models),
                "counters": copy.deepcopy(self.counters),
                "holds": [gate.to_dict() for gate in self.holds],
                "event_count": len(self.events),
                "endpoints": [e.to_dict() | {"workergroup_ids": list(e.workergroup_ids)}
                              for e in sorted(self.endpoints.values(), key=lambda e: e.id)],
                "workergroups": groups,
                "templates": [t.to_dict()
                              for t in sorted(self.templates.values(), key=lambda t: t.id)],
                "workers": workers,
            }

    def events_since(self, index: int = 0) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(event) for event in self.events[max(index, 0):]]

    # -- sandbox controls ----------------------------------------------------

    def set_config(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply a partial config and return the full config. Raises ValueError on invalid values.

        Besides the `config` keys, `durations`, `traffic` (partial dicts),
        `fail_models` (dict) and `hang_models` (list) replace or update those
        attributes.
        """
        if not isinstance(changes, dict):
            raise ValueError("config must be a JSON object")
        with self.lock:
            validated = {key: self._validate_config_value(key, value)
                         for key, value in changes.items()}
            for key, value in validated.items():
                if key in ("durations", "traffic"):
                    getattr(self, key).update(value)
                elif key == "fail_models":
                    self.fail_models = value
                elif key == "hang_models":
                    self.hang_models = value
                else:
                    self.config[key] = value
            return copy.deepcopy(self.config)

    def _validate_config_value(self, key: str, value: Any) -> Any:
        if key == "worker_list_shape":
            if value not in ("list", "dict"):
                raise ValueError("worker_list_shape must be 'list' or 'dict'")
        elif key == "status_case":
            if value not in ("upper", "lower"):
                raise ValueError("status_case must be 'upper' or 'lower'")
        elif key in ("loading_error_msg_calls", "recruit_workers"):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{key} must be a non-negative integer")
        elif key == "loading_error_status":
            if value not in (200, 400):
                raise ValueError("loading_error_status must be 200 or 400")
        elif key == "router_error_style":
            if value not in ("json", "string"):
                raise ValueError("router_error_style must be 'json' or 'string'")
        elif key == "rate_limit_body":
            if value not in RATE_LIMIT_BODIES:
                raise ValueError(f"rate_limit_body must be one of {', '.join(RATE_LIMIT_BODIES)}")
        elif key == "instance_template_field":
            if not isinstance(value, bool):
                raise ValueError("instance_template_field must be true or false")
        elif key in ("rate_limit_seconds", "retry_after_header"):
            if value is not None and (isinstance(value, bool)
                                      or not isinstance(value, int | float) or value < 0):
                raise ValueError(f"{key} must be null or a non-negative number of seconds")
        elif key == "parallel_updates":
            if value is not None and (isinstance(value, bool)
                                      or not isinstance(value, int) or value < 1):
                raise ValueError("parallel_updates must be null or a positive integer")
        elif key == "faults":
            return self._validate_faults(value)
        elif key in ("durations", "traffic"):
            known = getattr(self, key)
            if not isinstance(value, dict):
                raise ValueError(f"{key} must be a JSON object")
            for name, number in value.items():
                if name not in known:
                    raise ValueError(f"unknown {key} key {name!r}")
                if isinstance(number, bool) or not isinstance(number, int | float) or number < 0:
                    raise ValueError(f"{key}.{name} must be a non-negative number")
        elif key == "fail_models":
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise ValueError("fail_models must map model names to status messages")
            return dict(value)
        elif key == "hang_models":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError("hang_models must be a list of model names")
            return set(value)
        else:
            raise ValueError(f"unknown config key {key!r}")
        return value

    @staticmethod
    def _validate_faults(value: Any) -> dict[str, Any] | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ValueError("faults must be null or a JSON object")
        unknown = set(value) - {"rate", "kinds", "timeout_seconds", "routes"}
        if unknown:
            raise ValueError(f"unknown faults keys {sorted(unknown)}")
        rate = value.get("rate", 0.0)
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            raise ValueError("faults.rate must be a number between 0 and 1")
        kinds = value.get("kinds", list(FAULT_KINDS))
        if not isinstance(kinds, list) or not kinds:
            raise ValueError("faults.kinds must be a non-empty list")
        for kind in kinds:
            if kind not in ("timeout", "disconnect") and not re.fullmatch(r"[45]\d\d", str(kind)):
                raise ValueError(f"unknown fault kind {kind!r}")
        timeout_seconds = value.get("timeout_seconds", 2.0)
        if (isinstance(timeout_seconds, bool) or not isinstance(timeout_seconds, int | float)
                or timeout_seconds < 0):
            raise ValueError("faults.timeout_seconds must be a non-negative number")
        routes = value.get("routes")
        if routes is not None and (not isinstance(routes, list)
                                   or not all(isinstance(r, str) for r in routes)):
            raise ValueError("faults.routes must be null or a list of path prefixes")
        return {"rate": float(rate), "kinds": [str(k) for k in kinds],
                "timeout_seconds": float(timeout_seconds), "routes": routes}

    def fail_next(self, route_prefix: str, kind: str, count: int = 1,
                  timeout_seconds: float = 2.0) -> None:
        """Make the next `count` calls whose path starts with `route_prefix` fail with `kind`.

        `kind` is a status code such as "429" or "503", "timeout" (wait
        `timeout_seconds` of real time, then respond with 504) or "disconnect".
        """
        self._validate_faults({"rate": 0.0, "kinds": [str(kind)],
                               "timeout_seconds": timeout_seconds})
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError("count must be a positive integer")
        with self.lock:
            self._scripted_faults.append([route_prefix, str(kind), count, float(timeout_seconds)])

    def take_fault(self, path: str) -> tuple[str, float] | None:
        """Decide whether a call to `path` fails and return (kind, timeout_seconds) or None.

        Scripted failures from `fail_next` come first, then the random `faults` config.
        """
        with self.lock:
            for entry in self._scripted_faults:
                prefix, kind, remaining, timeout_seconds = entry
                if path.startswith(prefix):
                    if remaining <= 1:
                        self._scripted_faults.remove(entry)
                    else:
                        entry[2] = remaining - 1
                    return kind, timeout_seconds
            faults = self.config.get("faults")
            if not faults or faults["rate"] <= 0:
                return None
            routes = faults.get("routes")
            if routes and not any(path.startswith(prefix) for prefix in routes):
                return None
            if self.fault_rng.random() >= faults["rate"]:
                return None
            return self.fault_rng.choice(faults["kinds"]), faults["timeout_seconds"]

    def hold(self, route_prefix: str, *, method: str | None = None, when: str = "before",
             count: int = 1, skip: int = 0, seconds: float | None = None) -> Hold:
        """Hold the next `count` requests whose path starts with `route_prefix`.

        `method` limits the hold to one HTTP method, `skip` lets that many matching requests
        pass first, and `when` is "before" or "after" the world applies the request. See
        `Hold` for when a held request goes on. Raises ValueError on invalid arguments.
        """
        if when not in HOLD_POINTS:
            raise ValueError(f"when must be one of {', '.join(HOLD_POINTS)}, got {when!r}")
        for name, value, minimum in (("count", count, 1), ("skip", skip, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an integer of at least {minimum}, got {value!r}")
        if seconds is not None and (isinstance(seconds, bool)
                                    or not isinstance(seconds, int | float) or seconds < 0):
            raise ValueError(f"seconds must be null or a non-negative number, got {seconds!r}")
        gate = Hold(route_prefix, method, when, count, skip, seconds)
        with self.lock:
            self.holds.append(gate)
        return gate

    def take_hold(self, method: str, path: str) -> Hold | None:
        """Return the hold that a request to `path` must wait at, or None."""
        with self.lock:
            for gate in self.holds:
                if gate.remaining <= 0 or not gate.matches(method, path):
                    continue
                if gate.skip > 0:
                    gate.skip -= 1
                    return None
                gate.remaining -= 1
                return gate
            return None

    def release_holds(self) -> int:
        """Release every hold and return how many there were."""
        with self.lock:
            for gate in self.holds:
                gate.release()
            return len(self.holds)

    def check_rate_limit(self, route: str, api_key: str) -> float | None:
        """Record a call and return the threshold in seconds if it came too soon, else None.

        Rejected calls do not reset the interval.
        """
        with self.lock:
            threshold = self.config.get("rate_limit_seconds")
            if not threshold:
                return None
            now = time.monotonic()
            last = self._last_call_at.get((route, api_key))
            if last is not None and now - last < threshold:
                return float(threshold)
            self._last_call_at[(route, api_key)] = now
            return None

    def count_call(self, route: str) -> None:
        with self.lock:
            calls = self.counters["calls"]
            calls[route] = calls.get(route, 0) + 1

    # -- console API: users and endpoints ------------------------------------

    def current_user(self) -> dict[str, Any]:
        return {"id": USER_ID, "username": "sandbox", "email": "sandbox@example.invalid",
                "fullname": "Sandbox User", "host_agreement_accepted": False,
                "balance": 0.0, "credit": 100.0, "can_pay": True, "has_billing": True}

    def _endpoint_or_error(self, endpoint_id: Any) -> Endpoint:
        try:
            endpoint_id = int(endpoint_id)
        except (TypeError, ValueError) as error:
            raise invalid_args(f"Invalid endpoint job ID {endpoint_id!r}") from error
        endpoint = self.endpoints.get(endpoint_id)
        if endpoint is None:
            raise ApiError(404, "not_found", f"Endpoint job {endpoint_id} not found")
        return endpoint

    def list_endpoints(self) -> dict[str, Any]:
        with self.lock:
            if not self.endpoints:
                raise invalid_args(f"No endpoints for user {USER_ID} found.")
            results = [e.to_dict() for e in sorted(self.endpoints.values(), key=lambda e: e.id)]
            return {"success": True, "results": results}

    def get_endpoint(self, endpoint_id: Any) -> dict[str, Any]:
        with self.lock:
            return {"success": True, "result": self._endpoint_or_error(endpoint_id).to_dict()}

    _ENDPOINT_NUMBERS: ClassVar[dict[str, type]] = {
        "min_load": float, "min_cold_load": float, "target_util": float, "cold_mult": float,
        "cold_workers": int, "max_workers": int, "max_queue_time": float,
        "target_queue_time": float, "inactivity_timeout": float,
    }

    def _apply_endpoint_fields(self, endpoint: Endpoint, body: dict[str, Any]) -> None:
        changes: dict[str, Any] = {}
        for key, kind in self._ENDPOINT_NUMBERS.items():
            value = body.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise invalid_args(f"{key} must be a number, got {value!r}")
            changes[key] = kind(value)
        state = body.get("endpoint_state")
        if state is not None:
            if state not in ("active", "suspended", "stopped"):
                raise invalid_args(f"endpoint_state must be active, suspended or stopped, "
                                   f"got {state!r}")
            changes["endpoint_state"] = state
        name = body.get("endpoint_name")
        if name is not None:
            if not isinstance(name, str) or not name:
                raise invalid_args("endpoint_name must be a non-empty string")
            if any(e.endpoint_name == name and e.id != endpoint.id
                   for e in self.endpoints.values()):
                raise invalid_args(f"An endpoint named {name!r} already exists")
            changes["endpoint_name"] = name
        max_queue = changes.get("max_queue_time", endpoint.max_queue_time)
        target_queue = changes.get("target_queue_time", endpoint.target_queue_time)
        if target_queue > max_queue:
            raise invalid_args("target_queue_time must not exceed max_queue_time")
        for key, value in changes.items():
            setattr(endpoint, key, value)

    def create_endpoint_from_api(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            name = body.get("endpoint_name") or f"endpoint-{self._next_ids['endpoint']}"
            if any(e.endpoint_name == name for e in self.endpoints.values()):
                raise invalid_args(f"An endpoint named {name!r} already exists")
            endpoint = self._new_endpoint(name, {})
            try:
                self._apply_endpoint_fields(endpoint, body)
            except ApiError:
                del self.endpoints[endpoint.id]
                raise
            return {"success": True, "result": endpoint.id}

    def update_endpoint(self, endpoint_id: Any, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            endpoint = self._endpoint_or_error(endpoint_id)
            self._apply_endpoint_fields(endpoint, body)
            # NOTE: endpoint_state is stored but does not stop or suspend workers.
            return {"success": True}

    def delete_endpoint(self, endpoint_id: Any) -> dict[str, Any]:
        with self.lock:
            endpoint = self._endpoint_or_error(endpoint_id)
            deleted: list[int] = []
            for group_id in list(endpoint.workergroup_ids):
                deleted.extend(self._remove_workergroup(self.workergroups[group_id]))
            del self.endpoints[endpoint.id]
            return {"success": True, "deleted_workers": deleted, "failed_workers": [],
                    "msg": f"Endpoint {endpoint.id} deleted"}

    # -- console API: worker groups ------------------------------------------

    def list_workergroups(self) -> dict[str, Any]:
        with self.lock:
            results = [self._workergroup_view(g)
                       for g in sorted(self.workergroups.values(), key=lambda g: g.id)]
            return {"success": True, "results": results}

    def _group_or_error(self, group_id: Any) -> WorkerGroup:
        try:
            group_id = int(group_id)
        except (TypeError, ValueError) as error:
            raise invalid_args(f"Invalid autojob ID {group_id!r}") from error
        group = self.workergroups.get(group_id)
        if group is None:
            raise invalid_args(f"workergroup {group_id} not found")
        return group

    def _resolve_template(self, template_hash: Any, template_id: Any) -> Template | None:
        """Find the template named by hash, id or both. Returns None when neither is given."""
        by_id = None
        if template_id is not None:
            if isinstance(template_id, bool) or not isinstance(template_id, int | str):
                raise invalid_args(f"template_id must be an integer, got {template_id!r}")
            try:
                by_id = self.templates.get(int(template_id))
            except ValueError as error:
                raise invalid_args(f"template_id must be an integer, got {template_id!r}") \
                    from error
            if by_id is None:
                raise invalid_args(f"template_id {template_id} not found")
        if template_hash is not None:
            if not isinstance(template_hash, str):
                raise invalid_args(f"template_hash must be a string, got {template_hash!r}")
            matches = self._templates_with_hash(template_hash)
            if not matches:
                raise invalid_args(f"template_hash {template_hash} not found")
            if by_id is not None:
                if by_id.hash_id != template_hash:
                    raise invalid_args(f"template_id {by_id.id} does not match "
                                       f"template_hash {template_hash}")
                return by_id
            return matches[0]
        return by_id

    def _parse_search_or_error(self, value: Any) -> dict[str, Any]:
        try:
            return parse_search_params(value)
        except ValueError as error:
            raise invalid_args(f"invalid search_params: {error}") from error

    def create_workergroup_from_api(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            template = self._resolve_template(body.get("template_hash"), body.get("template_id"))
            if template is None:
                raise invalid_args("either template_hash or template_id is required")
            if "search_params" not in body or body["search_params"] is None:
                raise invalid_args("missing search_params")
            search_query = self._parse_search_or_error(body["search_params"])
            endpoint_id = body.get("endpoint_id")
            endpoint_name = body.get("endpoint_name")
            if endpoint_id is not None:
                endpoint = self.endpoints.get(as_int(endpoint_id))
                if endpoint is None:
                    raise invalid_args("Please assign your workergroup to a valid endpoint "
                                       "identifier")
            elif endpoint_name:
                endpoint = next((e for e in self.endpoints.values()
                                 if e.endpoint_name == endpoint_name), None)
                if endpoint is None:
                    endpoint = self._new_endpoint(endpoint_name, {})
            else:
                raise invalid_args("Please assign your workergroup to a valid endpoint "
                                   "identifier")
            group = WorkerGroup(
                id=self._new_id("workergroup"), endpoint_id=endpoint.id,
                template_id=template.id, template_hash=template.hash_id,
                search_query=search_query, api_key=endpoint.api_key,
                created_at=self._sim_time,
                request_rate=self.traffic["arrivals_per_active_worker"]
                * max(self.config["recruit_workers"], 1),
                launch_args=body.get("launch_args"),
                gpu_ram=float(body["gpu_ram"]) if body.get("gpu_ram") is not None else 24.0,
                cold_workers=body.get("cold_workers"),
            )
            self.workergroups[group.id] = group
            endpoint.workergroup_ids.append(group.id)
            for _ in range(self.config["recruit_workers"]):
                self._recruit_worker(group)
            self._log(0, f"workergroup {group.id} created on endpoint {endpoint.id}, "
                         f"recruiting {self.config['recruit_workers']} workers",
                      endpoint.id, group.id)
            return {"success": True, "id": group.id}

    def update_workergroup(self, group_id: Any, body: dict[str, Any]) -> dict[str, Any]:
        """Apply a worker group PUT. A new template or new search filters start a rolling update."""
        with self.lock:
            group = self._group_or_error(group_id)
            if body.get("endpoint_id") is None:
                raise invalid_args("missing endpoint_id")
            endpoint_id = as_int(body["endpoint_id"])
            if endpoint_id is None:
                raise invalid_args(f"endpoint_id must be an integer, got {body['endpoint_id']!r}")
            if endpoint_id not in self.endpoints:
                raise invalid_args(f"endpoint {endpoint_id} not found")
            if endpoint_id != group.endpoint_id:
                # NOTE: whether Vast moves a group to another endpoint is unknown. The
                # sandbox rejects it so that a wrong endpoint_id shows up in tests.
                raise invalid_args(f"workergroup {group.id} belongs to endpoint "
                                   f"{group.endpoint_id}, not {endpoint_id}")
            template = self._resolve_template(body.get("template_hash"), body.get("template_id"))
            search_query = None
            if body.get("search_params") is not None:
                search_query = self._parse_search_or_error(body["search_params"])
            for key in ("gpu_ram", "min_load", "target_util", "cold_mult"):
                value = body.get(key)
                if value is not None and (isinstance(value, bool)
                                          or not isinstance(value, int | float)):
                    raise invalid_args(f"{key} must be a number, got {value!r}")

            template_changed = template is not None and template.id != group.template_id
            search_changed = search_query is not None and search_query != group.search_query
            if template is not None:
                group.template_id = template.id
                group.template_hash = template.hash_id
            if search_query is not None:
                group.search_query = search_query
            if body.get("launch_args") is not None:
                group.launch_args = body["launch_args"]
            for key in ("gpu_ram", "min_load", "target_util", "cold_mult"):
                if body.get(key) is not None:
                    setattr(group, key, float(body[key]))
            if body.get("cold_workers") is not None:
                group.cold_workers = int(body["cold_workers"])
            self.counters["workergroup_updates"] += 1
            self._log(0, f"workergroup {group.id} updated: template {group.template_id} "
                         f"({group.template_hash}), template changed={template_changed}, "
                         f"search changed={search_changed}", group.endpoint_id, group.id)
            if template_changed or search_changed:
                # New search filters mean new machines, so every worker cycles even
                # when the template stays the same.
                self._start_update(group, force=search_changed)
            return {"success": True}

    def _remove_workergroup(self, group: WorkerGroup) -> list[int]:
        deleted = list(group.worker_ids)
        for worker_id in deleted:
            self.workers.pop(worker_id, None)
        endpoint = self.endpoints.get(group.endpoint_id)
        if endpoint is not None and group.id in endpoint.workergroup_ids:
            endpoint.workergroup_ids.remove(group.id)
        del self.workergroups[group.id]
        self._log(0, f"workergroup {group.id} deleted with workers {deleted}",
                  group.endpoint_id, group.id)
        return deleted

    def delete_workergroup(self, group_id: Any) -> dict[str, Any]:
        with self.lock:
            try:
                group_id = int(group_id)
            except (TypeError, ValueError) as error:
                raise invalid_args("id must be an integer") from error
            group = self.workergroups.get(group_id)
            if group is None:
                raise ApiError(404, "not_found", "No autojob by that id is available.")
            deleted = self._remove_workergroup(group)
            return {"success": True, "deleted_workers": deleted, "failed_workers": [],
                    "msg": f"Workergroup {group_id} deleted"}

    # -- console API: templates ----------------------------------------------

    def _template_in_use(self, template: Template) -> bool:
        if any(g.template_id == template.id for g in self.workergroups.values()):
            return True
        return any(w.template_id == template.id or w.target_template_id == template.id
                   for w in self.workers.values())

    def search_templates(self, filters: Any, select_cols: Any = None, order_by: Any = None,
                         limit: Any = None, after_token: Any = None,
                         paged: bool = False) -> dict[str, Any]:
        with self.lock:
            records = [t.to_dict() for t in self.templates.values()]
            try:
                found = order_records(filter_records(records, filters), order_by)
                next_token = None
                if paged:
                    found, next_token = paginate(found, limit, after_token)
            except ValueError as error:
                raise invalid_args(str(error)) from error
            if select_cols and select_cols != ["*"] and select_cols != "*":
                if not isinstance(select_cols, list):
                    raise invalid_args("select_cols must be a JSON list")
                found = [{col: record.get(col) for col in select_cols} for record in found]
            if not found:
                result: dict[str, Any] = {"success": False, "msg": "No templates found"}
            else:
                result = {"success": True, "templates_found": len(found), "templates": found}
            if paged:
                result["next_token"] = next_token
            return result

    def _content_from_body(self, body: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
        content = copy.deepcopy(base)
        for key in TEMPLATE_CONTENT_FIELDS:
            if key in body:
                content[key] = copy.deepcopy(body[key])
        return content

    def create_template_from_api(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            if not body.get("image"):
                raise invalid_args("missing image")
            template, created = self._create_template(self._content_from_body(
                body, dict(TEMPLATE_CONTENT_FIELDS)))
            template.count_created += 1
            self.counters["template_saves"] += 1
            if not created:
                return {"success": False,
                        "msg": f"Existing Template Found: {template.id}. "
                               f"User relationship added.",
                        "template": template.to_dict()}
            self._log(0, f"template {template.id} ({template.hash_id}) created")
            return {"success": True,
                    "msg": f"Template Created Successfully! New Template ID: {template.id}",
                    "template": template.to_dict()}

    def _save_edit(self, template: Template, content: dict[str, Any]) -> tuple[Template, bool]:
        """Store edited content and return the resulting template and whether it is a new copy.

        A template in use by a worker group or worker keeps its version and the
        edit becomes a new template (new id and hash). Otherwise the template is
        edited in place (same id, new hash).
        """
        new_hash = content_hash(content)
        if self._template_in_use(template):
            copy_template = Template(id=self._new_id("template"), hash_id=new_hash,
                                     content=content, created_at=self._sim_time)
            self.templates[copy_template.id] = copy_template
            return copy_template, True
        template.content = content
        template.hash_id = new_hash
        return template, False

    def edit_template_v1(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            template = self.templates.get(as_int(body.get("id")))
            if template is None or template.hash_id != body.get("hash_id"):
                raise ApiError(404, "invalid_template", "Template not found",
                               {"error": "invalid_template"})
            content = self._content_from_body(body, template.content)
            self.counters["template_saves"] += 1
            if content_hash(content) == template.hash_id:
                return {"success": True, "msg": f"No Edits made for template {template.id}",
                        "template": template.to_dict(), "hash_id": template.hash_id}
            saved, is_copy = self._save_edit(template, content)
            if is_copy:
                message = (f"Created an Edited Copy of Template {template.id}. "
                           f"New Template ID: {saved.id}")
            else:
                message = f"Template {saved.id} Updated Successfully"
            self._log(0, f"template {template.id} edited: {message} ({saved.hash_id})")
            return {"success": True, "msg": message, "template": saved.to_dict()}

    def edit_template_v0(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            for key in body:
                if key not in TEMPLATE_CONTENT_FIELDS and key not in TEMPLATE_V0_EXTRA_KEYS:
                    raise invalid_args(f"Unexpected Key '{key}' found in Template.")
            hash_id = body.get("hash_id")
            matches = self._templates_with_hash(hash_id) if isinstance(hash_id, str) else []
            if not matches:
                raise invalid_args("Unable to Update Template. None found for given Hash ID")
            template = matches[0]
            content = self._content_from_body(body, template.content)
            self.counters["template_saves"] += 1
            if content_hash(content) == template.hash_id:
                return {"success": True, "hash_id": template.hash_id,
                        "msg": f"No Edits made for template {template.id}",
                        "template": template.to_dict()}
            saved, _ = self._save_edit(template, content)
            self._log(0, f"template {template.id} edited through v0 as template {saved.id} "
                         f"({saved.hash_id})")
            return {"success": True, "hash_id": saved.hash_id,
                    "msg": f"Template {saved.id} Updated Successfully",
                    "template": saved.to_dict()}

    def delete_template(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            template = None
            if body.get("template_id") is not None:
                template = self.templates.get(as_int(body["template_id"]))
            elif body.get("hash_id") is not None:
                matches = self._templates_with_hash(body["hash_id"])
                template = matches[0] if matches else None
            else:
                raise invalid_args("missing template_id")
            if template is None:
                raise invalid_args("Cannot Delete Template. Template not found.")
            if self._template_in_use(template):
                raise invalid_args("Cannot Delete Template. Other Users are still using it.")
            del self.templates[template.id]
            return {"success": True, "msg": f"Template {template.id} Deleted Successfully"}

    # -- console API: instances ----------------------------------------------

    def get_instance(self, instance_id: Any) -> dict[str, Any]:
        with self.lock:
            try:
                worker = self.workers.get(int(instance_id))
            except (TypeError, ValueError) as error:
                raise invalid_args(f"instance id must be an integer, got {instance_id!r}") \
                    from error
            return {"instances": self._instance_view(worker) if worker else None}

    def list_instances(self, filters: Any = None, order_by: Any = None, limit: Any = None,
                       after_token: Any = None) -> dict[str, Any]:
        with self.lock:
            records = [self._instance_view(w) for w in self.workers.values()]
            try:
                found = order_records(filter_records(records, filters), order_by)
                page, next_token = paginate(found, limit, after_token)
            except ValueError as error:
                raise invalid_args(str(error)) from error
            return {"instances": page, "next_token": next_token,
                    "total_instances": len(found), "label_counts": {}}

    # -- router API ----------------------------------------------------------

    def _take_loading_error(self, kind: str, object_id: int) -> dict[str, Any] | None:
        """Return the `{"error_msg": ...}` reply while `loading_error_msg_calls` lasts.

        Raises ApiError with status 400 instead when `loading_error_status` is 400,
        the other status reported for this reply.
        """
        remaining = self.config.get("loading_error_msg_calls", 0)
        if remaining <= 0:
            return None
        self.config["loading_error_msg_calls"] = remaining - 1
        # NOTE: the text is a guess. Only the `error_msg` key is known: the
        # serverless client of vastai 1.9.1 logs it and returns no workers.
        body = {"error_msg": f"{kind} {object_id} workers are still loading, try again later"}
        if self.config.get("loading_error_status", 200) != 200:
            raise ApiError(self.config["loading_error_status"], "loading", body["error_msg"],
                           body)
        return body

    def endpoint_workers(self, endpoint_id: Any) -> list[dict] | dict[str, Any]:
        with self.lock:
            endpoint = self.endpoints.get(as_int(endpoint_id))
            if endpoint is None:
                raise router_error(400, "authenticate_endpoint_apikey: invalid api_key or "
                                        f"endpoint {endpoint_id} not found")
            loading = self._take_loading_error("endpoint", endpoint.id)
            if loading is not None:
                return loading
            workers = [self._worker_view(self.workers[wid])
                       for gid in endpoint.workergroup_ids
                       for wid in self.workergroups[gid].worker_ids]
            return sorted(workers, key=lambda w: w["id"])

    def workergroup_workers(self, group_id: Any) -> list[dict] | dict[str, Any]:
        with self.lock:
            group = self.workergroups.get(as_int(group_id))
            if group is None:
                raise router_error(400, "authenticate_workergroup_apikey: invalid api_key or "
                                        f"workergroup {group_id} not found")
            loading = self._take_loading_error("workergroup", group.id)
            if loading is not None:
                return loading
            # Unlike the endpoint list, this list has no measured_perf (as noted in
            # the vastai 1.9.1 benchmark command).
            return [self._worker_view(self.workers[wid], include_measured_perf=False)
                    for wid in sorted(group.worker_ids)]

    def update_workers(self, body: dict[str, Any]) -> dict[str, Any]:
        """Start (or with `cancel_update` cancel) a rolling update of one worker group."""
        with self.lock:
            self.counters["update_workers_calls"] += 1
            group_id = body.get("workergroup_id", body.get("id"))
            group = self.workergroups.get(as_int(group_id))
            if group is None:
                raise router_error(400, f"workergroup {group_id} not found")
            if body.get("cancel_update"):
                update = group.update
                if update is None or update.cancelled:
                    # NOTE: the reply of the real router to a cancel without an
                    # update in progress is unknown.
                    raise router_error(400, f"no update in progress for workergroup {group.id}")
                self.counters["cancels"] += 1
                skipped = len(update.queue)
                update.queue.clear()
                update.cancelled = True
                self._log(0, f"rolling update of workergroup {group.id} cancelled: {skipped} "
                             f"workers stay on their template, {len(update.in_progress)} "
                             f"finish their update", group.endpoint_id, group.id)
                return {"success": True, "cancelled": True}
            count = self._start_update(group, force=True)
            return {"success": True, "workers_to_update": count}

    def logs(self, kind: str, body: dict[str, Any]) -> dict[str, str]:
        """Return endpoint or worker group logs as the info0/info1/trace/debug/logs texts."""
        with self.lock:
            tail = body.get("tail", DEFAULT_LOG_TAIL)
            if isinstance(tail, bool) or not isinstance(tail, int) or tail < 0:
                raise router_error(400, f"tail must be a non-negative integer, got {tail!r}")
            if kind == "endpoint":
                endpoint = None
                if body.get("id") is not None:
                    endpoint = self.endpoints.get(as_int(body["id"]))
                elif body.get("endpoint") is not None:
                    endpoint = next((e for e in self.endpoints.values()
                                     if e.endpoint_name == body["endpoint"]), None)
                if endpoint is None:
                    target = body.get("id", body.get("endpoint"))
                    raise router_error(400, "authenticate_endpoint_apikey: invalid api_key "
                                            f"or endpoint {target} not found")
                lines = [entry for entry in self._logs if entry[2] == endpoint.id]
            else:
                group = self.workergroups.get(as_int(body.get("id")))
                if group is None:
                    raise router_error(400, "authenticate_workergroup_apikey: invalid api_key "
                                            f"or workergroup {body.get('id')} not found")
                lines = [entry for entry in self._logs if entry[3] == group.id]

            def render(max_level: int) -> str:
                chosen = [f"{_format_sim_time(t)} {text}"
                          for t, level, _, _, text in lines if level <= max_level]
                chosen = chosen[-tail:] if tail else []
                return "\n".join(chosen) + ("\n" if chosen else "")

            texts = {"info0": render(0), "info1": render(1), "trace": render(2),
                     "debug": render(3)}
            texts["logs"] = texts["info1"]
            return texts
