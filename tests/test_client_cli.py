"""The client CLI (``ogcflow client`` / ``ogcflow-client``) end to end, as a subprocess, against a running
ogcflow (with API keys) and against pygeoapi (bench/'s peer)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server import Server

ROOT = Path(__file__).resolve().parent.parent
SHOUT = """
cwlVersion: v1.2
class: CommandLineTool
id: shout
label: Shout
doc: Writes its text in capitals to a file.
baseCommand: [sh, -c]
arguments: ['echo "$0" | tr a-z A-Z > out.txt', $(inputs.text)]
inputs:
  text: {type: string}
outputs:
  shouted: {type: File, outputBinding: {glob: out.txt}}
"""


def cli(*args: str, env: dict[str, str] | None = None, entry: str = "ogcflow", timeout: float = 120,
        ok: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the client as a user would: ``ogcflow client ...`` or the ``ogcflow-client`` entry point."""
    if entry == "ogcflow":
        cmd = [sys.executable, "-m", "ogcflow", "client", *args]
    else:
        cmd = [sys.executable, "-c", "from ogcflow.client.cli import run; run()", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})
    if ok:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def as_json(done: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    """ogcflow with an API key of a deployer (credentials required once a key exists)."""
    srv = Server(tmp_path_factory.mktemp("client"), env={"OGCFLOW_DEFAULT_PACKAGES": "[]",
                                                          "OGCFLOW_METRICS_TOKEN": "m-token"}, workers=2)
    done = subprocess.run([sys.executable, "-m", "ogcflow", "apikey", "create", "--namespace", "default", "--role",
                           "deployer"], env=srv.env, capture_output=True, text=True, check=True, timeout=60)
    key = done.stdout.strip().splitlines()[-1]
    srv.start()
    yield srv, key
    srv.stop()


def test_version() -> None:
    from ogcflow import __version__

    assert cli("--version").stdout.strip() == f"ogcflow-client {__version__}"  # ogcflow client --version
    top = subprocess.run([sys.executable, "-m", "ogcflow", "--version"], capture_output=True, text=True, check=True)
    assert top.stdout.strip() == f"ogcflow {__version__}"
    assert cli("--version", entry="ogcflow-client").stdout.strip() == f"ogcflow-client {__version__}"


def test_client_imports_nothing_of_the_server() -> None:
    code = ("import sys, ogcflow.client.cli; print(sorted(m for m in ('fastapi', 'starlette', 'sqlalchemy', "
            "'pydantic', 'cwltool', 'rasterio', 'numpy', 's3fs', 'prometheus_client', 'ogcflow.settings') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_credentials_processes_describe_and_sync_execution(keyed: tuple[Server, str]) -> None:
    srv, key = keyed
    denied = cli("--url", srv.url, "processes", ok=False)
    assert denied.returncode == 1 and "HTTP 401" in denied.stderr
    env = {"OGCFLOW_URL": srv.url, "OGCFLOW_API_KEY": key}
    listed = as_json(cli("-o", "json", "processes", env=env))
    assert {"echo", "hello-world", "sleep"} <= {p["id"] for p in listed}
    assert "hello-world" in cli("processes", env=env).stdout  # the table
    # a bearer token works as well (an API key sent as one), from a flag
    assert as_json(cli("--url", srv.url, "--token", key, "-o", "json", "describe", "echo"))["id"] == "echo"
    text = cli("describe", "sleep", env=env).stdout
    assert "seconds" in text and "number" in text and "slept" in text
    assert "Hello CLI" in cli("execute", "hello-world", "-i", "name=CLI", env=env, entry="ogcflow-client").stdout
    missing = cli("execute", "sleep", env=env, ok=False)
    assert missing.returncode == 1 and "HTTP 400" in missing.stderr and "seconds" in missing.stderr


def test_execute_with_flags_and_a_yaml_file(keyed: tuple[Server, str], tmp_path: Path) -> None:
    srv, key = keyed
    env = {"OGCFLOW_URL": srv.url, "OGCFLOW_API_KEY": key, "OGCFLOW_OUTPUT": "json"}
    inputs = tmp_path / "inputs.yaml"
    inputs.write_text("inputs:\n  stringInput: Value1\n  integerInput: 3\n  arrayInput: [1, 2]\n")
    doc = as_json(cli("execute", "echo", "--inputs", str(inputs), "-i", "integerInput=7", "-i", "booleanInput=true",
                      "-i", 'complexObjectInput={"property1": "a", "property5": true}', "--response", "document",
                      env=env))
    assert doc["stringInput"] in ("Value1", {"value": "Value1", "mediaType": "text/plain"})
    assert doc["integerInput"] == 7 and doc["booleanInput"] is True
    assert doc["arrayInput"] == [1, 2] and '"property1": "a"' in json.dumps(doc["complexObjectInput"])
    bad = cli("execute", "echo", "-i", "novalue", env=env, ok=False)
    assert bad.returncode == 2 and "name=value" in bad.stderr


def test_async_watch_results_and_download(keyed: tuple[Server, str], tmp_path: Path) -> None:
    srv, key = keyed
    env = {"OGCFLOW_URL": srv.url, "OGCFLOW_API_KEY": key}
    job = as_json(cli("-o", "json", "execute", "sleep", "--async", "-i", "seconds=8", env=env))
    assert job["status"] in ("accepted", "running")
    started = time.monotonic()
    watched = cli("watch", job["jobID"], env=env)
    elapsed = time.monotonic() - started
    assert "successful" in watched.stderr and "slept" in watched.stderr  # the bar's line and the messages
    # at most one request a second: the server's log of requests says how many the watch made
    lines = cli("-o", "json", "watch", job["jobID"], env=env).stdout.splitlines()
    assert json.loads(lines[-1])["status"] == "successful"
    assert elapsed < 30
    status = as_json(cli("-o", "json", "status", job["jobID"], env=env))
    assert status["status"] == "successful" and status["progress"] == 100
    assert as_json(cli("-o", "json", "results", job["jobID"], env=env))["slept"] >= 3
    # an output by reference, downloaded through its href (with the credentials: the server's own origin)
    body = tmp_path / "request.json"
    body.write_text(json.dumps({"inputs": {"imageInput": {"value": "aGVsbG8=", "mediaType": "image/png"}},
                                "outputs": {"imageInput": {"transmissionMode": "reference"}}}))
    created = as_json(cli("-o", "json", "execute", "echo", "-f", str(body), "--async", env=env))
    cli("watch", created["jobID"], env=env)
    out = tmp_path / "out"
    cli("results", created["jobID"], "--download", str(out), env=env)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert "results.json" in files and len(files) == 2, files
    assert (out / next(f for f in files if f != "results.json")).read_bytes() == b"hello"


def test_watch_keeps_to_one_request_a_second(keyed: tuple[Server, str]) -> None:
    srv, key = keyed
    env = {"OGCFLOW_URL": srv.url, "OGCFLOW_API_KEY": key}
    job = as_json(cli("-o", "json", "execute", "sleep", "--async", "-i", "seconds=12", env=env))

    def polls() -> float:
        text = httpx.get(srv.url + "/metrics", headers={"Authorization": "Bearer m-token"}).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("ogcflow_http_requests_total{") and 'route="/jobs/{jobId}"' in line
                   and 'method="GET"' in line)

    before = polls()
    started = time.monotonic()
    cli("watch", job["jobID"], "--interval", "0.1", env=env)  # asked for 10/s: gets 1/s
    elapsed = time.monotonic() - started
    made = polls() - before
    assert made <= elapsed + 1, (made, elapsed)
    assert made >= 1


def test_dismiss_and_watch_of_a_dismissed_job(keyed: tuple[Server, str]) -> None:
    srv, key = keyed
    env = {"OGCFLOW_URL": srv.url, "OGCFLOW_API_KEY": key}
    job = as_json(cli("-o", "json", "execute", "sleep", "--async", "-i", "seconds=60", env=env))
    assert as_json(cli("-o", "json", "dismiss", job["jobID"], env=env))["status"] == "dismissed"
    watched = cli("watch", f"{srv.url}/jobs/{job['jobID']}", env=env, ok=False)  # a job URL works as its id
    assert watched.returncode == 1 and "dismissed" in watched.stderr


def test_deploy_execute_watch_download_undeploy(keyed: tuple[Server, str], tmp_path: Path) -> None:
    srv, key = keyed
    env = {"OGCFLOW_URL": srv.url, "OGCFLOW_API_KEY": key}
    package = tmp_path / "shout.cwl"
    package.write_text(SHOUT)
    assert "deployed shout" in cli("deploy", str(package), env=env).stdout
    assert "shout" in {p["id"] for p in as_json(cli("-o", "json", "processes", env=env))}
    results = json.loads(cli("-o", "json", "execute", "shout", "--async", "-i", "text=quiet words", "--watch",
                          env=env, timeout=300).stdout.strip())
    assert "shouted" in results
    job = as_json(cli("-o", "json", "jobs", "--limit", "1", env=env))[0]["jobID"]
    out = tmp_path / "dl"
    cli("results", job, "--download", str(out), env=env)
    texts = [p.read_text() for p in out.rglob("*.txt")]
    assert texts == ["QUIET WORDS\n"], texts
    replaced = package.with_name("shout2.cwl")
    replaced.write_text(SHOUT.replace("label: Shout", "label: Shout louder"))
    cli("deploy", str(replaced), "--replace", "shout", env=env)
    assert as_json(cli("-o", "json", "describe", "shout", env=env))["title"] == "Shout louder"
    cli("undeploy", "shout", env=env)
    gone = cli("describe", "shout", env=env, ok=False)
    assert gone.returncode == 1 and "HTTP 404" in gone.stderr


# -- against pygeoapi ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pygeoapi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    sys.path.insert(0, str(ROOT))
    from bench.common import start_pygeoapi

    svc = start_pygeoapi(tmp_path_factory.mktemp("pygeoapi"))
    yield svc.url
    svc.stop()


def test_against_pygeoapi(pygeoapi: str, tmp_path: Path) -> None:
    env = {"OGCFLOW_URL": pygeoapi}
    assert "hello-world" in {p["id"] for p in as_json(cli("-o", "json", "processes", env=env))}
    assert "name" in cli("describe", "hello-world", env=env).stdout
    sync = cli("-o", "json", "execute", "hello-world", "-i", "name=pygeoapi", "-i", "message=hi", env=env)
    assert "Hello pygeoapi" in sync.stdout
    job = as_json(cli("-o", "json", "execute", "hello-world", "--async", "-i", "name=later", env=env))
    job_id = job.get("jobID") or job["location"].rstrip("/").rsplit("/", 1)[-1]
    cli("watch", job_id, env=env)
    assert as_json(cli("-o", "json", "status", job_id, env=env))["status"] == "successful"
    assert "Hello later" in cli("-o", "json", "results", job_id, env=env).stdout
    out = tmp_path / "dl"
    cli("results", job_id, "--download", str(out), env=env)
    assert "Hello later" in (out / "results.json").read_text()
    cli("dismiss", job_id, env=env)
    gone = cli("status", job_id, env=env, ok=False)
    assert gone.returncode == 1 and "HTTP 404" in gone.stderr
