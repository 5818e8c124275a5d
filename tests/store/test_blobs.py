"""One contract for every blob store: the local directory and an S3 bucket
(moto's S3 server on loopback, reached through boto3 as a real bucket
would be). Then what only S3 has (parts, keys, timeouts), the config, and
the Files API end to end on a bucket with the official SDK."""

from __future__ import annotations

import io
import os
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import openai
import pytest
from moto.server import ThreadedMotoServer

from interlock.app import create_app
from interlock.config import ConfigError, parse_config
from interlock.config.files import FilesConfig
from interlock.store.blobs import (
    BlobStore,
    BlobStoreUnavailable,
    LocalBlobStore,
    S3BlobStore,
    build_blob_store,
)
from tests.api.test_files import _client, _jsonl, _line
from tests.conftest import TEST_KEY, simulator_config
from tests.support.servers import InProcessGateway

BIG = 12 * 1024 * 1024  # over the 8 MiB multipart threshold: uploaded in two parts


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials, and nothing from the developer's own AWS setup."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def _s3(endpoint: str) -> Any:
    return boto3.session.Session().client("s3", endpoint_url=endpoint)


def _new_bucket(endpoint: str) -> str:
    bucket = f"test-{uuid.uuid4().hex}"
    _s3(endpoint).create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        return LocalBlobStore(tmp_path / "blobs")
    endpoint = request.getfixturevalue("s3_endpoint")
    return S3BlobStore(_new_bucket(endpoint), prefix="files/", endpoint_url=endpoint)


async def _read(store: BlobStore, blob_id: str, chunk_bytes: int = 1024 * 1024) -> bytes:
    return b"".join([chunk async for chunk in store.chunks(blob_id, chunk_bytes)])


async def test_a_blob_reads_back_whole_streamed_and_copied(store: BlobStore) -> None:
    content = b"".join(b'{"line": %d}\n' % n for n in range(1000))
    source = io.BytesIO(content)
    source.seek(0, io.SEEK_END)  # put reads from the start whatever the position
    await store.put("file-abc", source)
    assert await store.size("file-abc") == len(content)
    pieces = [chunk async for chunk in store.chunks("file-abc", 4096)]
    assert b"".join(pieces) == content and max(map(len, pieces)) <= 4096 and len(pieces) > 1
    with tempfile.TemporaryFile() as target:
        target.write(b"kept\n")
        await store.copy_to("file-abc", target)
        target.seek(0)
        assert target.read() == b"kept\n" + content


async def test_a_blob_larger_than_a_part_reads_back_whole(store: BlobStore) -> None:
    content = os.urandom(BIG)
    await store.put("file-big", io.BytesIO(content))
    assert await store.size("file-big") == BIG
    assert await _read(store, "file-big") == content
    with tempfile.TemporaryFile() as target:
        await store.copy_to("file-big", target)
        target.seek(0)
        assert target.read() == content


async def test_an_empty_blob_is_a_blob(store: BlobStore) -> None:
    await store.put("file-empty", io.BytesIO())
    assert await store.size("file-empty") == 0
    assert await _read(store, "file-empty") == b""


async def test_an_absent_blob_has_no_size_and_cannot_be_read(store: BlobStore) -> None:
    assert await store.size("file-none") is None
    with pytest.raises(FileNotFoundError):
        await _read(store, "file-none")
    with pytest.raises(FileNotFoundError), tempfile.TemporaryFile() as target:
        await store.copy_to("file-none", target)
    await store.delete("file-none")  # no error


async def test_delete_removes_only_that_blob(store: BlobStore) -> None:
    await store.put("file-1", io.BytesIO(b"one"))
    await store.put("file-2", io.BytesIO(b"two"))
    await store.delete("file-1")
    assert await store.size("file-1") is None
    with pytest.raises(FileNotFoundError):
        await _read(store, "file-1")
    assert await _read(store, "file-2") == b"two"


async def test_an_id_that_is_not_ours_is_refused(store: BlobStore) -> None:
    with pytest.raises(ValueError, match="not a blob id"):
        await store.put("../escape", io.BytesIO(b"x"))


async def test_s3_keys_carry_the_prefix_and_big_blobs_go_in_parts(s3_endpoint: str) -> None:
    bucket = _new_bucket(s3_endpoint)
    store = S3BlobStore(bucket, prefix="tenant-a/files/", endpoint_url=s3_endpoint)
    await store.put("file-big", io.BytesIO(os.urandom(BIG)))
    head = _s3(s3_endpoint).head_object(Bucket=bucket, Key="tenant-a/files/file-big")
    assert head["ETag"].strip('"').endswith("-2")  # a multipart upload's ETag


