"""The few Prefect REST calls ogcflow needs, over plain httpx.

Neither the API nor the workers import Prefect (1-2 s of start-up and background machinery): the API
creates, cancels and reads flow runs with these calls; workers poll, claim and drive the runs with them.

Every call is retried over a transient failure, as Prefect's own client does: a connection error (refused,
reset, timed out) or an answer of HTTP 429, 502 or 503 (a SQLite Prefect server answers 503 "database is
locked" under a burst) is tried again after an exponential, jittered wait (a ``Retry-After`` header is
honoured), for at most :attr:`Backoff.budget` seconds in all while Prefect answers it is busy, and
:attr:`Backoff.unreachable` seconds while it does not answer. Only then is the call a
:class:`PrefectUnavailable` (a 503 for the API user). The API also makes fewer calls at once while Prefect
says it is busy (:class:`_Limiter`).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from ogcflow.engines.prefect_deploy import DeploymentSpec, RunPolicy
from ogcflow.errors import ServiceUnavailable
from ogcflow.netpolicy import ssl_context

#: how ogcflow introduces itself: not as a Prefect client (whose versions Prefect's rules tell apart)
USER_AGENT = "ogcflow"

#: Prefect state type -> OGC status
STATE_TO_STATUS = {
    "SCHEDULED": "accepted", "PENDING": "accepted", "PAUSED": "accepted",
    "RUNNING": "running",
    "COMPLETED": "successful",
    "FAILED": "failed", "CRASHED": "failed",
    "CANCELLING": "dismissed", "CANCELLED": "dismissed",
}
FINAL_STATES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})
#: answers that mean "try again later" (Prefect's client retries the same ones)
RETRY_STATUSES = frozenset({429, 502, 503})
#: of which those that Prefect itself gives: it is there, and busy
BUSY_STATUSES = frozenset({429, 503})


class PrefectUnavailable(ServiceUnavailable):
    """Prefect's API cannot be reached or answered with a server error."""


@dataclass(frozen=True)
class PrefectTarget:
    api_url: str
    work_pool: str

    @property
    def ui_url(self) -> str:
        return self.api_url.rstrip("/").removesuffix("/api")


@dataclass(frozen=True)
class Backoff:
    """How a call is retried over transient failures: the n-th wait is ``first * 2**n`` seconds (at most
    ``cap``), drawn within ``jitter`` of it (waits of several clients spread out), or what a ``Retry-After``
    header asks (at least that). No try starts past ``budget`` seconds after the first while Prefect answers
    that it is busy (429, 503: a SQLite Prefect server's "database is locked" under concurrent writes), nor
    past ``unreachable`` seconds while it does not answer (connection refused, reset, timed out; a gateway's
    502)."""

    budget: float = 60.0
    unreachable: float = 10.0
    first: float = 0.05
    cap: float = 1.0
    jitter: float = 0.5

    def tries(self) -> _Tries:
        return _Tries(self)

    def at_most(self, seconds: float) -> Backoff:
        return replace(self, budget=min(self.budget, seconds), unreachable=min(self.unreachable, seconds))


class _Tries:
    """The retries of one call."""

    def __init__(self, backoff: Backoff) -> None:
        self.backoff = backoff
        self.started = self.answered = time.monotonic()
        self.count = 0

    def wait(self, resp: httpx.Response | None, slow: bool = False) -> float | None:
        """Seconds to wait before the next try (``resp``: the retryable answer, None when there was none;
        ``slow``: Prefect took the request but did not answer in time, i.e. it is there and busy); None when
        the budget is spent: ``budget`` seconds since the first try, or ``unreachable`` seconds since Prefect
        last answered."""
        b = self.backoff
        now = time.monotonic()
        after = retry_after(resp.headers.get("retry-after")) if resp is not None else None
        if after is not None:
            delay = after * random.uniform(1.0, 1.0 + b.jitter)  # never sooner than asked
        else:
            delay = min(b.cap, b.first * 2 ** self.count) * random.uniform(1.0 - b.jitter, 1.0 + b.jitter)
        self.count += 1
        if slow or (resp is not None and resp.status_code in BUSY_STATUSES):
            self.answered = now
        if now - self.started + delay > b.budget or now - self.answered + delay > b.unreachable:
            return None
        return delay


