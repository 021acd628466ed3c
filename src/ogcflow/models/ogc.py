"""Models of the OGC API - Processes - Part 1: Core 1.0 schemas (OGC 18-062r2).

Field names follow the standard's JSON spelling. Serialise with ``dump()``: unset fields are left out,
never written as null, as the schemas expect.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class OGCModel(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class StatusCode(StrEnum):
    accepted = "accepted"
    running = "running"
    successful = "successful"
    failed = "failed"
    dismissed = "dismissed"

    @property
    def finished(self) -> bool:
        return self in (StatusCode.successful, StatusCode.failed, StatusCode.dismissed)


class JobControlOption(StrEnum):
    sync_execute = "sync-execute"
    async_execute = "async-execute"
    dismiss = "dismiss"


class TransmissionMode(StrEnum):
    value = "value"
    reference = "reference"


class ResponseMode(StrEnum):
    raw = "raw"
    document = "document"


class Link(OGCModel):
    href: str
    rel: str | None = None
    type: str | None = None
    hreflang: str | None = None
    title: str | None = None


class LandingPage(OGCModel):
    title: str | None = None
    description: str | None = None
    #: the server's software version (an additional property of the landing page)
    version: str | None = None
    links: list[Link]


class ConfClasses(OGCModel):
    conformsTo: list[str]


class ExceptionDocument(OGCModel):
    """RFC 7807 problem details, as the standard's exception.yaml."""

    model_config = ConfigDict(extra="allow")
    type: str
    title: str | None = None
    status: int | None = None
    detail: str | None = None
    instance: str | None = None


class Metadata(OGCModel):
    title: str | None = None
    role: str | None = None
    href: str | None = None


class DescriptionType(OGCModel):
    title: str | None = None
    description: str | None = None
    keywords: list[str] | None = None
    metadata: list[Metadata] | None = None


class InputDescription(DescriptionType):
    schema_: dict[str, Any] = Field(alias="schema")
    minOccurs: int = 1
    maxOccurs: int | Literal["unbounded"] = 1


class OutputDescription(DescriptionType):
    schema_: dict[str, Any] = Field(alias="schema")


class ProcessSummary(DescriptionType):
    id: str
    version: str
    jobControlOptions: list[JobControlOption] = Field(
        default_factory=lambda: [JobControlOption.sync_execute, JobControlOption.async_execute]
    )
    outputTransmission: list[TransmissionMode] = Field(
        default_factory=lambda: [TransmissionMode.value, TransmissionMode.reference]
    )
    mutable: bool | None = None
    links: list[Link] | None = None


class Process(ProcessSummary):
    inputs: dict[str, InputDescription] = Field(default_factory=dict)
    outputs: dict[str, OutputDescription] = Field(default_factory=dict)

    def summary(self) -> ProcessSummary:
        data = self.model_dump(by_alias=True, exclude={"inputs", "outputs"})
        return ProcessSummary.model_validate(data)


class ProcessList(OGCModel):
    processes: list[ProcessSummary]
    links: list[Link]


class Format(OGCModel):
    mediaType: str | None = None
    encoding: str | None = None
    schema_: str | dict[str, Any] | None = Field(None, alias="schema")


class OutputRequest(OGCModel):
    format: Format | None = None
    transmissionMode: TransmissionMode = TransmissionMode.value


class Subscriber(OGCModel):
    """Callback URIs. ``successUrl`` (the 1.0 schema's misspelling) is accepted as ``successUri``."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")
    successUri: str | None = Field(None)
    inProgressUri: str | None = None
    failedUri: str | None = None

    @classmethod
    def parse(cls, data: Any) -> Subscriber:
        if isinstance(data, dict) and "successUrl" in data and "successUri" not in data:
            data = {**data, "successUri": data["successUrl"]}
            del data["successUrl"]
        return cls.model_validate(data)

    @field_validator("successUri", "inProgressUri", "failedUri")
    @classmethod
    def _http_only(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("callback URIs must be http(s) URLs")
        return value


class Execute(OGCModel):
    """An execute request. ``inputs`` stay raw JSON here; they are checked against the process."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")
    inputs: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, OutputRequest] | None = None
    #: None when the request does not say (raw for a synchronous answer, a results document for /results)
    response: ResponseMode | None = None
    subscriber: Subscriber | None = None

    @field_validator("subscriber", mode="before")
    @classmethod
    def _subscriber(cls, value: Any) -> Any:
        if value is None or isinstance(value, Subscriber):
            return value
        return Subscriber.parse(value)


class StatusInfo(OGCModel):
    processID: str | None = None
    type: Literal["process"] = "process"
    jobID: str
    status: StatusCode
    message: str | None = None
    created: datetime | None = None
    started: datetime | None = None
    finished: datetime | None = None
    updated: datetime | None = None
    progress: int | None = Field(None, ge=0, le=100)
    links: list[Link] | None = None


class JobList(OGCModel):
    jobs: list[StatusInfo]
    links: list[Link]
