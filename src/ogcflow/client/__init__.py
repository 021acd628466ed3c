"""A client of any OGC API - Processes server (``ogcflow client``, ``ogcflow-client``); it imports none of the
server's modules (import-linter keeps it so), only httpx, typer, rich and pyyaml."""
