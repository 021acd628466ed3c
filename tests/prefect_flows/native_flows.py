"""Prefect flows that the tests deploy to a `process` work pool and offer as OGC processes (a directory
holding only this file is the deployments' storage)."""

import time
from pathlib import Path

from prefect import flow, task

from ogcflow import flows


@task
def multiply(a: float, b: float) -> float:
    return a * b


@flow(name="native-area")
def area(width: float, height: float = 1.0, label: str = "rectangle") -> dict:
    """The area of a rectangle, and a report file."""
    value = multiply(width, height)
    report = flows.write_file("report.txt", f"{label}: {width} x {height} = {value}", media_type="text/plain")
    return flows.publish({"area": value, "report": report})


@flow(name="native-flaky", retries=1, retry_delay_seconds=0)
def flaky(marker: str) -> int:
    """Fails on its first attempt (Prefect retries it), succeeds on the second."""
    path = Path(marker)
    attempts = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(attempts))
    if attempts == 1:
        raise RuntimeError("first attempt fails")
    return flows.publish(attempts)


@flow(name="native-broken")
def broken(reason: str = "boom") -> None:
    raise ValueError(reason)


@flow(name="native-sleep")
def sleepy(seconds: float = 60) -> float:
    time.sleep(seconds)
    return flows.publish(seconds)
