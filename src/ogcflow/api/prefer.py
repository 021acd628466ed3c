"""The ``Prefer`` request header (RFC 7240)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ogcflow.domain import ExecutionPreferences


@dataclass(slots=True)
class Preferences:
    """Preferences by name (lower case) -> value ('' when the preference has no value)."""

    values: dict[str, str] = field(default_factory=dict)

    @property
    def respond_async(self) -> bool:
        return "respond-async" in self.values

    @property
    def wait(self) -> float | None:
        raw = self.values.get("wait")
        try:
            return float(raw) if raw else None
        except ValueError:
            return None

    @property
    def return_(self) -> str | None:
        return self.values.get("return") or None

    def for_execution(self) -> ExecutionPreferences:
        return ExecutionPreferences(respond_async=self.respond_async, wait=self.wait,
                                    return_representation=self.return_ == "representation")


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def parse_prefer(headers: list[str]) -> Preferences:
    """Parse every ``Prefer`` header. Several preferences may be separated by commas; parameters after ';'
    are read as preferences too, so ``respond-async;return=representation`` asks for both (as clients mean)."""
    prefs = Preferences()
    for header in headers:
        for item in header.split(","):
            for i, part in enumerate(item.split(";")):
                part = part.strip()
                if not part:
                    continue
                name, _, value = part.partition("=")
                name = name.strip().lower()
                if not name:
                    continue
                if i == 0 or name not in prefs.values:
                    prefs.values.setdefault(name, _unquote(value))
    return prefs
