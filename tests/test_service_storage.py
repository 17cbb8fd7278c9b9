"""Blob storage (local, S3 through moto's server) and job stores (SQLite, Redis)."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from facecloak.contract.records import ItemRecord, JobRecord
from facecloak.contract.storage import BlobNotFound, LocalStorage, S3Storage, Storage, open_storage
from facecloak.contract.store import JobStore, SQLiteJobStore
from facecloak.contract.store_redis import RedisJobStore
from tests.service_fixtures import RedisServer, free_port


def exercise(store: Storage) -> None:
    store.put("jobs/j1/in/0", b"one")
    store.put("jobs/j1/in/0", b"two")  # overwrite is atomic and final
    store.put("jobs/j1/out/0-x", b"res")
    assert store.get("jobs/j1/in/0") == b"two"
    store.delete("jobs/j1/in/0")
    store.delete("jobs/j1/in/0")  # idempotent
    with pytest.raises(BlobNotFound):
        store.get("jobs/j1/in/0")
    store.delete_prefix("jobs/j1")
    with pytest.raises(BlobNotFound):
        store.get("jobs/j1/out/0-x")
    store.check()
    for bad in ("../x", "/abs", "a/../b", "a//b", ""):
        with pytest.raises(ValueError):
            store.put(bad, b"x")


def test_local_storage(tmp_path: Path) -> None:
    exercise(LocalStorage(tmp_path))
    assert isinstance(open_storage(None, tmp_path), LocalStorage)
    assert isinstance(open_storage(str(tmp_path / "x"), tmp_path), LocalStorage)


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    moto_server = pytest.importorskip("moto.server")
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def test_s3_storage(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    _s3_env(monkeypatch)
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket="photos")
    store = open_storage("s3://photos/facecloak", Path("/nonexistent"), s3_endpoint)
    assert isinstance(store, S3Storage)
    exercise(store)
    store.put("jobs/j2/in/0", b"x")
    keys = boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket="photos")
    assert [o["Key"] for o in keys["Contents"]] == ["facecloak/jobs/j2/in/0"]


def _s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(params=["local", "s3"])
def blobs(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Storage:
    """A fresh, empty storage: a local folder, then an S3 bucket (moto's server) under a key
    prefix of its own, so that keys come back without it."""
    if request.param == "local":
        return LocalStorage(tmp_path / "blobs")
    import boto3

    endpoint: str = request.getfixturevalue("s3_endpoint")
    _s3_env(monkeypatch)
    bucket = "stale-" + request.node.name.split("[")[0].replace("_", "-")[-40:].strip("-")
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    return open_storage(f"s3://{bucket}/facecloak", Path("/nonexistent"), endpoint)


def _next_second() -> float:
    """Wait for the next whole second and return it.

    S3 lists LastModified to the second (moto too, like AWS), rounded down: a blob written
    before this instant reads as older than it, one written after it reads as not older.
    """
    bound = float(int(time.time()) + 1)
    while time.time() < bound:
        time.sleep(bound - time.time() + 0.01)
    return bound


def test_stale_lists_folders_whose_blobs_are_all_older(blobs: Storage) -> None:
    """The orphan sweep's query: real upload times on both sides of ``before``."""
    for key in (
        "jobs/old/in/0",
        "jobs/old/in/1",
        "jobs/mixed/in/0",  # a newer blob below comes later: the folder is still in use
        "jobs/flat",  # a blob directly under the prefix counts as its own entry
        "jobsx/old/in/0",  # a sibling prefix that merely starts with the same letters
        "verify/old/original",  # another prefix
    ):
        blobs.put(key, b"o")
    before = _next_second()
    for key in ("jobs/new/in/0", "jobs/mixed/out/0-x"):
        blobs.put(key, b"n")

    assert sorted(blobs.stale("jobs", before)) == ["jobs/flat", "jobs/old"]
    assert sorted(blobs.stale("jobs/", before)) == ["jobs/flat", "jobs/old"]
    assert blobs.stale("verify", before) == ["verify/old"]
    assert blobs.stale("nothing-here", before) == []
    assert blobs.stale("jobs", before - 3600) == []  # nothing is an hour old yet
    later = sorted(blobs.stale("jobs", time.time() + 60))
    assert later == ["jobs/flat", "jobs/mixed", "jobs/new", "jobs/old"]
    with pytest.raises(ValueError):
        blobs.stale("../jobs", before)


def test_s3_stale_reads_every_page(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """More than one ListObjectsV2 page (1000 keys): a folder's newest blob and a stale
    folder that both come after the first page are still seen."""
    import boto3

    _s3_env(monkeypatch)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="paged")
    store = open_storage("s3://paged/fc", Path("/nonexistent"), s3_endpoint)
    # page 1 is exactly fc/jobs/busy/0000 .. 0999, all old; busy's new blob and the stale
    # folder "tail" sort after them, on page 2
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda i: store.put(f"jobs/busy/{i:04d}", b"o"), range(1000)))
    store.put("jobs/tail/in/0", b"o")
    before = _next_second()
    store.put("jobs/busy/zz-new", b"n")

    first = s3.list_objects_v2(Bucket="paged", Prefix="fc/jobs/")
    assert first["IsTruncated"] and first["KeyCount"] == 1000
    assert first["Contents"][-1]["Key"] == "fc/jobs/busy/0999"
    assert store.stale("jobs", before) == ["jobs/tail"]
    assert sorted(store.stale("jobs", time.time() + 60)) == ["jobs/busy", "jobs/tail"]