def retry_after(value: str | None) -> float | None:
    """Seconds of a ``Retry-After`` header (a number of seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _failed(resp: httpx.Response, what: str) -> PrefectUnavailable:
    return PrefectUnavailable(f"Prefect could not {what}: HTTP {resp.status_code} {resp.text[:300]}")


def _check(resp: httpx.Response, what: str) -> httpx.Response:
    if resp.status_code >= 500:
        raise _failed(resp, what)
    return resp


def _unavailable(target: PrefectTarget, what: str, exc: Exception) -> PrefectUnavailable:
    return PrefectUnavailable(f"Prefect at {target.api_url} is unreachable ({what}: "
                              f"{exc.__class__.__name__}: {exc}); try again later")


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Answer:
    """Prefect's answer to a proposed state (its orchestration result)."""

    #: ACCEPT, REJECT (Prefect chose ``state_type``/``state_name`` instead), WAIT (propose again after
    #: ``delay`` seconds) or ABORT (stop driving this run)
    status: str
    #: the run's state after the answer (for a REJECT, the state Prefect put the run in)
    state_type: str = ""
    state_name: str = ""
    message: str | None = None
    #: a SCHEDULED state's start time (AwaitingRetry, AwaitingConcurrencySlot...)
    scheduled_time: datetime | None = None
    delay: float = 0.0
    reason: str = ""

    @property
    def accepted(self) -> bool:
        return self.status == "ACCEPT"

    def describe(self) -> str:
        """What Prefect said, for messages: 'REJECT into AwaitingRetry: Retrying'."""
        into = f" into {self.state_name or self.state_type}" if self.status == "REJECT" else ""
        return f"{self.status}{into}" + (f": {self.reason}" if self.reason else "")

    @classmethod
    def of(cls, resp: httpx.Response, transition_id: str) -> Answer:
        try:
            body = resp.json()
        except ValueError:
            body = None
        if resp.status_code == 404:
            return cls("ABORT", reason="Prefect has no such flow run")
        if not isinstance(body, dict) or "status" not in body:
            return cls("ABORT", reason=f"Prefect answered HTTP {resp.status_code} {resp.text[:300]}")
        state = body.get("state") or {}
        details = body.get("details") or {}
        status = str(body["status"])
        state_details = state.get("state_details") or {}
        if status == "REJECT" and state_details.get("transition_id") == transition_id:
            status = "ACCEPT"  # a retried proposal that Prefect had taken: the run is in our state
        return cls(status=status, state_type=str(state.get("type") or ""), state_name=str(state.get("name") or ""),
                   message=state.get("message"), scheduled_time=_time(state_details.get("scheduled_time")),
                   delay=float(details.get("delay_seconds") or 0), reason=str(details.get("reason") or ""))


def state_body(state_type: str, *, name: str | None = None, message: str | None = None,
               scheduled_time: datetime | None = None, transition_id: str | None = None) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if scheduled_time is not None:
        details["scheduled_time"] = scheduled_time.astimezone(UTC).isoformat()
    if transition_id is not None:
        details["transition_id"] = transition_id
    state: dict[str, Any] = {"type": state_type, "name": name or state_type.capitalize(),
                             "state_details": details}
    if message:
        state["message"] = message[:5000]
    return state


