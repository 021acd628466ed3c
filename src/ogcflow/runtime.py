"""What the API and the workers share: settings, the store, results storage and the process catalog.

A plain record: :mod:`ogcflow.wiring` builds it (plugins loaded, process factories registered); every layer
above receives it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ogcflow.processes.catalog import ProcessCatalog
from ogcflow.settings import Settings
from ogcflow.storage import ResultStorage
from ogcflow.store import Store


@dataclass
class Runtime:
    settings: Settings
    store: Store
    storage: ResultStorage
    catalog: ProcessCatalog

    def after_fork(self) -> None:
        """Call in a forked child: never reuse the parent's connections."""
        self.store.after_fork()

    def close(self) -> None:
        self.store.dispose()