async def test_a_missing_bucket_is_unavailable_not_a_crash(s3_endpoint: str) -> None:
    store = S3BlobStore("no-such-bucket-here", endpoint_url=s3_endpoint)
    with pytest.raises(BlobStoreUnavailable):
        await store.put("file-1", io.BytesIO(b"x"))
    with pytest.raises(BlobStoreUnavailable, match="NoSuchBucket"):
        await _read(store, "file-1")


async def test_an_endpoint_that_never_answers_fails_within_the_timeouts() -> None:
    # Accepts connections (the kernel's backlog) and never reads or answers.
    with socket.create_server(("127.0.0.1", 0), backlog=1) as silent:
        port = silent.getsockname()[1]
        store = S3BlobStore(
            "bucket",
            endpoint_url=f"http://127.0.0.1:{port}",
            connect_timeout_s=0.25,
            read_timeout_s=0.25,
            max_attempts=2,
        )
        started = time.monotonic()
        with pytest.raises(BlobStoreUnavailable, match="did not answer"):
            await store.put("file-1", io.BytesIO(b"x"))
        with pytest.raises(BlobStoreUnavailable, match="did not answer"):
            await store.size("file-1")
        assert time.monotonic() - started < 20


def test_build_blob_store_follows_the_config(tmp_path: Path) -> None:
    local = build_blob_store(FilesConfig(), tmp_path / "default")
    assert isinstance(local, LocalBlobStore) and local.root == tmp_path / "default"
    chosen = build_blob_store(FilesConfig(dir=str(tmp_path / "mine")), tmp_path / "default")
    assert isinstance(chosen, LocalBlobStore) and chosen.root == tmp_path / "mine"
    settings = FilesConfig.model_validate(
        {"blobs": {"backend": "s3", "bucket": "b", "prefix": "p/", "addressing_style": "path"}}
    )
    s3 = build_blob_store(settings, tmp_path / "default")
    assert isinstance(s3, S3BlobStore) and (s3.bucket, s3.key("file-1")) == ("b", "p/file-1")


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        ({"blobs": {"backend": "s3"}}, "needs `bucket`"),
        ({"blobs": {"bucket": "b"}}, "bucket: only for blobs.backend 's3'"),
        ({"dir": "/x", "blobs": {"backend": "s3", "bucket": "b"}}, "`dir` is the local"),
        ({"blobs": {"backend": "gcs"}}, "files.blobs.backend"),
        ({"blobs": {"backend": "s3", "bucket": "b", "key": "k"}}, "files.blobs.key"),
    ],
)
def test_the_config_refuses_a_blob_store_it_cannot_build(
    files: dict[str, Any], problem: str
) -> None:
    raw = {**simulator_config(), "files": files}
    with pytest.raises(ConfigError, match="files") as info:
        parse_config(raw, env={"TEST_KEY": TEST_KEY})
    assert problem in str(info.value)


def test_the_sdk_round_trips_a_file_through_an_s3_bucket(s3_endpoint: str) -> None:
    bucket = _new_bucket(s3_endpoint)
    raw: dict[str, Any] = {
        **simulator_config(),
        "files": {
            "blobs": {
                "backend": "s3",
                "bucket": bucket,
                "prefix": "uploads/",
                "endpoint_url": s3_endpoint,
                "addressing_style": "path",
            }
        },
        "server": {"access_log": False},
        # Shared by the module's tests: no batch worker opening pool connections mid-test.
        "batch": {"enabled": False},
        "registry": {"enabled": False},
    }
    gateway = InProcessGateway(create_app(parse_config(raw, env={"TEST_KEY": TEST_KEY})))
    try:
        client = _client(gateway)
        content = _jsonl([_line(n) for n in range(50)])
        uploaded = client.files.create(
            file=("requests ü.jsonl", io.BytesIO(content)), purpose="batch"
        )
        s3 = _s3(s3_endpoint)
        stored = s3.get_object(Bucket=bucket, Key=f"uploads/{uploaded.id}")["Body"].read()
        assert stored == content
        assert client.files.content(uploaded.id).content == content

        raw_response = httpx.get(
            f"{gateway.base_url}/v1/files/{uploaded.id}/content",
            headers={"authorization": f"Bearer {TEST_KEY}"},
        )
        assert raw_response.headers["content-length"] == str(len(content))
        assert raw_response.headers["content-type"] == "application/octet-stream"
        assert raw_response.headers["content-disposition"] == (
            "attachment; filename*=utf-8''requests%20%C3%BC.jsonl"
        )

        assert client.files.delete(uploaded.id).deleted
        assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
        with pytest.raises(openai.NotFoundError):
            client.files.content(uploaded.id)
    finally:
        gateway.close()
