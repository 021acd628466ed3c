"""What the CORS and HEAD/OPTIONS middleware cost a request, in-process at the ASGI level (no sockets, no
FastAPI): a trivial endpoint alone, then wrapped as the app wraps its routes, for a request without and with
an ``Origin`` header. The minimum of several rounds is reported (the machine is shared).

    python bench/bench_http_middleware.py [--requests 50000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from ogcflow.api.cors import CORSMiddleware
from ogcflow.api.methods import MethodsMiddleware


async def endpoint(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b"{}"})


async def _send(message: Any) -> None:
    pass


async def _receive() -> Any:
    return {"type": "http.request", "body": b""}


async def per_request(app: Any, origin: bool, n: int) -> float:
    headers = [(b"host", b"bench"), (b"accept", b"application/json"), (b"user-agent", b"bench")]
    if origin:
        headers.append((b"origin", b"https://radiantearth.github.io"))
    scope = {"type": "http", "method": "GET", "path": "/jobs/x", "headers": headers}
    start = time.perf_counter()
    for _ in range(n):
        await app(scope, _receive, _send)
    return (time.perf_counter() - start) / n * 1e6


async def main(requests: int, rounds: int) -> None:
    wrapped = CORSMiddleware(MethodsMiddleware(endpoint), origins=["*"], methods=["GET", "HEAD"])
    for origin in (False, True):
        bare = min([await per_request(endpoint, origin, requests) for _ in range(rounds)])
        both = min([await per_request(wrapped, origin, requests) for _ in range(rounds)])
        print(f"Origin header: {'yes' if origin else 'no '}  bare {bare:6.2f} us  with CORS + methods "
              f"{both:6.2f} us  overhead {both - bare:5.2f} us per request")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.rounds))