class PrefectSync:
    """Blocking calls (workers, start-up)."""

    def __init__(self, target: PrefectTarget, timeout: float = 10.0, backoff: Backoff | None = None) -> None:
        self.target = target
        self.backoff = backoff or Backoff()
        self.http = httpx.Client(base_url=target.api_url.rstrip("/") + "/", timeout=timeout,
                                 headers={"User-Agent": USER_AGENT},
                                 verify=ssl_context())  # built once per worker, inherited by job processes

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, what: str, **kw: Any) -> httpx.Response:
        tries = self.backoff.tries()
        while True:
            try:
                resp = self.http.request(method, path, **kw)
            except httpx.TransportError as exc:
                delay = tries.wait(None, slow=isinstance(exc, httpx.ReadTimeout))
                if delay is None:
                    raise _unavailable(self.target, what, exc) from None
            except httpx.HTTPError as exc:
                raise _unavailable(self.target, what, exc) from None
            else:
                if resp.status_code not in RETRY_STATUSES:
                    return _check(resp, what)
                delay = tries.wait(resp)
                if delay is None:
                    raise _failed(resp, what)
            time.sleep(delay)

    def ensure_pool(self) -> None:
        """The work pool of ogcflow's workers, created when missing."""
        pool = self.target.work_pool
        if self._call("GET", f"work_pools/{pool}", "read the work pool").status_code == 404:
            resp = self._call("POST", "work_pools/", "create the work pool",
                              json={"name": pool, "type": "ogcflow",
                                    "description": "ogcflow workers (`ogcflow worker`) take runs from here"})
            if resp.status_code not in (200, 201, 409):
                raise PrefectUnavailable(f"Prefect refused the work pool: {resp.text[:300]}")

    def ensure_deployment(self, spec: DeploymentSpec, known: dict[str, Any] | None = None) -> str:
        """The deployment of ``spec`` (created when missing, brought up to date when it differs); its id.
        ``known``: the deployment as read already, if it was."""
        found = known
        if found is None:
            resp = self._call("GET", f"deployments/name/{spec.flow}/{spec.name}", "read the deployment")
            found = resp.json() if resp.status_code == 200 else None
        if found is not None:
            have = {"description": found.get("description"), "tags": found.get("tags"),
                    "parameter_openapi_schema": found.get("parameter_openapi_schema")}
            want = spec.update()
            if spec.work_queue:
                have["work_queue_name"] = found.get("work_queue_name")
            if have != want:
                resp = self._call("PATCH", f"deployments/{found['id']}", "update the deployment", json=want)
                if resp.status_code not in (200, 204):
                    raise PrefectUnavailable(f"Prefect refused the deployment: {resp.text[:300]}")
            return str(found["id"])
        flow = self._call("POST", "flows/", "create the flow", json={"name": spec.flow, "tags": [spec.tags[0]]})
        dep = self._call("POST", "deployments/", "create the deployment", json=spec.body(flow.json()["id"]))
        if dep.status_code in (404, 409, 422):  # (no such work pool yet)
            self.ensure_pool()
            dep = self._call("POST", "deployments/", "create the deployment", json=spec.body(flow.json()["id"]))
        if dep.status_code not in (200, 201):
            raise PrefectUnavailable(f"Prefect refused the deployment: {dep.text[:300]}")
        return str(dep.json()["id"])

    def deployments(self, tag: str) -> list[dict[str, Any]]:
        """The deployments of the work pool with this tag."""
        resp = self._call("POST", "deployments/filter", "read deployments",
                          json={"deployments": {"tags": {"all_": [tag]}},
                                "work_pools": {"name": {"any_": [self.target.work_pool]}}, "limit": 200})
        return list(resp.json()) if resp.status_code == 200 else []

    def deployment(self, deployment_id: str) -> dict[str, Any] | None:
        resp = self._call("GET", f"deployments/{deployment_id}", "read a deployment")
        return resp.json() if resp.status_code == 200 else None

    def heartbeat(self, worker: str, interval: float) -> None:
        """Tell Prefect this worker is alive: the pool is Ready and lists it."""
        self._call("POST", f"work_pools/{self.target.work_pool}/workers/heartbeat", "send a worker heartbeat",
                   json={"name": worker, "heartbeat_interval_seconds": int(interval)})

    def set_policy(self, run_id: str, policy: RunPolicy) -> None:
        """The retries of a flow run (Prefect retries a run that fails while it has some left)."""
        self._call("PATCH", f"flow_runs/{run_id}", "set a flow run's retries",
                   json={"empirical_policy": policy.empirical_policy()})

    def create_artifact(self, run_id: str, kind: str, data: Any, description: str | None = None,
                        key: str | None = None) -> str | None:
        """An artifact of a flow run (progress, markdown, link...); its id."""
        body: dict[str, Any] = {"type": kind, "data": data, "flow_run_id": run_id}
        if description:
            body["description"] = description
        if key:
            body["key"] = key
        resp = self._call("POST", "artifacts/", "create an artifact", json=body)
        return str(resp.json()["id"]) if resp.status_code in (200, 201) else None

    def create_task_run(self, run_id: str, name: str) -> str | None:
        """A task run of the flow run, Running; its id."""
        body = {"flow_run_id": run_id, "name": name, "task_key": f"cwl-{name}", "dynamic_key": name,
                "state": state_body("RUNNING")}
        resp = self._call("POST", "task_runs/", "create a task run", json=body)
        return str(resp.json()["id"]) if resp.status_code in (200, 201) else None

    def end_task_run(self, task_run_id: str, state_type: str, message: str | None = None) -> None:
        self._call("POST", f"task_runs/{task_run_id}/set_state", "end a task run",
                   json={"state": state_body(state_type, message=message), "force": True})

    def update_artifact(self, artifact_id: str, data: Any) -> None:
        self._call("PATCH", f"artifacts/{artifact_id}", "update an artifact", json={"data": data})

    def scheduled_runs(self, limit: int, before: datetime | None = None) -> list[dict[str, Any]]:
        """Runs of the work pool that may start now (scheduled up to ``before``, default now), oldest
        first. Prefect leaves out the runs of paused pools and queues and what their concurrency limits do
        not allow."""
        when = (before or datetime.now(UTC)).astimezone(UTC).isoformat()
        resp = self._call("POST", f"work_pools/{self.target.work_pool}/get_scheduled_flow_runs",
                          "poll for flow runs", json={"limit": limit, "scheduled_before": when})
        if resp.status_code != 200:
            raise PrefectUnavailable(f"Prefect refused the poll: HTTP {resp.status_code} {resp.text[:300]}")
        return [item["flow_run"] for item in resp.json()]

    def set_state(self, run_id: str, state_type: str, *, name: str | None = None, message: str | None = None,
                  scheduled_time: datetime | None = None, force: bool = False) -> Answer:
        """Propose a state; Prefect's answer. A proposal retried over a lost answer is recognised by its
        transition id (Prefect rejects the duplicate with the run's state: ours)."""
        transition_id = str(uuid.uuid4())
        body = {"state": state_body(state_type, name=name, message=message, scheduled_time=scheduled_time,
                                    transition_id=transition_id), "force": force}
        resp = self._call("POST", f"flow_runs/{run_id}/set_state", "set a flow run state", json=body)
        return Answer.of(resp, transition_id)

    def states(self, run_ids: list[str]) -> dict[str, str]:
        """Flow run id -> state type, for the given runs."""
        return {run_id: (run.get("state") or {}).get("type", "") for run_id, run in self.runs(run_ids).items()}

    def runs(self, run_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Flow run id -> flow run, for the given runs."""
        if not run_ids:
            return {}
        resp = self._call("POST", "flow_runs/filter", "read flow runs",
                          json={"flow_runs": {"id": {"any_": run_ids}}, "limit": len(run_ids)})
        return {str(r["id"]): r for r in resp.json()}

    def runs_in(self, state_types: list[str], names: list[str] | None = None,
                limit: int = 200) -> list[dict[str, Any]]:
        """Flow runs of ogcflow deployments of the work pool in these states (and with these state names),
        oldest first."""
        state: dict[str, Any] = {"type": {"any_": state_types}}
        if names:
            state["name"] = {"any_": names}
        resp = self._call("POST", "flow_runs/filter", "read flow runs",
                          json={"flow_runs": {"state": state, "tags": {"all_": ["ogcflow"]}},
                                "work_pools": {"name": {"any_": [self.target.work_pool]}},
                                "sort": "EXPECTED_START_TIME_ASC", "limit": limit})
        if resp.status_code != 200:
            raise PrefectUnavailable(f"Prefect refused the filter: HTTP {resp.status_code} {resp.text[:300]}")
        return list(resp.json())

    def post_logs(self, run_id: str, records: list[tuple[float, int, str, str]]) -> None:
        """Send log lines (time, level, logger name, message) of a flow run to Prefect."""
        if not records:
            return
        body = [{"name": name, "level": level, "message": message[:20000], "flow_run_id": run_id,
                 "task_run_id": None, "timestamp": datetime.fromtimestamp(when, UTC).isoformat()}
                for when, level, name, message in records]
        self._call("POST", "logs/", "send logs", json=body)


class _Limiter:
    """How many calls one API process makes to Prefect at once: as many as ``most`` while Prefect keeps up,
    halved (down to 1) by every "overloaded" answer (429, 503), one more again after about ``limit``
    answers that came through. Concurrent writes are what a SQLite Prefect server answers 503 to ("database
    is locked"): a burst of submissions then reaches it in turn instead of failing in retries."""

    def __init__(self, most: int = 8) -> None:
        self.most = most
        self.limit = float(most)
        self.busy = 0
        self.cond = asyncio.Condition()

    async def acquire(self) -> None:
        async with self.cond:
            await self.cond.wait_for(lambda: self.busy < int(self.limit))
            self.busy += 1

    async def release(self, overloaded: bool | None) -> None:
        """``overloaded``: None when the call had no answer (a connection error says nothing of load)."""
        async with self.cond:
            self.busy -= 1
            if overloaded:
                self.limit = max(1.0, self.limit / 2)
            elif overloaded is not None:
                self.limit = min(float(self.most), self.limit + 1 / self.limit)
            self.cond.notify_all()


class PrefectAsync:
    """Non-blocking calls (the API)."""

    def __init__(self, target: PrefectTarget, timeout: float = 10.0, backoff: Backoff | None = None,
                 concurrency: int = 8) -> None:
        self.target = target
        self.backoff = backoff or Backoff()
        self.http = httpx.AsyncClient(base_url=target.api_url.rstrip("/") + "/", timeout=timeout,
                                      headers={"User-Agent": USER_AGENT})
        self.limiter = _Limiter(concurrency)
        self._deployments: dict[tuple[str, str], tuple[str, str]] = {}  # key -> (id, fingerprint)
        self._deployment_lock = asyncio.Lock()

    async def _call(self, method: str, path: str, what: str, **kw: Any) -> httpx.Response:
        tries: _Tries | None = None
        while True:
            await self.limiter.acquire()
            tries = tries or self.backoff.tries()  # the budget starts with the first try, not in the queue
            overloaded: bool | None = None
            try:
                resp = await self.http.request(method, path, **kw)
            except httpx.TransportError as exc:
                delay = tries.wait(None, slow=isinstance(exc, httpx.ReadTimeout))
                if delay is None:
                    raise _unavailable(self.target, what, exc) from None
            except httpx.HTTPError as exc:
                raise _unavailable(self.target, what, exc) from None
            else:
                overloaded = resp.status_code in BUSY_STATUSES
                if resp.status_code not in RETRY_STATUSES:
                    return _check(resp, what)
                delay = tries.wait(resp)
                if delay is None:
                    raise _failed(resp, what)
            finally:
                await self.limiter.release(overloaded)
            await asyncio.sleep(delay)

    async def deployment_id(self, spec: DeploymentSpec) -> str:
        """The id of the deployment of ``spec`` (made or updated once per API process and description)."""
        key, fingerprint = spec.key, spec.fingerprint
        known = self._deployments.get(key)
        if known is not None and known[1] == fingerprint:
            return known[0]
        async with self._deployment_lock:  # the first submissions of a burst make it once
            known = self._deployments.get(key)
            if known is not None and known[1] == fingerprint:
                return known[0]
            sync = PrefectSync(self.target, backoff=self.backoff)
            try:
                dep_id = await asyncio.to_thread(sync.ensure_deployment, spec)
            finally:
                sync.close()
            self._deployments[key] = (dep_id, fingerprint)
            return dep_id

    async def create_run(self, job_id: str, spec: DeploymentSpec, parameters: dict[str, Any],
                         policy: RunPolicy) -> str:
        """A flow run of the job (created once: its idempotency key is the job id, so a retried creation
        gives the same run), its parameters the job's inputs."""
        dep = await self.deployment_id(spec)
        body: dict[str, Any] = {"name": job_id, "parameters": parameters, "idempotency_key": job_id,
                                "tags": ["ogcflow", f"process:{spec.process_id}", f"namespace:{spec.namespace}"]}
        if policy.retries:
            body["empirical_policy"] = policy.empirical_policy()
        if policy.work_queue:
            body["work_queue_name"] = policy.work_queue
        resp = await self._call("POST", f"deployments/{dep}/create_flow_run", "create a flow run", json=body)
        if resp.status_code == 404:  # the deployment was deleted: recreate it once
            self._deployments.pop(spec.key, None)
            dep = await self.deployment_id(spec)
            resp = await self._call("POST", f"deployments/{dep}/create_flow_run", "create a flow run", json=body)
        if resp.status_code not in (200, 201):
            raise PrefectUnavailable(f"Prefect refused the flow run: HTTP {resp.status_code} {resp.text[:300]}")
        return str(resp.json()["id"])

    async def cancel(self, run_id: str, *, started: bool) -> None:
        """Cancel a flow run: Cancelling while a worker runs it (the worker stops it and marks it
        Cancelled), Cancelled at once when it never started."""
        state = "CANCELLING" if started else "CANCELLED"
        await self._call("POST", f"flow_runs/{run_id}/set_state", "cancel a flow run",
                         json={"state": state_body(state, message="dismissed through the OGC API",
                                                   transition_id=str(uuid.uuid4())), "force": True})

    async def state(self, run_id: str) -> tuple[str, str | None] | None:
        """(state type, message) of a flow run; None when Prefect does not know it."""
        resp = await self._call("GET", f"flow_runs/{run_id}", "read a flow run")
        if resp.status_code == 404:
            return None
        state = resp.json().get("state") or {}
        return state.get("type", ""), state.get("message")

    async def health(self) -> None:
        await self._call("GET", "health", "check its health")


# -- Prefect deployments as OGC processes (engines/native.py) ------------------------------------------

def read_deployment(api: PrefectSync, name: str) -> dict[str, Any] | None:
    """A deployment by ``<flow name>/<deployment name>`` or by id; None when Prefect has none."""
    flow, sep, dep = name.partition("/")
    path = f"deployments/name/{flow}/{dep}" if sep else f"deployments/{name}"
    resp = api._call("GET", path, "read the deployment")
    if resp.status_code in (404, 422):
        return None
    if resp.status_code != 200:
        raise PrefectUnavailable(f"Prefect refused the deployment: HTTP {resp.status_code} {resp.text[:300]}")
    return dict(resp.json())


def create_deployment_run(api: PrefectSync, deployment_id: str, *, name: str, parameters: dict[str, Any],
                          tags: list[str], idempotency_key: str, job_variables: dict[str, Any]) -> dict[str, Any]:
    """A flow run of a deployment (created once per idempotency key: a retried creation gives the same run).
    A parameter Prefect refuses (the deployment enforces its schema) is a ``ValueError``."""
    body = {"name": name, "parameters": parameters, "tags": tags, "idempotency_key": idempotency_key,
            "job_variables": job_variables}
    resp = api._call("POST", f"deployments/{deployment_id}/create_flow_run", "create a flow run", json=body)
    if resp.status_code in (400, 409, 422):
        raise ValueError(f"Prefect refused the flow run: {resp.text[:500]}")
    if resp.status_code not in (200, 201):
        raise PrefectUnavailable(f"Prefect refused the flow run: HTTP {resp.status_code} {resp.text[:300]}")
    return dict(resp.json())


def read_run(api: PrefectSync, run_id: str) -> dict[str, Any] | None:
    """A flow run; None when Prefect has none."""
    resp = api._call("GET", f"flow_runs/{run_id}", "read a flow run")
    return dict(resp.json()) if resp.status_code == 200 else None


def runs_tagged(api: PrefectSync, tag: str, limit: int = 20) -> list[dict[str, Any]]:
    """The flow runs that carry a tag."""
    resp = api._call("POST", "flow_runs/filter", "read flow runs",
                     json={"flow_runs": {"tags": {"all_": [tag]}}, "limit": limit})
    if resp.status_code != 200:
        raise PrefectUnavailable(f"Prefect refused the filter: HTTP {resp.status_code} {resp.text[:300]}")
    return list(resp.json())
