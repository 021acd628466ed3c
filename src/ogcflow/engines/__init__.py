"""Where jobs run. An engine takes accepted jobs from the store and runs them with ``run_job``."""

from ogcflow.engines.base import Engine, get_engine

__all__ = ["Engine", "get_engine"]
