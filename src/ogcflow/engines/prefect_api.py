"""The few Prefect REST calls ogcflow needs, over plain httpx.

Neither the API nor the workers import Prefect (1-2 s of start-up and background machinery): the API
creates, cancels and reads flow runs with these calls; workers poll, claim and drive the runs with them.
Any connection failure or server error is a 503 for the API user.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from ogcflow.errors import ServiceUnavailable
from ogcflow.netpolicy import ssl_context

FLOW_NAME = "ogcflow-job"
#: what executes the deployment's runs (shown in Prefect; runs are executed by `ogcflow worker`)
ENTRYPOINT = "ogcflow.engines.prefect:PrefectRuns"

#: Prefect state type -> OGC status
STATE_TO_STATUS = {
    "SCHEDULED": "accepted", "PENDING": "accepted", "PAUSED": "accepted",
    "RUNNING": "running",
    "COMPLETED": "successful",
    "FAILED": "failed", "CRASHED": "failed",
    "CANCELLING": "dismissed", "CANCELLED": "dismissed",
}


class PrefectUnavailable(ServiceUnavailable):
    """Prefect's API cannot be reached or answered with a server error."""


@dataclass(frozen=True)
class PrefectTarget:
    api_url: str
    work_pool: str

    @property
    def ui_url(self) -> str:
        return self.api_url.rstrip("/").removesuffix("/api")


def _check(resp: httpx.Response, what: str) -> httpx.Response:
    if resp.status_code >= 500:
        raise PrefectUnavailable(f"Prefect could not {what}: HTTP {resp.status_code} {resp.text[:300]}")
    return resp


def _unavailable(target: PrefectTarget, what: str, exc: Exception) -> PrefectUnavailable:
    return PrefectUnavailable(f"Prefect at {target.api_url} is unreachable ({what}: "
                              f"{exc.__class__.__name__}: {exc}); try again later")


def _deployment_body(flow_id: str, target: PrefectTarget) -> dict[str, Any]:
    return {"name": target.work_pool, "flow_id": flow_id, "work_pool_name": target.work_pool,
            "entrypoint": ENTRYPOINT, "description": "Jobs of the ogcflow OGC API - Processes server",
            "tags": ["ogcflow"], "enforce_parameter_schema": False}


class PrefectSync:
    """Blocking calls (workers, start-up)."""

    def __init__(self, target: PrefectTarget, timeout: float = 10.0) -> None:
        self.target = target
        self.http = httpx.Client(base_url=target.api_url.rstrip("/") + "/", timeout=timeout,
                                 verify=ssl_context())  # built once per worker, inherited by job processes

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, what: str, **kw: Any) -> httpx.Response:
        try:
            return _check(self.http.request(method, path, **kw), what)
        except httpx.HTTPError as exc:
            raise _unavailable(self.target, what, exc) from None

    def ensure_deployment(self) -> str:
        """The work pool and the deployment of ogcflow jobs in it (``ogcflow-job/<pool>``), created when
        missing; the deployment id."""
        pool = self.target.work_pool
        if self._call("GET", f"work_pools/{pool}", "read the work pool").status_code == 404:
            resp = self._call("POST", "work_pools/", "create the work pool",
                              json={"name": pool, "type": "ogcflow",
                                    "description": "ogcflow workers (`ogcflow worker`) take runs from here"})
            if resp.status_code not in (200, 201, 409):
                raise PrefectUnavailable(f"Prefect refused the work pool: {resp.text[:300]}")
        resp = self._call("GET", f"deployments/name/{FLOW_NAME}/{pool}", "read the deployment")
        if resp.status_code == 200:
            return str(resp.json()["id"])
        flow = self._call("POST", "flows/", "create the flow", json={"name": FLOW_NAME, "tags": ["ogcflow"]})
        dep = self._call("POST", "deployments/", "create the deployment",
                         json=_deployment_body(flow.json()["id"], self.target))
        if dep.status_code not in (200, 201):
            raise PrefectUnavailable(f"Prefect refused the deployment: {dep.text[:300]}")
        return str(dep.json()["id"])

    def scheduled_runs(self, limit: int) -> list[dict[str, Any]]:
        resp = self._call("POST", f"work_pools/{self.target.work_pool}/get_scheduled_flow_runs",
                          "poll for flow runs", json={"limit": limit})
        if resp.status_code != 200:
            raise PrefectUnavailable(f"Prefect refused the poll: HTTP {resp.status_code} {resp.text[:300]}")
        return [item["flow_run"] for item in resp.json()]

    def set_state(self, run_id: str, state_type: str, *, message: str | None = None,
                  force: bool = False) -> str:
        """Propose a state; Prefect's answer: ACCEPT, REJECT, ABORT or WAIT."""
        state: dict[str, Any] = {"type": state_type, "name": state_type.capitalize()}
        if message:
            state["message"] = message[:5000]
        resp = self._call("POST", f"flow_runs/{run_id}/set_state", "set a flow run state",
                          json={"state": state, "force": force})
        if resp.status_code == 404:
            return "ABORT"
        return str(resp.json().get("status", "REJECT"))

    def states(self, run_ids: list[str]) -> dict[str, str]:
        """Flow run id -> state type, for the given runs."""
        if not run_ids:
            return {}
        resp = self._call("POST", "flow_runs/filter", "read flow runs",
                          json={"flow_runs": {"id": {"any_": run_ids}}, "limit": len(run_ids)})
        return {str(r["id"]): (r.get("state") or {}).get("type", "") for r in resp.json()}

    def post_logs(self, run_id: str, records: list[tuple[float, int, str, str]]) -> None:
        """Send log lines (time, level, logger name, message) of a flow run to Prefect."""
        from datetime import UTC, datetime

        if not records:
            return
        body = [{"name": name, "level": level, "message": message[:20000], "flow_run_id": run_id,
                 "task_run_id": None, "timestamp": datetime.fromtimestamp(when, UTC).isoformat()}
                for when, level, name, message in records]
        self._call("POST", "logs/", "send logs", json=body)


