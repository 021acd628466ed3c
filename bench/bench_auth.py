"""What authentication costs a request, in one run: the same requests without credentials (open
namespaces), with an API key (as X-API-Key and as a bearer token) and with a verified OpenID Connect access
token (JWT, RS256), beside a bare ASGI app.

    python bench/bench_auth.py [--seconds 3] [--rounds 3]     (bench/run.sh auth starts the OpenID provider)

Targets (issue 10): a request with a verified JWT or API key costs <= 0.1 ms more at p50 than without; the
synchronous hello-world p50 stays <= 2x the bare ASGI app's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import WORK, start_bare, start_ogcflow, wrk  # noqa: E402

HELLO = json.dumps({"inputs": {"name": "World"}})


def figures(url: str, headers: dict[str, str], seconds: float) -> dict[str, float]:
    sync = wrk(url + "/processes/hello-world/execution", method="POST", body=HELLO, headers=headers,
               seconds=seconds)
    routed = wrk(url + "/conformance", headers=headers, seconds=seconds)
    assert sync.errors == 0 and routed.errors == 0, (sync, routed)
    return {"sync_p50": sync.p50_ms, "sync_p95": sync.p95_ms, "get_p50": routed.p50_ms, "get_p95": routed.p95_ms}


def api_key(data: Path, namespace: str) -> str:
    out = subprocess.run([sys.executable, "-m", "ogcflow", "apikey", "create", "--namespace", namespace,
                          "--role", "executor"], env={**os.environ, "OGCFLOW_DATA_DIR": str(data)},
                         capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3, help="duration of each wrk run")
    ap.add_argument("--rounds", type=int, default=3, help="rounds over every configuration (the best is kept)")
    args = ap.parse_args()
    work = WORK / f"auth-{int(time.time())}"
    work.mkdir(parents=True)
    services = []
    sides: list[tuple[str, str, dict[str, str]]] = []  # (name, namespace URL, headers)
    try:
        bare = start_bare(work)
        services.append(bare)
        open_svc = start_ogcflow(work / "open", api_workers=1)
        services.append(open_svc)
        sides.append(("no credentials", open_svc.url + "/acme/ogc-api", {}))
        keyed = start_ogcflow(work / "keys", api_workers=1)
        services.append(keyed)
        key = api_key(keyed.workdir, "acme")  # credentials are required there from now on
        sides.append(("X-API-Key", keyed.url + "/acme/ogc-api", {"X-API-Key": key}))
        sides.append(("API key as bearer", keyed.url + "/acme/ogc-api", {"Authorization": f"Bearer {key}"}))
        issuer = os.environ.get("OGCFLOW_TEST_OIDC_ISSUER")
        if issuer:
            from tests.oidc_support import client_credentials_token

            oidc = start_ogcflow(work / "oidc", api_workers=1, env={"OGCFLOW_OIDC_ISSUER": issuer})
            services.append(oidc)
            token = client_credentials_token("acme-executor")
            sides.append(("OIDC JWT (RS256)", oidc.url + "/acme/ogc-api", {"Authorization": f"Bearer {token}"}))
        else:
            print("(no OGCFLOW_TEST_OIDC_ISSUER: the JWT row is left out; bench/run.sh auth starts a provider)")
        time.sleep(1.0)
        rows: dict[str, dict[str, float]] = {}
        for r in range(args.rounds):  # round-robin, so that the machine's drift hits every configuration alike
            print(f"-- round {r + 1}", flush=True)
            b = wrk(bare.url + "/", method="POST", body=HELLO, seconds=args.seconds)
            best = rows.setdefault("bare ASGI", {"sync_p50": b.p50_ms, "sync_p95": b.p95_ms})
            best["sync_p50"], best["sync_p95"] = min(best["sync_p50"], b.p50_ms), min(best["sync_p95"], b.p95_ms)
            for name, url, headers in sides:
                found = figures(url, headers, args.seconds)
                row = rows.setdefault(name, found)
                for k, v in found.items():
                    row[k] = min(row[k], v)
    finally:
        for svc in services:
            svc.stop()

    base_row = rows["no credentials"]
    print(f"\n{'requests (c=1), best of ' + str(args.rounds):28} {'sync p50':>9} {'sync p95':>9} {'GET p50':>9} "
          f"{'GET p95':>9} {'+sync p50':>10} {'+GET p50':>9}   (ms; target: + <= 0.10)")
    for name, r in rows.items():
        extra = "" if "get_p50" not in r or name == "no credentials" else (
            f"{r['sync_p50'] - base_row['sync_p50']:10.3f} {r['get_p50'] - base_row['get_p50']:9.3f}")
        get = f"{r['get_p50']:9.3f} {r['get_p95']:9.3f}" if "get_p50" in r else f"{'-':>9} {'-':>9}"
        print(f"{name:28} {r['sync_p50']:9.3f} {r['sync_p95']:9.3f} {get} {extra}")
    print(f"\nsync hello-world p50 / bare ASGI p50 = {base_row['sync_p50'] / rows['bare ASGI']['sync_p50']:.2f} "
          f"(target <= 2)")


if __name__ == "__main__":
    main()
