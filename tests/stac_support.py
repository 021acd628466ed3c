"""pystac's JSON-schema validation, offline: the schemas are vendored in ``tests/stac_schemas/`` (each URL
``https://<host>/<path>`` is the file ``stac_schemas/<host>/<path>``: the STAC 1.1.0 core and GeoJSON schemas,
and the extensions the staged-out catalogs use). A schema that is not vendored fails the validation: nothing
is fetched."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pystac.validation import JsonSchemaSTACValidator, validate_dict

SCHEMAS = Path(__file__).resolve().parent / "stac_schemas"


class SchemaNotVendored(LookupError):
    pass


class OfflineValidator(JsonSchemaSTACValidator):
    def __init__(self) -> None:
        super().__init__()
        self.schema_cache = {}  # not even pystac's bundled copies: only what tests/stac_schemas holds
        self.read: set[str] = set()

    def _get_schema(self, schema_uri: str) -> dict[str, Any]:
        uri = schema_uri.split("#", 1)[0]
        if uri not in self.schema_cache:
            parts = urlsplit(uri)
            path = (SCHEMAS / parts.netloc / parts.path.lstrip("/")).resolve()
            if parts.scheme != "https" or SCHEMAS not in path.parents or not path.is_file():
                raise SchemaNotVendored(f"{schema_uri} is not vendored in {SCHEMAS}")
            self.schema_cache[uri] = json.loads(path.read_text(encoding="utf-8"))
            self.read.add(uri)
        return self.schema_cache[uri]


def validate(data: dict[str, Any], href: str | None = None) -> list[str]:
    """Validate one STAC object (core and every extension it declares); returns the schema URIs used."""
    return [str(uri) for uri in validate_dict(data, href=href, validator=OfflineValidator())]
