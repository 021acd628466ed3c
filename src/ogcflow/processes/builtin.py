"""Built-in processes that exercise the standard: ``echo``, ``hello-world`` and ``sleep``."""

from __future__ import annotations

import time
from typing import Any

from ogcflow import models
from ogcflow.errors import ProcessError
from ogcflow.models import JobControlOption
from ogcflow.processes.base import JobContext, OutputValue, Process, ProcessRegistry

_ALL_CONTROL = [JobControlOption.sync_execute, JobControlOption.async_execute, JobControlOption.dismiss]

BBOX_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["bbox"],
    "properties": {
        "bbox": {"type": "array", "minItems": 4, "maxItems": 6, "items": {"type": "number"}},
        "crs": {"type": "string", "format": "uri",
                "default": "http://www.opengis.net/def/crs/OGC/1.3/CRS84",
                "enum": ["http://www.opengis.net/def/crs/OGC/1.3/CRS84",
                         "http://www.opengis.net/def/crs/OGC/0/CRS84h"]},
    },
}

GEOJSON_GEOMETRY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "coordinates"],
    "properties": {
        "type": {"type": "string", "enum": ["Point", "MultiPoint", "LineString", "MultiLineString",
                                            "Polygon", "MultiPolygon"]},
        "coordinates": {"type": "array"},
    },
}

_ECHO_INPUTS: dict[str, tuple[str, dict[str, Any], str]] = {
    "stringInput": ("A string with an enumeration",
                    {"type": "string", "enum": ["Value1", "Value2", "Value3"]}, "text/plain"),
    "measureInput": ("A bounded number (0 to 100, maximum excluded)",
                     {"type": "number", "minimum": 0, "maximum": 100, "exclusiveMaximum": True},
                     "application/json"),
    "integerInput": ("An integer between 1 and 1000", {"type": "integer", "minimum": 1, "maximum": 1000},
                     "application/json"),
    "booleanInput": ("A boolean", {"type": "boolean"}, "application/json"),
    "dateInput": ("A date-time (RFC 3339)", {"type": "string", "format": "date-time"}, "text/plain"),
    "boundingBoxInput": ("A bounding box", BBOX_SCHEMA, "application/json"),
    "geometryInput": ("A GeoJSON geometry", GEOJSON_GEOMETRY_SCHEMA, "application/geo+json"),
    "arrayInput": ("An array of 2 to 10 integers",
                   {"type": "array", "minItems": 2, "maxItems": 10, "items": {"type": "integer"}},
                   "application/json"),
    "complexObjectInput": ("An object with a required string and an optional number",
                           {"type": "object", "required": ["property1"],
                            "properties": {"property1": {"type": "string"}, "property2": {"type": "number"}}},
                           "application/json"),
    "imageInput": ("A binary image (PNG), base64-encoded by value or by reference",
                   {"type": "string", "contentEncoding": "base64", "contentMediaType": "image/png"},
                   "image/png"),
}


class EchoProcess(Process):
    """Returns every input it is given as the output of the same id."""

    inline = True

    def __init__(self) -> None:
        inputs = {
            key: models.InputDescription(title=key, description=text, schema=schema, minOccurs=0, maxOccurs=1)
            for key, (text, schema, _media) in _ECHO_INPUTS.items()
        }
        outputs = {
            key: models.OutputDescription(title=key, description=f"The value of input '{key}'", schema=schema)
            for key, (text, schema, _media) in _ECHO_INPUTS.items()
        }
        self._media = {key: media for key, (_t, _s, media) in _ECHO_INPUTS.items()}
        self.description = models.Process(
            id="echo", version="1.0.0", title="Echo",
            description="Returns each input as the output of the same id: one input of every kind the "
                        "standard's examples use (literal, bounded, date-time, bbox, GeoJSON, array, "
                        "object, binary).",
            keywords=["test", "echo"], jobControlOptions=_ALL_CONTROL, inputs=inputs, outputs=outputs,
        )

    def execute(self, inputs: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        return {key: OutputValue(value=value, media_type=self._media[key]) for key, value in inputs.items()}


class HelloWorldProcess(Process):
    """Greets by name."""

    inline = True
    description = models.Process(
        id="hello-world", version="1.0.0", title="Hello World",
        description="Returns a greeting for the given name, followed by an optional message.",
        keywords=["hello world", "example"], jobControlOptions=_ALL_CONTROL,
        inputs={
            "name": models.InputDescription(title="Name", description="Who to greet",
                                            schema={"type": "string", "minLength": 1, "maxLength": 1000,
                                                    "example": "World"}),
            "message": models.InputDescription(title="Message", description="Added after the greeting",
                                               schema={"type": "string", "maxLength": 10000,
                                                       "example": "Welcome to ogcflow."}, minOccurs=0),
        },
        outputs={"greeting": models.OutputDescription(title="Greeting", schema={"type": "string"})},
    )

    def execute(self, inputs: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        text = f"Hello {inputs['name']}!"
        if inputs.get("message"):
            text += f" {inputs['message']}"
        return {"greeting": OutputValue(value=text, media_type="text/plain")}


class SleepProcess(Process):
    """Sleeps, reporting progress; optionally fails: for long-running and failing jobs."""

    description = models.Process(
        id="sleep", version="1.0.0", title="Sleep",
        description="Waits the given number of seconds, reporting progress, then succeeds (or fails when "
                    "`fail` is true).",
        keywords=["test"], jobControlOptions=_ALL_CONTROL,
        inputs={
            "seconds": models.InputDescription(
                title="Seconds", schema={"type": "number", "minimum": 0, "maximum": 86400, "example": 2}),
            "fail": models.InputDescription(title="Fail at the end", schema={"type": "boolean", "default": False},
                                            minOccurs=0),
        },
        outputs={"slept": models.OutputDescription(title="Seconds slept", schema={"type": "number"})},
    )

    def execute(self, inputs: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        seconds = float(inputs["seconds"])
        start = time.monotonic()
        last = -1
        while (elapsed := time.monotonic() - start) < seconds:
            if ctx.cancelled.is_set():
                raise ProcessError("cancelled")
            percent = int(100 * elapsed / seconds) if seconds else 100
            if percent >= last + 10:
                ctx.progress(percent, f"slept {elapsed:.1f} of {seconds:g} s")
                last = percent
            time.sleep(min(0.1, seconds - elapsed))
        if inputs.get("fail"):
            raise ProcessError(f"failed on purpose after {seconds:g} s (fail=true)")
        return {"slept": OutputValue(value=round(time.monotonic() - start, 3), media_type="application/json")}


def builtin_processes() -> ProcessRegistry:
    """The built-in processes, visible in every namespace."""
    registry = ProcessRegistry()
    for process in (EchoProcess(), HelloWorldProcess(), SleepProcess()):
        registry.add(process)
    return registry
