"""Standard clients against the real server: OWSLib, and the HTML pages in headless Chromium."""

from __future__ import annotations

import time

import httpx
from owslib.ogcapi.processes import Processes

from tests.conftest import wait_for
from tests.server import Server


def test_owslib_lists_describes_and_executes(server: Server, client: httpx.Client) -> None:
    api = Processes(server.url)
    ids = {p["id"] for p in api.processes()}
    assert {"echo", "hello-world", "sleep"} <= ids
    desc = api.process("hello-world")
    assert desc["inputs"]["name"]["schema"]["type"] == "string"
    result = api.execute("hello-world", inputs={"name": "OWSLib"}, response="document")
    assert result == {"greeting": {"value": "Hello OWSLib!", "mediaType": "text/plain"}}
    status = api.execute("sleep", inputs={"seconds": 0.2}, response="document", async_=True)
    assert status["status"] in ("accepted", "running")
    location = api.response_headers["Location"]
    assert location.endswith(status["jobID"])
    assert wait_for(client, location)["status"] == "successful"
    # OWSLib 0.35 stops at execution; the job's results are read over plain HTTP
    assert client.get(location + "/results").json()["slept"] >= 0.2


def test_html_pages_in_a_browser(server: Server, client: httpx.Client, browser) -> None:
    from selenium.webdriver.common.by import By

    b = browser
    b.get(server.url + "/")  # the browser's own Accept header asks for HTML
    assert b.find_element(By.ID, "title").text == "ogcflow"
    b.find_element(By.LINK_TEXT, "the processes").click()
    rows = b.find_elements(By.CSS_SELECTOR, "#processes tbody tr")
    assert {r.find_element(By.TAG_NAME, "a").text for r in rows} >= {"echo", "hello-world", "sleep"}
    b.find_element(By.LINK_TEXT, "hello-world").click()
    assert b.find_element(By.ID, "process-title").text == "Hello World"
    assert "name" in b.find_element(By.ID, "inputs").text
    b.get(server.url + "/conformance")
    assert "conf/dismiss" in b.find_element(By.ID, "conformance").text

    loc = client.post("/processes/hello-world/execution", json={"inputs": {"name": "Browser"}},
                      headers={"Prefer": "respond-async"}).headers["location"]
    wait_for(client, loc)
    job_id = loc.rsplit("/", 1)[1]
    b.get(server.url + "/jobs")
    assert job_id in b.find_element(By.ID, "jobs").text
    b.find_element(By.LINK_TEXT, job_id).click()
    assert b.find_element(By.ID, "status").text == "successful"
    b.find_element(By.LINK_TEXT, "results of this job").click()
    assert "Hello Browser!" in b.find_element(By.ID, "results").text

    b.get(server.url + "/processes/nope")
    assert "No such process" in b.find_element(By.TAG_NAME, "h1").text


def test_api_documentation_renders(server: Server, browser) -> None:
    from selenium.webdriver.common.by import By

    browser.get(server.url + "/api?f=html")
    deadline = time.monotonic() + 20
    ops: list = []
    while time.monotonic() < deadline and not ops:
        ops = browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
        time.sleep(0.2)
    paths = {o.text.replace("\u200b", "") for o in ops}
    assert "/processes/hello-world/execution" in paths, paths
    assert "/jobs/{jobId}" in paths
