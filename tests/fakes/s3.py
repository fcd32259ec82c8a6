"""An S3 server on loopback for the object-store tests: moto's own server (real HTTP, the S3
protocol botocore speaks), or a skip when moto[server] is not installed."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from knowledge.files import FileSettings, FileStore, S3Settings, open_files
from tests.helpers import closed_port

BUCKET = "teambot"


@contextlib.contextmanager
def moto_s3() -> Iterator[str]:
    """moto's S3 server on a free loopback port; yields its URL."""
    server_module = pytest.importorskip("moto.server", reason="moto[server] is not installed")
    port = closed_port()
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@contextlib.asynccontextmanager
async def client(endpoint: str) -> AsyncIterator[Any]:
    """A plain aiobotocore S3 client for the server at `endpoint` (moto takes any key)."""
    from aiobotocore.session import get_session

    async with get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ) as s3:
        yield s3


async def create_bucket(endpoint: str, bucket: str = BUCKET) -> None:
    async with client(endpoint) as s3:
        await s3.create_bucket(Bucket=bucket)


async def bucket_keys(endpoint: str, bucket: str = BUCKET) -> list[str]:
    """Every object's key in the bucket."""
    async with client(endpoint) as s3:
        listed = await s3.list_objects_v2(Bucket=bucket)
    return [str(o["Key"]) for o in listed.get("Contents", [])]


@contextlib.asynccontextmanager
async def s3_files(
    monkeypatch: pytest.MonkeyPatch, prefix: str = "teambot/"
) -> AsyncIterator[FileStore]:
    """A file store on a fresh bucket of a moto server, keys in the environment as an operator
    would set them; botocore never asks an instance-metadata address for credentials."""
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("TEST_S3_KEY", "testing")
    monkeypatch.setenv("TEST_S3_SECRET", "testing")
    with moto_s3() as endpoint:
        settings = S3Settings(
            endpoint=endpoint,
            bucket=BUCKET,
            prefix=prefix,
            access_key_env="TEST_S3_KEY",
            secret_key_env="TEST_S3_SECRET",
        )
        files = open_files(FileSettings(store="s3", s3=settings), engine=None)  # type: ignore[arg-type]
        s3 = await files._s3()  # type: ignore[attr-defined]
        await s3.create_bucket(Bucket=BUCKET)
        try:
            yield files
        finally:
            await files.close()
