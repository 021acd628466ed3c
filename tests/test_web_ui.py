"""The HTML pages as a user drives them in headless Chromium: the execute form of hello-world, water-bodies
and a deployed CWL package, the live job page to the end, the map of the results' STAC items, an API key
kept in the browser session, and Swagger's "Try it out" with the examples of /api. Screenshots of each
page land in tests/artifacts/screenshots/ (gitignored)."""

from __future__ import annotations

import re
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import wait_for
from tests.eo_support import Scenes
from tests.server import Server
from tests.test_tenancy import create_key

SHOTS = Path(__file__).resolve().parent / "artifacts" / "screenshots"
TITILER = "http://titiler.example/cog/viewer?url={url}"
TOKEN = "web-ui-admin-token"
AOI = [-121.43, 40.27, -121.33, 40.34]

#: a package with an enum, an integer with a default and a list of strings with an example (s:example)
PACKAGE = """
cwlVersion: v1.2
$namespaces: {s: https://schema.org/}
$graph:
- class: Workflow
  id: repeat-words
  label: Repeat words
  doc: Writes each word, repeated, in the chosen case.
  requirements: [{class: ScatterFeatureRequirement}]
  inputs:
    words: {type: "string[]", label: words, s:example: [alpha, beta]}
    times: {type: int, default: 2, label: how many times}
    case: {type: {type: enum, symbols: [upper, lower]}, label: letter case}
  outputs:
    lines: {type: "File[]", outputSource: node_repeat/out}
  steps:
    node_repeat:
      run: "#repeat"
      in: {word: words, times: times, case: case}
      scatter: word
      out: [out]
- class: CommandLineTool
  id: repeat
  baseCommand:
    - sh
    - -c
    - >-
      for i in $(seq "$1"); do printf "%s\\n" "$0"; done
      | if [ "$2" = upper ]; then tr a-z A-Z; else cat; fi > out.txt
  inputs:
    word: {type: string, inputBinding: {position: 1}}
    times: {type: int, inputBinding: {position: 2}}
    case: {type: Any, inputBinding: {position: 3}}
  outputs: {out: {type: File, outputBinding: {glob: out.txt}}}
"""


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory, scenes: Scenes) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("ui"), env={"OGCFLOW_ADMIN_TOKEN": TOKEN,
                                                    "OGCFLOW_TITILER_URL": TITILER}).start()
    yield srv
    srv.stop()


#: the browser of the test running (its page's errors go into the failures' messages)
CURRENT: list[Any] = []


@pytest.fixture(autouse=True)
def _current(browser: Any) -> Iterator[None]:
    CURRENT[:] = [browser]
    yield
    errors = browser.execute_script("return window.ogcflow ? ogcflow.errors : []")
    CURRENT.clear()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture(scope="module")
def api(ui: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=ui.url, timeout=60) as c:
        yield c


def until(check: Callable[[], Any], timeout: float = 60, what: str = "the page", browser: Any = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = check()
        except Exception:  # an element not there yet, or replaced while read
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            errors = CURRENT[0].execute_script("return window.ogcflow ? ogcflow.errors : ['no ogcflow.js']") \
                if CURRENT else None
            raise AssertionError(f"{what}: not seen within {timeout} s (errors of the page: {errors})")
        time.sleep(0.1)


def shot(browser: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / f"{name}.png"))


def by_css(browser: Any, css: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(browser.find_elements(By.CSS_SELECTOR, css))


def one(browser: Any, css: str) -> Any:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.CSS_SELECTOR, css)


def type_into(element: Any, text: str) -> None:
    element.clear()
    element.send_keys(text)


def preview(browser: Any) -> dict[str, Any]:
    import json

    text = one(browser, "#request-preview").text
    return dict(json.loads(text[text.index("\n\n") + 2:]))


def submit_and_follow(browser: Any, timeout: float = 120) -> str:
    """Submit the form (asynchronous), land on the job page, wait for its end; the status it ends in."""
    one(browser, "#mode").send_keys("asynchronous")
    one(browser, "#execute-submit").click()
    until(lambda: "/jobs/" in browser.current_url, 30, "the job page")
    return str(until(lambda: one(browser, "body").get_attribute("data-job-ended"), timeout, "the job's end"))


