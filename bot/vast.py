"""HTTP client for the parts of Vast's console and serverless router APIs that Rollcall uses.

Console calls go to `VAST_API_URL` (console.vast.ai), router calls to `VAST_ROUTER_URL`
(run.vast.ai). Vast limits each route to about one call per 2 s and returns 429 with a plain
text body and usually no Retry-After. The client therefore spaces calls per route, and it retries
429, 502/503/504, timeouts and connection errors with backoff before it gives up.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import httpx

logger = logging.getLogger(__name__)

RETRY_STATUSES = {429, 502, 503, 504}
# vastai 1.9.1 waits for Retry-After only when it is at most 60 s; above that it backs off.
MAX_RETRY_AFTER = 60.0
INSTANCE_PAGE_SIZE = 100
_ID_SEGMENT = re.compile(r"/\d+/")


class VastError(Exception):
    """A Vast API call failed; the message carries the route and Vast's own explanation."""

    def __init__(self, route: str, detail: str, status: int | None = None) -> None:
        self.route = route
        self.detail = detail
        self.status = status
        where = f"{route} answered {status}" if status else f"{route} failed"
        super().__init__(f"Vast API {where}: {detail}")


class VastUnavailable(VastError):
    """Vast kept returning 429/5xx or could not be reached after every retry."""


class VastWorkersLoading(VastError):
    """The router returned `{"error_msg": ...}` instead of a worker list, as it does while an
    endpoint's workers load; the caller should try again later rather than read it as zero workers.
    """


def _error_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        if text.startswith("<") or "html" in response.headers.get("content-type", ""):
            # A proxy's error page (nginx and the like) carries nothing more than its status.
            return f"{response.status_code} {response.reason_phrase}".strip()
        return text[:300] or response.reason_phrase
    if isinstance(body, dict):
        for key in ("msg", "message", "error_msg", "detail", "error"):
            if body.get(key):
                return str(body[key])[:300]
    if isinstance(body, str):
        return body[:300]
    return json.dumps(body)[:300]


