"""What the API and the workers share: settings, the store, results storage and the process catalog.

A plain record: :mod:`ogcflow.wiring` builds it (plugins loaded, process factories registered); every layer
above receives it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ogcflow.processes.catalog import ProcessCatalog
from ogcflow.settings import Settings
from ogcflow.storage import ResultStorage, make_storage
from ogcflow.store import Store


@dataclass
class Runtime:
    settings: Settings
    store: Store
    #: the results storage (of every namespace, unless OGCFLOW_RESULTS_NAMESPACE_PREFIX)
    storage: ResultStorage
    catalog: ProcessCatalog
    _by_namespace: dict[str, ResultStorage] = field(default_factory=dict, repr=False)

    def storage_for(self, namespace: str) -> ResultStorage:
        """Where the results of ``namespace``'s jobs are kept."""
        if not self.settings.store.results_namespace_prefix:
            return self.storage
        found = self._by_namespace.get(namespace)
        if found is None:
            found = self._by_namespace[namespace] = make_storage(self.settings.store, namespace)
        return found

    def after_fork(self) -> None:
        """Call in a forked child: never reuse the parent's connections."""
        self.store.after_fork()

    def close(self) -> None:
        self.store.dispose()