def test_hello_world_form_to_the_job_page(ui: Server, browser: Any) -> None:
    b = browser
    b.get(ui.url + "/processes/hello-world")
    name = until(lambda: one(b, "#input-name input"), 10, "the form")
    assert name.get_attribute("value") == "World"  # the example of the input's schema
    assert preview(b) == {"inputs": {"name": "World", "message": "Welcome to ogcflow."}}
    type_into(name, "Browser")
    type_into(one(b, "#input-message input"), "")
    assert preview(b) == {"inputs": {"name": "Browser"}}  # an optional input left empty is not sent
    assert "Prefer: respond-async" in one(b, "#request-preview").text
    shot(b, "hello-world-form")
    assert submit_and_follow(b) == "successful"
    until(lambda: "Hello Browser!" in one(b, "#results").text, 10, "the results")
    assert one(b, "#status").text == "successful"
    assert one(b, "#progress").get_attribute("value") == "100"
    shot(b, "hello-world-job")

    # the dismiss button removes the job
    one(b, "#dismiss").click()
    b.switch_to.alert.accept()
    until(lambda: one(b, "#status").text == "dismissed", 10, "the dismissal")
    job_url = b.current_url.split("?")[0]
    assert httpx.get(job_url).json()["status"] == "dismissed"


def test_hello_world_synchronously_and_a_refused_request(ui: Server, browser: Any) -> None:
    b = browser
    b.get(ui.url + "/processes/hello-world")
    until(lambda: one(b, "#input-name input"), 10, "the form")
    one(b, "#mode").send_keys("synchronous")
    assert "Prefer" not in one(b, "#request-preview").text
    one(b, "#execute-submit").click()
    until(lambda: "Hello World! Welcome to ogcflow." in one(b, "#result-body").text, 20, "the result")
    type_into(one(b, "#input-name input"), "")  # name is required: the server says so, the page shows it
    one(b, "#execute-submit").click()
    error = until(lambda: one(b, "#execute-error").text, 20, "the error")
    assert error.startswith("HTTP 400") and "name" in error


def test_a_bbox_drawn_on_the_map(ui: Server, browser: Any) -> None:
    """echo's bounding box input (an OGC bbox object): drawn with the mouse, sent, echoed back."""
    from selenium.webdriver.common.action_chains import ActionChains

    b = browser
    b.get(ui.url + "/processes/echo")
    draw = until(lambda: one(b, "#input-boundingBoxInput button.draw"), 10, "the form")
    mapdiv = one(b, "#bbox-map-boundingBoxInput")
    b.execute_script("arguments[0].scrollIntoView()", mapdiv)
    draw.click()
    ActionChains(b).move_to_element_with_offset(mapdiv, -60, -40).click_and_hold() \
        .move_by_offset(60, 30).move_by_offset(60, 30).release().perform()
    values = [float(one(b, f"input[name=boundingBoxInput-{n}]").get_attribute("value"))
              for n in ("minx", "miny", "maxx", "maxy")]
    assert values[0] < values[2] and values[1] < values[3], values
    assert len(by_css(b, "#bbox-map-boundingBoxInput path.bbox")) == 1
    sent = preview(b)["inputs"]["boundingBoxInput"]
    assert sent == {"bbox": values, "crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84"}
    shot(b, "echo-bbox-drawn")
    one(b, "#mode").send_keys("synchronous")
    one(b, "#execute-submit").click()
    body = until(lambda: one(b, "#result-body").text, 20, "the result")
    assert str(values[0]) in body


def test_a_failing_job_says_why(ui: Server, browser: Any) -> None:
    b = browser
    b.get(ui.url + "/processes/sleep")
    seconds = until(lambda: one(b, "#input-seconds input"), 10, "the form")
    assert seconds.get_attribute("type") == "number" and seconds.get_attribute("max") == "86400"
    type_into(seconds, "0.3")
    one(b, "#input-fail select").send_keys("true")  # an optional boolean: not set, true or false
    assert preview(b) == {"inputs": {"seconds": 0.3, "fail": True}}
    assert submit_and_follow(b) == "failed"
    failure = until(lambda: one(b, "#failure").text, 10, "the failure")
    assert "fail" in failure.lower()
    shot(b, "failed-job")