class VastClient:
    """Calls Vast on behalf of one API key.

    Args:
        api_key: the Vast API key; sent as a Bearer header (and in router bodies, as Vast's CLI
            does) and never logged.
        api_url: console base URL.
        router_url: serverless router base URL.
        http: the httpx client to use; the caller owns and closes it.
        min_interval: minimum seconds between two calls to the same route.
        attempts: tries per call for retryable failures.
        backoff: first backoff in seconds, doubled on each retry (at most 30 s).
        sleep: how to wait; tests pass a function that records the waits.
    """

    def __init__(
        self,
        api_key: str,
        api_url: str,
        router_url: str,
        *,
        http: httpx.Client,
        min_interval: float = 2.0,
        attempts: int = 4,
        backoff: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._api_key = api_key
        self._api_url = api_url.rstrip("/")
        self._router_url = router_url.rstrip("/")
        self._http = http
        self._min_interval = min_interval
        self._attempts = max(1, attempts)
        self._backoff = backoff
        self._sleep = sleep
        self._last_call: dict[str, float] = {}
        self._route_locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self.calls = 0

    # Transport ------------------------------------------------------------------------------

    def _route_lock(self, route: str) -> threading.Lock:
        with self._locks_guard:
            return self._route_locks.setdefault(route, threading.Lock())

    def _wait_turn(self, route: str) -> None:
        if self._min_interval <= 0:
            return
        last = self._last_call.get(route)
        if last is not None:
            delay = last + self._min_interval - time.monotonic()
            if delay > 0:
                self._sleep(delay)
        self._last_call[route] = time.monotonic()

    def _request(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> Any:
        path = httpx.URL(url).path
        route = f"{method} {_ID_SEGMENT.sub('/{id}/', path)}"
        headers = {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}
        failure = ""
        with self._route_lock(route):
            for attempt in range(1, self._attempts + 1):
                self._wait_turn(route)
                self.calls += 1
                retry_after = None
                try:
                    response = self._http.request(method, url, params=params, json=body, headers=headers)
                except httpx.TimeoutException:
                    failure = "timed out"
                except httpx.TransportError as error:
                    failure = f"connection failed ({type(error).__name__})"
                else:
                    if response.status_code not in RETRY_STATUSES:
                        return self._parse(route, response)
                    failure = f"HTTP {response.status_code}: {_error_detail(response)}"
                    retry_after = _retry_after(response)
                if attempt == self._attempts:
                    break
                delay = min(self._backoff * 2 ** (attempt - 1), 30.0)
                if retry_after is not None and retry_after <= MAX_RETRY_AFTER:
                    delay = max(delay, retry_after)
                logger.warning(
                    "Vast %s %s (attempt %d of %d); retrying in %.1f s",
                    route,
                    failure,
                    attempt,
                    self._attempts,
                    delay,
                )
                self._sleep(delay)
        raise VastUnavailable(route, f"{failure}, after {self._attempts} attempts")

    @staticmethod
    def _parse(route: str, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise VastError(route, _error_detail(response), response.status_code)
        try:
            return response.json()
        except ValueError:
            raise VastError(route, f"expected JSON, got {response.text[:200]!r}", response.status_code) from None

    def _console(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, self._api_url + path, **kwargs)

    def _router(self, path: str, body: dict[str, Any]) -> Any:
        return self._request("POST", self._router_url + path, body={**body, "api_key": self._api_key})

    @staticmethod
    def _check_success(route: str, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise VastError(route, f"unexpected response {str(data)[:200]!r}")
        if data.get("success") is False:
            raise VastError(route, str(data.get("msg") or data.get("error") or "success: false"))
        return data

    # Console --------------------------------------------------------------------------------

    def list_endpoints(self) -> list[dict[str, Any]]:
        """Return the account's endpoints (`GET /api/v0/endptjobs/`)."""
        route = "GET /api/v0/endptjobs/"
        data = self._check_success(route, self._console("GET", "/api/v0/endptjobs/"))
        return list(data.get("results") or [])

    def list_workergroups(self) -> list[dict[str, Any]]:
        """Return the account's worker groups (`GET /api/v0/autojobs/`)."""
        route = "GET /api/v0/autojobs/"
        data = self._check_success(route, self._console("GET", "/api/v0/autojobs/"))
        return list(data.get("results") or [])

    def find_templates(self, filters: dict[str, Any]) -> list[dict[str, Any]]:
        """Search templates with Vast's `select_filters` operators; an empty list when none match."""
        params = {"select_cols": json.dumps(["*"]), "select_filters": json.dumps(filters)}
        data = self._console("GET", "/api/v0/template/", params=params)
        if not isinstance(data, dict) or data.get("success") is False:
            return []
        return list(data.get("templates") or [])

    def find_template(self, hash_id: str) -> dict[str, Any] | None:
        """Return the template with this `hash_id`, or None when Vast has none."""
        for template in self.find_templates({"hash_id": {"eq": hash_id}}):
            if template.get("hash_id") == hash_id:
                return template
        return None

    def save_template(self, template: dict[str, Any]) -> dict[str, Any]:
        """Save a new version of a template with `PUT /api/v1/template/` (full template).

        Vast returns a new `hash_id`, and a new `id` when the old version is in use. When
        identical content already exists it returns "Existing Template Found", which is success.

        Returns:
            The saved template, with at least `hash_id` and `id`.
        """
        route = "PUT /api/v1/template/"
        data = self._console("PUT", "/api/v1/template/", body=dict(template))
        return _saved_template(route, data, template)

    def create_template(self, template: dict[str, Any]) -> dict[str, Any]:
        """Create a template with `POST /api/v0/template/`; an identical one counts as success."""
        route = "POST /api/v0/template/"
        data = self._console("POST", "/api/v0/template/", body=dict(template))
        return _saved_template(route, data, template)

    def update_workergroup(
        self,
        workergroup_id: int,
        endpoint_id: int,
        *,
        template_hash: str,
        template_id: int | None,
        search_params: str,
    ) -> None:
        """Point a worker group at a template; this is what starts Vast's rolling update.

        The complete search filter is always sent: Vast's own CLI sends a default filter when
        none is given, which would replace the group's filter.
        """
        route = "PUT /api/v0/autojobs/{id}/"
        body = {
            "client_id": "me",
            "autojob_id": workergroup_id,
            "endpoint_id": endpoint_id,
            "template_hash": template_hash,
            "template_id": template_id,
            "search_params": search_params,
        }
        self._check_success(route, self._console("PUT", f"/api/v0/autojobs/{workergroup_id}/", body=body))

    def instance(self, instance_id: int) -> dict[str, Any]:
        """Return one instance (`GET /api/v0/instances/{id}/`)."""
        data = self._console("GET", f"/api/v0/instances/{instance_id}/", params={"owner": "me"})
        if isinstance(data, dict) and isinstance(data.get("instances"), dict):
            return dict(data["instances"])
        if isinstance(data, dict) and isinstance(data.get("instances"), list) and data["instances"]:
            return dict(data["instances"][0])
        raise VastError("GET /api/v0/instances/{id}/", f"instance {instance_id} not found")

    def instances(self, instance_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        """Return many instances by id through the paged `GET /api/v1/instances/`."""
        wanted = sorted(set(instance_ids))
        found: dict[int, dict[str, Any]] = {}
        for start in range(0, len(wanted), INSTANCE_PAGE_SIZE):
            chunk = wanted[start : start + INSTANCE_PAGE_SIZE]
            token = None
            while True:
                params = {
                    "select_filters": json.dumps({"id": {"in": chunk}}),
                    "order_by": json.dumps([{"col": "id", "dir": "asc"}]),
                    "limit": str(INSTANCE_PAGE_SIZE),
                }
                if token:
                    params["after_token"] = token
                data = self._console("GET", "/api/v1/instances/", params=params)
                for row in (data or {}).get("instances") or []:
                    if isinstance(row, dict) and "id" in row:
                        found[int(row["id"])] = row
                token = (data or {}).get("next_token")
                if not token:
                    break
        return found

    # Router ---------------------------------------------------------------------------------

    def workergroup_workers(self, workergroup_id: int) -> list[dict[str, Any]]:
        """Return the live workers of a worker group (`POST /get_workergroup_workers/`).

        Raises:
            VastWorkersLoading: Vast returned `{"error_msg": ...}`, as it does while workers load.
        """
        return _worker_list(
            "POST /get_workergroup_workers/", self._router("/get_workergroup_workers/", {"id": workergroup_id})
        )

    def endpoint_workers(self, endpoint_id: int) -> list[dict[str, Any]]:
        """Return the live workers of an endpoint (`POST /get_endpoint_workers/`)."""
        return _worker_list("POST /get_endpoint_workers/", self._router("/get_endpoint_workers/", {"id": endpoint_id}))

    def update_workers(self, workergroup_id: int, *, cancel: bool = False) -> dict[str, Any]:
        """Start (or with cancel, stop) a rolling update of a worker group (`/update_workers/`)."""
        body: dict[str, Any] = {"workergroup_id": workergroup_id}
        if cancel:
            body["cancel_update"] = True
        route = "POST /update_workers/"
        data = self._router("/update_workers/", body)
        if not isinstance(data, dict):
            raise VastError(route, f"unexpected response {str(data)[:200]!r}")
        if data.get("success") is False:
            raise VastError(route, str(data.get("error_msg") or data.get("msg") or "success: false"))
        return data

    def cancel_update(self, workergroup_id: int) -> dict[str, Any]:
        """Ask Vast to stop the rolling update of a worker group."""
        return self.update_workers(workergroup_id, cancel=True)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _saved_template(route: str, data: Any, sent: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise VastError(route, f"unexpected response {str(data)[:200]!r}")
    message = str(data.get("msg") or "")
    template: dict[str, Any] = data["template"] if isinstance(data.get("template"), dict) else {}
    existing = "Existing Template Found" in message
    if data.get("success") is False and not existing:
        raise VastError(route, message or str(data.get("error") or "success: false"))
    saved = {**sent, **template}
    # "No Edits made" responses carry the hash at the top level only.
    if data.get("hash_id") and not template.get("hash_id"):
        saved["hash_id"] = data["hash_id"]
    if not saved.get("hash_id"):
        raise VastError(route, f"the response has no template hash_id ({message or 'no message'})")
    if existing and not template.get("id"):
        found = re.search(r"Existing Template Found: (\d+)", message)
        if found:
            saved["id"] = int(found.group(1))
    return saved


def _worker_list(route: str, data: Any) -> list[dict[str, Any]]:
    if isinstance(data, list):
        workers = data
    elif isinstance(data, dict) and isinstance(data.get("workers"), list):
        workers = data["workers"]
    elif isinstance(data, dict) and data.get("error_msg"):
        raise VastWorkersLoading(route, str(data["error_msg"])[:300])
    else:
        raise VastError(route, f"unexpected worker list {str(data)[:200]!r}")
    return [worker for worker in workers if isinstance(worker, dict) and "id" in worker]