class PrefectAsync:
    """Non-blocking calls (the API)."""

    def __init__(self, target: PrefectTarget, timeout: float = 10.0) -> None:
        self.target = target
        self.http = httpx.AsyncClient(base_url=target.api_url.rstrip("/") + "/", timeout=timeout)
        self._deployment_id: str | None = None

    async def _call(self, method: str, path: str, what: str, **kw: Any) -> httpx.Response:
        try:
            return _check(await self.http.request(method, path, **kw), what)
        except httpx.HTTPError as exc:
            raise _unavailable(self.target, what, exc) from None

    async def deployment_id(self) -> str:
        if self._deployment_id is None:
            import asyncio

            sync = PrefectSync(self.target)
            try:
                self._deployment_id = await asyncio.to_thread(sync.ensure_deployment)
            finally:
                sync.close()
        return self._deployment_id

    async def create_run(self, job_id: str, process_id: str, namespace: str) -> str:
        dep = await self.deployment_id()
        body = {"name": job_id, "parameters": {"job_id": job_id},
                "tags": ["ogcflow", f"process:{process_id}", f"namespace:{namespace}"],
                "idempotency_key": job_id}
        resp = await self._call("POST", f"deployments/{dep}/create_flow_run", "create a flow run", json=body)
        if resp.status_code == 404:  # the deployment was deleted: recreate it once
            self._deployment_id = None
            dep = await self.deployment_id()
            resp = await self._call("POST", f"deployments/{dep}/create_flow_run", "create a flow run", json=body)
        if resp.status_code not in (200, 201):
            raise PrefectUnavailable(f"Prefect refused the flow run: HTTP {resp.status_code} {resp.text[:300]}")
        return str(resp.json()["id"])

    async def cancel(self, run_id: str, *, started: bool) -> None:
        """Cancel a flow run: Cancelling while a worker runs it (the worker stops it and marks it
        Cancelled), Cancelled at once when it never started."""
        state = "CANCELLING" if started else "CANCELLED"
        await self._call("POST", f"flow_runs/{run_id}/set_state", "cancel a flow run",
                         json={"state": {"type": state, "name": state.capitalize(),
                                         "message": "dismissed through the OGC API"}, "force": True})

    async def state(self, run_id: str) -> tuple[str, str | None] | None:
        """(state type, message) of a flow run; None when Prefect does not know it."""
        resp = await self._call("GET", f"flow_runs/{run_id}", "read a flow run")
        if resp.status_code == 404:
            return None
        state = resp.json().get("state") or {}
        return state.get("type", ""), state.get("message")

    async def health(self) -> None:
        await self._call("GET", "health", "check its health")