def job(job_id: str, tenant: str = "t", key: str | None = None, t: float = 1.0) -> JobRecord:
    return JobRecord(
        id=job_id,
        tenant=tenant,
        idempotency_key=key,
        created_at=t,
        items=[ItemRecord(index=0, filename="a.png")],
    )


def exercise_jobstore(store: JobStore) -> None:
    store.ping()
    assert store.create(job("j1", t=1.0)) == (job("j1", t=1.0), True)
    store.create(job("j2", t=2.0))
    store.create(job("j3", tenant="other", t=3.0))
    assert [j.id for j in store.for_tenant("t")] == ["j2", "j1"]
    assert [j.id for j in store.for_tenant("t", before=2.0)] == ["j1"]

    def finish(rec: JobRecord) -> None:
        rec.items[0].status = "protected"
        assert rec.settle(ttl_seconds=10)

    updated = store.update("j1", finish)
    assert updated is not None and updated.status == "succeeded"
    assert store.get("j1") == updated
    assert store.update("missing", finish) is None
    assert store.counts() == {"queued": 2, "succeeded": 1} or store.counts() == {
        "queued": 2,
        "succeeded": 1,
        "running": 0,
    }
    assert {j.id for j in store.active()} == {"j2", "j3"}
    assert [j.id for j in store.finished_before(updated.finished_at + 11)] == ["j1"]  # type: ignore[operator]
    store.add_stats(faces=2, face_seconds=3.5)
    store.add_stats(faces=1)
    assert store.stats() == {"faces": 3.0, "face_seconds": 3.5}

    # one idempotency key, many concurrent creates: exactly one job
    results: list[tuple[JobRecord, bool]] = []

    def create(i: int) -> None:
        results.append(store.create(job(f"k{i}", key="same", t=10.0 + i)))

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sum(created for _, created in results) == 1
    assert len({rec.id for rec, _ in results}) == 1

    # concurrent read-modify-writes are not lost
    def bump(_: int) -> None:
        for _ in range(10):
            store.update(
                "j2", lambda rec: setattr(rec.items[0], "attempts", rec.items[0].attempts + 1)
            )

    threads = [threading.Thread(target=bump, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert store.get("j2").items[0].attempts == 40  # type: ignore[union-attr]
    store.delete("j1")
    assert store.get("j1") is None
    winner = results[0][0].id
    store.delete(winner)
    assert store.create(job("fresh", key="same"))[1]  # the key is free again


def test_sqlite_jobstore(tmp_path: Path) -> None:
    exercise_jobstore(SQLiteJobStore(tmp_path / "jobs.sqlite3"))


@pytest.mark.redis
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
def test_redis_jobstore(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.start()
    try:
        exercise_jobstore(RedisJobStore(server.url))
    finally:
        server.stop()


def test_gateway_on_s3(s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from fastapi.testclient import TestClient

    from tests.service_fixtures import A, make_app, png, wait_job

    _s3_env(monkeypatch)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="gateway")
    app = make_app(tmp_path, delay=0.0, storage_url="s3://gateway/fc", s3_endpoint_url=s3_endpoint)
    with TestClient(app) as c:
        assert c.get("/readyz").json()["checks"]["storage"] == "ok"
        r = c.post("/v1/protect", headers=A, files=[("files", ("a.png", png()))])
        job = wait_job(c, r.json()["id"], A)
        assert c.get(f"/v1/jobs/{job['id']}/result", headers=A).content == b"PROTECTED:" + png()
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="gateway").get("Contents", [])]
        assert len(keys) == 1 and keys[0].startswith(f"fc/jobs/{job['id']}/out/0-")


def test_expiry_then_purge(tmp_path: Path) -> None:
    from facecloak.contract.context import Context
    from facecloak.contract.records import now
    from facecloak.contract.runner import reap
    from facecloak.settings import Settings

    ctx = Context.from_settings(
        Settings(data_dir=tmp_path, result_ttl_seconds=0, broker_url=None, storage_url=None)
    )
    rec = job("old")
    rec.items[0].status = "protected"
    rec.items[0].result_key = "jobs/old/out/0-x"
    rec.settle(ttl_seconds=0)
    ctx.store.create(rec)
    ctx.storage.put("jobs/old/out/0-x", b"result")
    reap(ctx, lambda *_: None, lambda _: None)
    after = ctx.store.get("old")
    assert after is not None and after.result_expired and after.purge_at is not None
    with pytest.raises(BlobNotFound):
        ctx.storage.get("jobs/old/out/0-x")
    assert after.purge_at <= now()
    reap(ctx, lambda *_: None, lambda _: None)
    assert ctx.store.get("old") is None
