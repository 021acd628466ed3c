"""Where jobs run: the engine interface (base.py), the local engine (local.py), the worker daemon that runs
jobs in forked processes (worker.py), the Prefect engine (prefect.py, prefect_api.py)."""