def test_water_bodies_form_job_and_map(ui: Server, api: httpx.Client, browser: Any, scenes: Scenes) -> None:
    b = browser
    b.get(ui.url + "/processes/water-bodies")
    until(lambda: one(b, "#input-aoi input[name=aoi-minx]"), 10, "the form")
    for name, value in zip(("minx", "miny", "maxx", "maxy"), AOI, strict=True):
        type_into(one(b, f"input[name=aoi-{name}]"), str(value))
    items = by_css(b, "#input-stac_items ol.array input")
    assert len(items) == 1 and "planetarycomputer" in items[0].get_attribute("value")  # the package's example
    type_into(items[0], scenes.item_url("A"))
    one(b, "#input-stac_items button.add").click()
    type_into(by_css(b, "#input-stac_items ol.array input")[1], scenes.item_url("B"))
    assert [i.get_attribute("value") for i in by_css(b, "#input-bands ol.array input")] == ["green", "nir08"]
    sent = preview(b)["inputs"]
    assert sent == {"aoi": ",".join(str(v) for v in AOI), "epsg": "EPSG:4326", "bands": ["green", "nir08"],
                    "stac_items": [scenes.item_url("A"), scenes.item_url("B")]}
    assert len(by_css(b, "#bbox-map-aoi path.bbox")) == 1  # the typed box is drawn on the form's map
    shot(b, "water-bodies-form")

    one(b, "#mode").send_keys("asynchronous")
    one(b, "#execute-submit").click()
    until(lambda: "/jobs/" in b.current_url, 30, "the job page")
    job_url = b.current_url.split("?")[0]
    seen: list[int] = []  # progress as the page shows it while it follows the job
    live_log = ""  # the log as the API serves it while the job runs
    while (info := api.get(job_url).json())["status"] in ("accepted", "running"):
        seen.append(int(b.execute_script("return Number(document.getElementById('progress').value)")))
        if not live_log and any(link["href"].endswith("/logs") for link in info["links"]):
            resp = api.get(job_url + "/logs")
            live_log = resp.text if resp.status_code == 200 and info["status"] == "running" else ""
        time.sleep(0.2)
    assert "completed success" in live_log, "the log is readable while the job runs"
    assert until(lambda: one(b, "body").get_attribute("data-job-ended"), 20, "the end") == "successful"
    steps = one(b, "#steps").text
    assert re.search(r"\b\d of 9 steps done", steps), steps  # 2 items x (crop x 2, norm_diff, otsu) + stac
    assert any(5 < p < 100 for p in seen), seen  # the bar moved with the steps, not 5 % then 100 %
    assert seen == sorted(seen), seen
    # per-step timings, from the CWL log: every tool run, how it ended, how long it took
    timings = until(lambda: by_css(b, "#step-timings tbody tr"), 20, "the step timings")
    cells = [[td.text for td in row.find_elements("css selector", "td")] for row in timings]
    names = {c[0].rstrip("_0123456789") for c in cells}
    assert len(cells) == 9 and names == {"node_crop", "node_normalized_difference", "node_otsu", "node_stac"}, cells
    assert all(c[1] == "ok" and re.fullmatch(r"\d+\.\d\d s", c[2]) for c in cells), cells

    until(lambda: one(b, "body").get_attribute("data-results-shown"), 20, "the results")
    results = api.get(job_url + "/results").json()
    features = results["stac_catalog"]["value"]["features"]
    assert len(features) == 2
    assert len(by_css(b, "#map path.footprint")) == 2  # one footprint per item
    assert len(by_css(b, "#map path.aoi")) == 1
    # the stage-out writes a quicklook per item (its "thumbnail" asset): the map shows every one
    assert all("thumbnail" in f["assets"] for f in features), [list(f["assets"]) for f in features]
    assert len(by_css(b, "#map img.quicklook")) == len(features)
    for img in by_css(b, "#map img.quicklook"):
        until(lambda img=img: b.execute_script("return arguments[0].naturalWidth", img) > 0, 10, "a quicklook")
    assert {li.get_attribute("data-item") for li in by_css(b, "ul.map-legend li")} == {f["id"] for f in features}
    assert "stac_catalog" in one(b, "#results").text
    # OGCFLOW_TITILER_URL: each GeoTIFF (the masks) links to the viewer with its URL a browser can load
    views = [a.get_attribute("href") for a in by_css(b, "#results a.titiler")]
    assert len(views) == len(features), views
    for view in views:
        assert view.startswith("http://titiler.example/cog/viewer?url=http"), view
        mask = urllib.parse.unquote(view.split("url=", 1)[1])
        assert mask.endswith("/otsu.tif") and api.get(mask).status_code == 200, mask
    shot(b, "water-bodies-job")
    b.execute_script("arguments[0].scrollIntoView()", one(b, "#job-results"))
    shot(b, "water-bodies-job-map")

    b.get(job_url + "/results?f=html")
    until(lambda: len(by_css(b, "#map path.footprint")) == 2, 20, "the results map")
    shot(b, "water-bodies-results")
    # every asset link of the results page is one the browser can follow (the API's copy of each file)
    links = [a.get_attribute("href") for a in by_css(b, "#results a.asset")]
    assert links and all(link.startswith(ui.url) for link in links), links
    assert httpx.get(links[0]).status_code == 200


