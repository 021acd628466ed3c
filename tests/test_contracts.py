"""Contracts that every implementation of a part keeps, each test run over all of them: the results storage
(local disk, S3 on a real SeaweedFS, S3 under a prefix) and the store (SQLite, PostgreSQL)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from ogcflow.domain import Failure, Job, JobFilter, JobRequest, OutputEntry, Subscriber, utcnow
from ogcflow.models import ResponseMode, StatusCode, TransmissionMode
from ogcflow.storage import LocalStorage, ResultStorage, make_key
from ogcflow.storage.local import CHUNK
from ogcflow.storage.s3 import S3Storage
from ogcflow.store import Store, migrate
from ogcflow.store.processes import NewPackage
from tests.conftest import new_postgres_db

# -- results storage ------------------------------------------------------------------------------------

STORAGES = ["local", "s3", "s3-prefix"]

#: opens the storage under test (again: a second instance on the same location, as another process would)
Opener = Callable[[], ResultStorage]


@pytest.fixture(params=STORAGES)
def open_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    if request.param == "local":
        root = tmp_path / "results"
        return lambda: LocalStorage(root)
    request.getfixturevalue("s3")  # the SeaweedFS of scripts/test.sh (or one of our own)
    url = f"s3://t-{uuid.uuid4().hex[:16]}" + ("/some/prefix" if request.param == "s3-prefix" else "")
    return lambda: S3Storage(url)


@pytest.fixture
def storage(open_storage: Opener) -> ResultStorage:
    return open_storage()


def test_storage_put_read_list(storage: ResultStorage, tmp_path: Path) -> None:
    binary = bytes(range(256)) * 3
    source = tmp_path / "source.json"
    source.write_bytes(b'{"a": 1}')
    assert storage.put_bytes("j1", "a.txt", b"alpha", "text/plain") == "j1/a.txt"
    assert storage.put_bytes("j1", "sub/dir/b.bin", binary) == "j1/sub/dir/b.bin"
    assert storage.put_file("j1", "c.json", source, "application/json") == "j1/c.json"
    assert storage.put_bytes("j2", "a.txt", b"other job") == "j2/a.txt"

    assert storage.read("j1/a.txt") == b"alpha"
    assert storage.read("j1/sub/dir/b.bin") == binary
    assert storage.read("j1/c.json") == b'{"a": 1}'
    assert storage.read("j2/a.txt") == b"other job"
    assert [storage.size(k) for k in ("j1/a.txt", "j1/sub/dir/b.bin", "j1/c.json")] == [5, len(binary), 8]
    assert storage.exists("j1/sub/dir/b.bin") and storage.exists("j1/c.json")
    assert not storage.exists("j1/b.bin") and not storage.exists("j1/sub/dir") and not storage.exists("j3/a.txt")
    assert storage.list_job("j1") == ["j1/a.txt", "j1/c.json", "j1/sub/dir/b.bin"]
    assert storage.list_job("j2") == ["j2/a.txt"]
    assert storage.list_job("j3") == []

    # a second put of a key replaces the file
    assert storage.put_bytes("j1", "a.txt", b"beta!!") == "j1/a.txt"
    assert storage.read("j1/a.txt") == b"beta!!" and storage.size("j1/a.txt") == 6
    assert storage.list_job("j1") == ["j1/a.txt", "j1/c.json", "j1/sub/dir/b.bin"]

    # url names the key; a local path, where there is one, is the file itself
    for key in storage.list_job("j1"):
        assert storage.url(key).endswith("/" + key)
        assert storage.url(key).split(":", 1)[0] in ("file", "s3")
        path = storage.local_path(key)
        assert path is None or path.read_bytes() == storage.read(key)


def test_storage_streams_in_bounded_chunks(storage: ResultStorage) -> None:
    data = bytes(range(251)) * (CHUNK * 5 // 2 // 251)  # about 2.5 chunks, not a multiple of the chunk size
    key = storage.put_bytes("big", "nested/blob.bin", data)
    chunks = list(storage.iter_bytes(key))
    assert b"".join(chunks) == data
    assert len(chunks) >= 3 and max(len(c) for c in chunks) <= CHUNK
    assert list(storage.iter_bytes(storage.put_bytes("big", "empty.bin", b""))) in ([], [b""])


def test_storage_delete_job_removes_only_that_job(storage: ResultStorage) -> None:
    for job in ("j1", "j10", "j", "j1x"):  # ids that share a prefix with j1
        storage.put_bytes(job, "a.txt", job.encode())
        storage.put_bytes(job, "deep/er/b.txt", b"b")
    storage.delete_job("j1")
    assert storage.list_job("j1") == []
    assert not storage.exists("j1/a.txt") and not storage.exists("j1/deep/er/b.txt")
    with pytest.raises(FileNotFoundError):
        storage.read("j1/a.txt")
    for job in ("j10", "j", "j1x"):
        assert storage.list_job(job) == [f"{job}/a.txt", f"{job}/deep/er/b.txt"]
        assert storage.read(f"{job}/a.txt") == job.encode()
    storage.delete_job("j1")  # again: nothing to do
    storage.delete_job("never-written")
    assert storage.list_job("j10") == ["j10/a.txt", "j10/deep/er/b.txt"]


@pytest.mark.parametrize("key", ["j1/missing.txt", "nojob/missing.txt", "j1/sub/missing.txt"])
def test_storage_missing_keys_raise_file_not_found(storage: ResultStorage, key: str) -> None:
    storage.put_bytes("j1", "there.txt", b"x")
    assert not storage.exists(key)
    with pytest.raises(FileNotFoundError):
        storage.read(key)
    with pytest.raises(FileNotFoundError):
        storage.size(key)
    with pytest.raises(FileNotFoundError):
        list(storage.iter_bytes(key))


BAD_NAMES = ["../x", "a/../../x", "..", ".", "a/./b", "/abs", "a//b", "", "a/", ".hidden", "sub/.hidden",
             "a b", "a\\b", "x" * 256]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_storage_refuses_invalid_names(storage: ResultStorage, name: str) -> None:
    with pytest.raises(ValueError, match="not a valid storage name"):
        make_key("j", name)
    with pytest.raises(ValueError):
        storage.put_bytes("j", name, b"x")
    with pytest.raises(ValueError):
        storage.read(f"j/{name}")
    assert storage.exists(f"j/{name}") is False
    if "/" not in name:  # as a job id
        with pytest.raises(ValueError):
            storage.put_bytes(name, "a.txt", b"x")
        with pytest.raises(ValueError):
            storage.list_job(name)
        with pytest.raises(ValueError):
            storage.delete_job(name)
    assert storage.list_job("j") == []
    assert make_key("j", "a/b.c-d_e") == "j/a/b.c-d_e"


def test_storage_keeps_names_ending_in_part(storage: ResultStorage) -> None:
    """'.part' is a valid name like any other (make_key accepts it)."""
    assert storage.put_bytes("j", "a.txt.part", b"a file of its own") == "j/a.txt.part"
    storage.put_bytes("j", "a.txt", b"a")
    assert storage.list_job("j") == ["j/a.txt", "j/a.txt.part"]
    assert storage.read("j/a.txt.part") == b"a file of its own"


def test_storage_second_instance_sees_writes_and_deletes(open_storage: Opener) -> None:
    """The API and the workers are different processes, each with its own instance of the storage."""
    writer, reader = open_storage(), open_storage()
    writer.put_bytes("j", "a.txt", b"first")
    assert reader.list_job("j") == ["j/a.txt"]
    writer.put_bytes("j", "b.txt", b"second")
    assert reader.exists("j/b.txt")
    assert reader.size("j/b.txt") == 6
    writer.delete_job("j")
    assert not reader.exists("j/a.txt")


# -- the store --------------------------------------------------------------------------------------------

STORES = ["sqlite", "postgresql"]


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = f"sqlite:///{tmp_path / 'store.db'}" if request.param == "sqlite" else new_postgres_db()
    migrate(url)
    st = Store(url)
    yield st
    st.dispose()


T0 = (utcnow() - timedelta(days=1)).replace(microsecond=123456)


def job(job_id: str, *, namespace: str = "n1", process_id: str = "p", status: StatusCode = StatusCode.accepted,
        created: datetime = T0, engine: str = "local", duration: float | None = None,
        started: datetime | None = None) -> Job:
    finished = None
    if duration is not None:
        started = started or created
        finished = started + timedelta(seconds=duration)
    return Job(id=job_id, process_id=process_id, status=status, created=created, updated=created,
               request=JobRequest(inputs={"x": 1}), namespace=namespace, engine=engine, message=status.value,
               started=started, finished=finished, duration=duration)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_store_claims_the_oldest_accepted_job_once(store: Store) -> None:
    jobs = store.jobs
    jobs.create(job("third", created=at(3)))
    jobs.create(job("first", created=at(1)))
    jobs.create(job("second", created=at(2), namespace="n2"))  # the queue spans every namespace
    jobs.create(job("prefect-one", created=at(0), engine="prefect"))
    jobs.create(job("running", created=at(-1), status=StatusCode.running, started=at(-1)))
    jobs.create(job("done", created=at(-2), status=StatusCode.successful, duration=1))

    claimed = jobs.claim("local", "host:1")
    assert claimed is not None and claimed.id == "first"
    assert claimed.status is StatusCode.running and claimed.worker == "host:1"
    assert claimed.started is not None and claimed.heartbeat is not None and claimed.request.inputs == {"x": 1}
    stored = jobs.get("first", "n1")
    assert stored is not None and stored.status is StatusCode.running and stored.worker == "host:1"
    second = jobs.claim("local", "host:2")
    assert second is not None and second.id == "second" and second.namespace == "n2"
    third = jobs.claim("local", "host:1")
    assert third is not None and third.id == "third"
    assert jobs.claim("local", "host:1") is None
    other = jobs.claim("prefect", "host:1")
    assert other is not None and other.id == "prefect-one"
    assert jobs.claim("prefect", "host:1") is None
    assert jobs.status_of(["running", "done"]) == {"running": StatusCode.running, "done": StatusCode.successful}


def test_store_concurrent_claims_take_each_job_once(store: Store) -> None:
    ids = [f"job-{i}" for i in range(12)]
    store.jobs.create_many([job(i, created=at(n)) for n, i in enumerate(ids)])
    taken: list[list[str]] = [[] for _ in range(4)]
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            while (claimed := store.jobs.claim("local", f"host:{n}")) is not None:
                taken[n].append(claimed.id)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    everything = [i for part in taken for i in part]
    assert sorted(everything) == sorted(ids)  # every job taken, none twice
    for n, part in enumerate(taken):
        for job_id in part:
            stored = store.jobs.get(job_id, "n1")
            assert stored is not None and stored.worker == f"host:{n}"


def test_store_state_changes_are_conditional(store: Store) -> None:
    jobs = store.jobs
    manifest = {"out": OutputEntry(media_type="application/json", value=[1, 2])}

    jobs.create(job("a"))
    assert jobs.progress("a", 10, "not yet") is False  # only a running job reports progress
    assert jobs.mark_running("a", worker="w", run_ref="run-1") is True
    assert jobs.mark_running("a") is False  # not accepted any more
    assert jobs.progress("a", 150, "half way") is True
    a = jobs.get("a", "n1")
    assert a is not None and a.status is StatusCode.running and a.worker == "w" and a.run_ref == "run-1"
    assert a.progress == 100 and a.message == "half way" and a.started is not None  # progress is capped
    assert jobs.finish("a", StatusCode.successful, message="done", results=manifest, log="a/job.log") is True
    a = jobs.get("a", "n1")
    assert a is not None and a.status is StatusCode.successful and a.results == manifest and a.progress == 100
    assert a.finished is not None and a.started is not None and a.duration is not None
    assert a.duration == pytest.approx((a.finished - a.started).total_seconds(), abs=1e-3) and a.duration >= 0
    assert jobs.finish("a", StatusCode.failed, message="late", error=Failure(detail="late")) is False
    after = jobs.get("a", "n1")
    assert after is not None and after.status is StatusCode.successful and after.results == manifest
    assert after.error is None and after.message == "done"

    # dismissed while accepted: neither started nor finished by a worker afterwards
    jobs.create(job("b"))
    before = jobs.dismiss("b", "n1")
    assert before is not None and before.status is StatusCode.accepted and before.id == "b"
    assert jobs.mark_running("b", worker="w") is False
    assert jobs.finish("b", StatusCode.successful, results=manifest) is False
    b = jobs.get("b", "n1")
    assert b is not None and b.status is StatusCode.dismissed and b.results is None and b.worker is None
    assert b.finished is not None and b.message == "dismissed by the user"

    # dismissed while running: the worker's finish loses
    jobs.create(job("c"))
    assert jobs.mark_running("c", worker="w")
    before = jobs.dismiss("c", "n1")
    assert before is not None and before.status is StatusCode.running
    assert jobs.finish("c", StatusCode.successful, message="done", results=manifest) is False
    assert jobs.fail_lost("c", "worker gone") is False
    c = jobs.get("c", "n1")
    assert c is not None and c.status is StatusCode.dismissed and c.results is None
    assert c.message == "dismissed by the user" and c.duration is not None and c.duration >= 0

    # dismissing an ended job removes its results, and returns it as it was
    before = jobs.dismiss("a", "n1")
    assert before is not None and before.status is StatusCode.successful and before.results == manifest
    assert before.log == "a/job.log"
    a = jobs.get("a", "n1")
    assert a is not None and a.status is StatusCode.dismissed and a.results is None and a.log is None
    again = jobs.dismiss("a", "n1")
    assert again is not None and again.status is StatusCode.dismissed
    assert jobs.dismiss("nope", "n1") is None

    # a lost job fails with the reason
    jobs.create(job("d"))
    assert jobs.mark_running("d")
    assert jobs.fail_lost("d", "killed by signal 9") is True
    d = jobs.get("d", "n1")
    assert d is not None and d.status is StatusCode.failed and d.error == Failure(detail="killed by signal 9")
    assert d.message == "killed by signal 9"


def test_store_namespaces_are_isolated(store: Store) -> None:
    jobs = store.jobs
    jobs.create(job("mine", namespace="n1"))
    jobs.create(job("theirs", namespace="n2", created=at(1)))
    assert jobs.get("mine", "n2") is None
    assert jobs.get("theirs", "n1") is None
    assert [j.id for j in jobs.find(JobFilter(namespace="n2"))] == ["theirs"]
    assert [j.id for j in jobs.find(JobFilter(namespace="n1"))] == ["mine"]
    assert jobs.find(JobFilter(namespace="n3")) == []
    assert jobs.dismiss("mine", "n2") is None
    mine = jobs.get("mine", "n1")
    assert mine is not None and mine.status is StatusCode.accepted
    assert (jobs.count("n1"), jobs.count("n2"), jobs.count("n3")) == (1, 1, 0)
    engine_view = jobs.for_engine("theirs")
    assert engine_view is not None and engine_view.namespace == "n2"


def test_store_find_filters(store: Store) -> None:
    jobs = store.jobs
    now = utcnow()
    jobs.create_many([
        job("j1", process_id="p", status=StatusCode.successful, created=at(1), duration=5),
        job("j2", process_id="q", status=StatusCode.failed, created=at(2), duration=50),
        job("j3", process_id="p", status=StatusCode.accepted, created=at(3)),
        job("j4", process_id="p", status=StatusCode.running, created=at(4), started=now - timedelta(seconds=100)),
        job("j5", process_id="r", status=StatusCode.dismissed, created=at(5), duration=0.5),
        job("other-ns", namespace="n2", process_id="p", status=StatusCode.successful, created=at(6), duration=5),
    ])

    def ids(**kw: Any) -> list[str]:
        return [j.id for j in jobs.find(JobFilter(namespace="n1", **kw))]

    assert ids() == ["j5", "j4", "j3", "j2", "j1"]  # newest first
    assert ids(statuses=[StatusCode.successful, StatusCode.failed]) == ["j2", "j1"]
    assert ids(statuses=[StatusCode.running]) == ["j4"]
    assert ids(process_ids=["p"]) == ["j4", "j3", "j1"]
    assert ids(process_ids=["p", "r"]) == ["j5", "j4", "j3", "j1"]
    assert ids(process_ids=["p"], statuses=[StatusCode.accepted]) == ["j3"]
    assert ids(process_ids=["nothing"]) == []
    # the datetime interval is closed
    assert ids(datetime_start=at(2), datetime_end=at(4)) == ["j4", "j3", "j2"]
    assert ids(datetime_start=at(4)) == ["j5", "j4"]
    assert ids(datetime_end=at(1)) == ["j1"]
    assert ids(datetime_start=at(2).astimezone(timezone(timedelta(hours=2))), datetime_end=at(2)) == ["j2"]
    # durations: of ended jobs as recorded, of running jobs so far; jobs not started have none
    assert ids(min_duration=10) == ["j4", "j2"]
    assert ids(max_duration=10) == ["j5", "j1"]
    assert ids(min_duration=1, max_duration=60) == ["j2", "j1"]
    assert ids(min_duration=5, max_duration=5) == ["j1"]
    assert ids(min_duration=1e12) == []
    assert ids(max_duration=1e12) == ["j5", "j4", "j3", "j2", "j1"]
    # pages: one row more than the limit when there are more
    assert ids(limit=2) == ["j5", "j4", "j3"]
    assert ids(limit=2, offset=2) == ["j3", "j2", "j1"]
    assert ids(limit=2, offset=4) == ["j1"]
    assert ids(limit=5) == ["j5", "j4", "j3", "j2", "j1"]
    assert ids(limit=4) == ["j5", "j4", "j3", "j2", "j1"]
    assert ids(limit=10, offset=5) == []
    assert ids(process_ids=["p"], limit=1, offset=1) == ["j3", "j1"]


def test_store_find_orders_equal_times_by_id(store: Store) -> None:
    store.jobs.create_many([job(i, created=at(7)) for i in ("tie-b", "tie-c", "tie-a")])
    pages = [[j.id for j in store.jobs.find(JobFilter(namespace="n1", limit=1, offset=n))] for n in range(3)]
    assert pages == [["tie-c", "tie-b"], ["tie-b", "tie-a"], ["tie-a"]]


def full_job(job_id: str, status: StatusCode) -> Job:
    now = utcnow()
    request = JobRequest(
        inputs={"text": "héllo ✓ \"quoted\" \n", "n": 3, "x": 0.1, "tiny": 1e-300, "big": 2 ** 53 + 1, "neg": -7,
                "nested": {"list": [1, None, True, False, {"k": "v"}], "empty": {}, "none": []}, "null": None},
        outputs={"a": TransmissionMode.value, "b": TransmissionMode.reference},
        response=ResponseMode.document, base_url="https://example.test/ogc",
        subscriber=Subscriber(success_uri="https://hooks.test/ok", failed_uri="https://hooks.test/ko"),
    )
    return Job(id=job_id, process_id="proc", status=status, created=now - timedelta(seconds=3),
               updated=now, request=request, namespace="n1", mode="sync", engine="prefect",
               message="a message", progress=42, started=now - timedelta(seconds=2), finished=now,
               duration=2.0, worker="host:123", heartbeat=now - timedelta(seconds=1), run_ref="run-xyz",
               log=f"{job_id}/job.log")


MANIFEST = {
    "json": OutputEntry(media_type="application/json", value={"a": [1, 2.5, None], "b": {"c": "ü"}}),
    "text": OutputEntry(media_type="text/plain", value="plain text"),
    "null": OutputEntry(media_type="application/json", value=None),
    "file": OutputEntry(media_type="image/tiff", key="id/file.tif", size=12, binary=True),
    "ref": OutputEntry(media_type="application/json", key="id/ref.json", size=3),
}
FAILURE = Failure(detail="band nir9 not found", status=400, type="https://errors.test/bad-band", title="Bad band")


def test_store_json_columns_round_trip(store: Store) -> None:
    jobs = store.jobs
    ok = replace(full_job("ok", StatusCode.successful), results=MANIFEST)
    failed = replace(full_job("failed", StatusCode.failed), error=FAILURE)
    jobs.create(ok)
    jobs.create_many([failed])
    assert jobs.get("ok", "n1") == ok
    assert jobs.for_engine("ok") == ok
    assert jobs.get("failed", "n1") == failed

    # the same through the state changes
    queued = full_job("queued", StatusCode.accepted)
    queued.started = queued.finished = queued.duration = None
    jobs.create(queued)
    assert jobs.get("queued", "n1") == queued
    assert jobs.mark_running("queued")
    assert jobs.finish("queued", StatusCode.successful, results=MANIFEST)
    done = jobs.get("queued", "n1")
    assert done is not None and done.results == MANIFEST and done.request == queued.request
    jobs.create(replace(queued, id="queued-2"))
    assert jobs.finish("queued-2", StatusCode.failed, message="bad", error=FAILURE)
    bad = jobs.get("queued-2", "n1")
    assert bad is not None and bad.error == FAILURE and bad.results is None and bad.started is not None


def test_store_callbacks_queue_due_attempted(store: Store) -> None:
    cbs = store.callbacks
    payload = {"jobID": "j1", "status": "successful", "links": [{"href": "https://x.test/ü", "rel": "self"}],
               "n": 0.25, "none": None}
    cbs.queue("j1", "https://hooks.test/a", payload)
    cbs.queue("j2", "https://hooks.test/b", {"k": [1, 2]})
    due = cbs.due()
    assert [(c.job_id, c.url, c.attempts, c.state) for c in due] == [
        ("j1", "https://hooks.test/a", 0, "pending"), ("j2", "https://hooks.test/b", 0, "pending")]
    assert due[0].payload == payload and due[0].last_error is None
    assert due[0].next_at.tzinfo is not None and due[0].next_at <= utcnow()
    first, second = due

    cbs.attempted(first.id, delivered=True, error=None, retry_in=None)
    [delivered] = cbs.of_job("j1")
    assert (delivered.state, delivered.attempts, delivered.last_error) == ("delivered", 1, None)

    cbs.attempted(second.id, delivered=False, error="503 from the hook", retry_in=3600)
    [waiting] = cbs.of_job("j2")
    assert (waiting.state, waiting.attempts, waiting.last_error) == ("pending", 1, "503 from the hook")
    assert waiting.next_at > utcnow() + timedelta(seconds=3500)
    assert cbs.due() == []  # delivered, or not due before an hour

    cbs.attempted(second.id, delivered=False, error="gave up", retry_in=None)
    [failed] = cbs.of_job("j2")
    assert (failed.state, failed.attempts, failed.last_error) == ("failed", 2, "gave up")

    for n in range(3):
        cbs.queue("j3", f"https://hooks.test/{n}", {"n": n})
    assert [c.url for c in cbs.due(limit=2)] == ["https://hooks.test/0", "https://hooks.test/1"]
    retried = cbs.due(limit=1)[0]
    cbs.attempted(retried.id, delivered=False, error="timeout", retry_in=0)
    again = [c for c in cbs.due() if c.id == retried.id]
    assert len(again) == 1 and again[0].attempts == 1 and again[0].state == "pending"
    assert cbs.of_job("nothing") == []


def package(process_id: str, label: str = "Say") -> NewPackage:
    return NewPackage(id=process_id, version="1.0", description={"id": process_id, "title": label, "inputs": {}},
                      package=f"cwlVersion: v1.2\nid: {process_id}\nlabel: {label}\n",
                      media_type="application/cwl+yaml",
                      entry=process_id, inputs_kind={"text": "File", "many": "File[]"})


def test_store_processes_per_namespace(store: Store) -> None:
    rows = store.processes
    empty_a, empty_b = rows.version("a"), rows.version("b")
    assert rows.all("a") == [] and rows.get("a", "say") is None and rows.stamp("a", "say") is None

    assert rows.insert("a", package("say")) is True
    assert rows.insert("a", package("say", label="Changed")) is False  # duplicate: nothing overwritten
    record = rows.get("a", "say")
    assert record is not None and record.description == package("say").description
    assert (record.namespace, record.id, record.kind, record.entry) == ("a", "say", "cwl", "say")
    assert record.package == package("say").package and record.media_type == "application/cwl+yaml"
    assert record.inputs_kind == {"text": "File", "many": "File[]"}
    assert rows.get("b", "say") is None and rows.all("b") == []
    v1 = rows.version("a")
    assert v1 != empty_a and rows.version("b") == empty_b
    stamp = rows.stamp("a", "say")
    assert stamp is not None and stamp == record.updated

    assert rows.insert("b", package("say", label="B's")) is True  # the same id in another namespace
    assert rows.insert("a", package("shout")) is True
    assert sorted(r.id for r in rows.all("a")) == ["say", "shout"]
    v2 = rows.version("a")
    assert v2 != v1

    assert rows.update("a", package("say", label="Say it")) is True
    changed = rows.get("a", "say")
    assert changed is not None and changed.description["title"] == "Say it" and "Say it" in changed.package
    assert changed.updated > record.updated
    new_stamp = rows.stamp("a", "say")
    assert new_stamp is not None and new_stamp > stamp
    theirs = rows.get("b", "say")
    assert theirs is not None and theirs.description["title"] == "B's"
    v3 = rows.version("a")
    assert v3 != v2
    assert rows.update("c", package("say")) is False  # not deployed there
    assert rows.get("c", "say") is None
    version_b = rows.version("b")

    assert rows.delete("a", "say") is True
    assert rows.get("a", "say") is None and rows.delete("a", "say") is False
    assert [r.id for r in rows.all("a")] == ["shout"]
    assert rows.version("a") not in (v1, v2, v3)
    assert rows.get("b", "say") is not None and rows.version("b") == version_b
    assert rows.delete("c", "shout") is False and rows.get("a", "shout") is not None

    assert rows.seeded("a") == set()
    rows.mark_seeded("a", "water-bodies")
    rows.mark_seeded("a", "water-bodies")  # a second time (another process at the same moment): no error
    rows.mark_seeded("a", "other")
    assert rows.seeded("a") == {"water-bodies", "other"}
    assert rows.seeded("b") == set()


def test_store_times_are_utc_aware(store: Store) -> None:
    created = datetime(2031, 5, 6, 7, 8, 9, 101112, tzinfo=UTC)
    store.jobs.create(job("t", created=created))
    got = store.jobs.get("t", "n1")
    assert got is not None and got.created == created and got.created.utcoffset() == timedelta(0)
