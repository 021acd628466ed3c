"""schemathesis over /api of a running server: no unexpected 5xx, no response outside the OpenAPI document
(statuses, media types, schemas, headers, ``Allow`` of 405 answers), invalid requests rejected.

Bounded: a fixed seed and a few examples per operation of schemathesis's fuzzing phase (under a minute). Its
coverage phase (boundary values, nulls, unsupported methods: ~1,600 more requests, two minutes on a loaded
machine) runs too with ``OGCFLOW_FUZZ_PHASES=coverage,fuzzing`` (405 ``Allow`` answers: tests/test_stac.py). A deployed
CWL package is described and its package read, but not executed by the fuzzer (each CWL run costs a second
or more; the generic execution path is fuzzed through the built-ins). The generated URLs (inputs by
reference, subscriber callbacks) are held to a closed loopback port, and the server refuses private
addresses anyway, so the fuzzer's requests never make the server call out.
"""

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

TOKEN = "fuzz-token"
SAY = """cwlVersion: v1.2
class: CommandLineTool
id: say
baseCommand: [echo]
stdout: out.txt
inputs:
  words: {type: string, inputBinding: {position: 1}}
outputs:
  said: {type: stdout}
"""
CHECKS = ("no_unexpected_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance", "response_headers_conformance", "negative_data_rejection",
          "unsupported_method", "missing_required_header")
#: nowhere: the port is closed, and private addresses are refused by the server's policy (400)
NOWHERE = r"^http://127\.0\.0\.1:9/[a-z]{0,8}$"


def _closed_urls(node: Any) -> Any:
    """The document with every URL the fuzzer may generate held to ``NOWHERE``."""
    if isinstance(node, list):
        return [_closed_urls(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _closed_urls(v) for k, v in node.items()}
    if node.get("format") == "uri":
        node["pattern"] = NOWHERE
    return node


@pytest.fixture(scope="module")
def fserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"OGCFLOW_PLUGINS": "[]", "OGCFLOW_SYNC_TIMEOUT": "2", "OGCFLOW_ADMIN_TOKEN": TOKEN,
           "OGCFLOW_ALLOW_PRIVATE_URLS": "false", "OGCFLOW_FETCH_TIMEOUT": "2"}
    srv = Server(tmp_path_factory.mktemp("fuzz"), env=env, workers=1).start()
    yield srv
    srv.stop()


@pytest.mark.timeout(400)
def test_schemathesis_finds_nothing(fserver: Server, tmp_path: Path) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    deployed = httpx.post(fserver.url + "/processes", content=SAY,
                          headers={"Content-Type": "application/cwl+yaml", **auth}, timeout=60)
    assert deployed.status_code == 201, deployed.text
    schema = tmp_path / "api.json"
    schema.write_text(json.dumps(_closed_urls(httpx.get(fserver.url + "/api", timeout=30).json())))
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", str(schema), "--url", fserver.url, "--seed", "7",
         "-n", "6", "--phases", os.environ.get("OGCFLOW_FUZZ_PHASES", "fuzzing"),
         "--exclude-operation-id", "execute-say", "--checks", ",".join(CHECKS),
         "-H", f"Authorization: Bearer {TOKEN}", "--request-timeout", "30", "--no-color"],
        capture_output=True, text=True, timeout=360, cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.fuzz_hooks"})
    took = time.monotonic() - started
    failures = run.stdout.split("= FAILURES =", 1)[-1].split("= WARNINGS =", 1)[0]
    report = failures[:20000] + run.stdout.split("= SUMMARY =", 1)[-1] + run.stderr[-2000:]
    assert run.returncode == 0, report
    tested = next(line for line in run.stdout.splitlines() if line.strip().startswith("Tested:"))
    assert int(tested.split(":")[1].split("/")[0]) >= 18, report  # every operation of the document but one
    print(f"schemathesis: {tested.strip()} in {took:.0f} s")