def deploy(api: httpx.Client) -> None:
    resp = api.post("/processes", content=PACKAGE, headers={"Content-Type": "application/cwl+yaml",
                                                            "Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code in (201, 409), resp.text  # 409: deployed by another test of the module


def test_deployed_package_form(ui: Server, api: httpx.Client, browser: Any) -> None:
    deploy(api)
    b = browser
    b.get(ui.url + "/processes/repeat-words")
    until(lambda: one(b, "#input-case select"), 10, "the form")
    assert [o.text for o in by_css(b, "#input-case option")] == ["upper", "lower"]  # an enum is a select
    assert one(b, "#input-times input").get_attribute("type") == "number"
    assert one(b, "#input-times input").get_attribute("value") == "2"  # the default
    assert [i.get_attribute("value") for i in by_css(b, "#input-words ol.array input")] == ["alpha", "beta"]
    one(b, "#input-case select").send_keys("lower")
    one(b, "#input-words button.add").click()
    type_into(by_css(b, "#input-words ol.array input")[2], "gamma")
    by_css(b, "#input-words button.remove")[0].click()
    assert preview(b)["inputs"] == {"words": ["beta", "gamma"], "times": 2, "case": "lower"}
    shot(b, "deployed-package-form")
    assert submit_and_follow(b) == "successful"
    until(lambda: "lines" in one(b, "#results").text, 10, "the results")
    link = one(b, "#results a.download").get_attribute("href")  # a zip of the files: a download, not base64
    assert httpx.get(link).headers["content-type"] == "application/zip"
    shot(b, "deployed-package-job")


def test_swagger_try_it_out_runs_the_examples(ui: Server, api: httpx.Client, browser: Any) -> None:
    doc = api.get("/api").json()
    examples = {pid: doc["paths"][f"/processes/{pid}/execution"]["post"]["requestBody"]["content"]
                ["application/json"]["example"] for pid in ("hello-world", "water-bodies")}
    assert examples["hello-world"] == {"inputs": {"name": "World", "message": "Welcome to ogcflow."}}
    assert set(examples["water-bodies"]["inputs"]) == {"aoi", "epsg", "stac_items", "bands"}
    # the example is a valid request: accepted (the Planetary Computer item is not reached from here)
    resp = api.post("/processes/water-bodies/execution", json=examples["water-bodies"],
                    headers={"Prefer": "respond-async"})
    assert resp.status_code == 201, resp.text
    api.delete(resp.headers["Location"])

    b = browser
    b.get(ui.url + "/api?f=html")
    block = until(lambda: one(b, "#operations-Processes-execute-hello-world"), 20, "Swagger UI")
    block.find_element("css selector", ".opblock-summary").click()
    until(lambda: one(b, "#operations-Processes-execute-hello-world button.try-out__btn"), 10).click()
    until(lambda: one(b, "#operations-Processes-execute-hello-world button.execute"), 10).click()
    status = until(lambda: one(b, "#operations-Processes-execute-hello-world .live-responses-table tbody "
                                  ".response-col_status").text, 20, "the response")
    assert status.strip() == "200"
    body = one(b, "#operations-Processes-execute-hello-world .live-responses-table tbody "
                  ".response-col_description").text
    assert "Hello World! Welcome to ogcflow." in body
    shot(b, "swagger-try-it-out")


def test_job_status_and_log_answer_304_to_pollers(ui: Server, api: httpx.Client) -> None:
    deploy(api)
    loc = api.post("/processes/repeat-words/execution", json={"inputs": {"words": ["a"], "case": "upper"}},
                   headers={"Prefer": "respond-async"}).headers["location"]
    assert wait_for(api, loc, timeout=60)["status"] == "successful"
    first = api.get(loc)
    etag = first.headers["etag"]
    again = api.get(loc, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert api.get(loc, headers={"If-None-Match": '"other"'}).status_code == 200
    log = api.get(loc + "/logs")
    assert log.status_code == 200 and log.headers["etag"]
    assert api.get(loc + "/logs", headers={"If-None-Match": log.headers["etag"]}).status_code == 304


def test_pages_with_an_api_key_in_the_browser_session(tmp_path: Path, browser: Any) -> None:
    srv = Server(tmp_path / "auth", env={"OGCFLOW_AUTH": "required"}).start()
    try:
        key = create_key(srv, "default", "executor", "browser")
        b = browser
        b.get(srv.url + "/processes/hello-world")
        assert "401" in one(b, "h1").text
        shot(b, "auth-needed")
        type_into(one(b, "#api-key"), key)
        one(b, "#auth-form button").click()
        name = until(lambda: one(b, "#input-name input"), 20, "the form with the key")
        type_into(name, "Key")
        assert submit_and_follow(b, 60) == "successful"  # the job page is read with the key too
        until(lambda: "Hello Key!" in one(b, "#results").text, 10, "the results")
        shot(b, "auth-job")
        one(b, "#auth-forget").click()
        b.get(srv.url + "/jobs")
        assert "401" in one(b, "h1").text
    finally:
        srv.stop()
