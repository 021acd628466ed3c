"""Where job results are kept."""

from ogcflow.storage.local import LocalStorage, ResultStorage

__all__ = ["LocalStorage", "ResultStorage"]
