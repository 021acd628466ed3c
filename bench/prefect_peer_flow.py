"""The peer's flows: what a process work pool runs (a fresh interpreter per flow run)."""

import time

from prefect import flow


@flow(name="bench-trivial")
async def trivial(name: str = "World") -> str:
    return f"Hello {name}!"


@flow(name="bench-sleep")
async def sleeper(seconds: float = 60) -> float:
    time.sleep(seconds)
    return seconds
