"""Files in an S3-compatible object store (`[files] store = "s3"`): MinIO, Ceph, AWS S3 …,
through aiobotocore (async botocore). Keys are `[files.s3] prefix` + the file's key; the
access keys come from the variables `[files.s3]` names (AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY by default), in the environment or the TEAMBOT_SECRETS_FILE; unset,
botocore's own chain decides (an instance role)."""

from __future__ import annotations

import hashlib
from contextlib import AsyncExitStack
from typing import Any

from knowledge.files.base import FileStoreError, StoredFile
from knowledge.files.config import S3Settings
from knowledge.sources.secrets import secret
from knowledge.timestamps import utcnow

MISSING = {"NoSuchKey", "404", "NotFound"}
RETRIES = 3  # attempts per call (botocore's standard retry mode)


class S3Files:
    """One client, opened on first use and kept until `close`."""

    name = "s3"

    def __init__(self, settings: S3Settings) -> None:
        if not settings.bucket:
            raise FileStoreError(
                '[files] store = "s3" needs [files.s3] bucket (TEAMBOT_FILES__S3__BUCKET)'
            )
        self._settings = settings
        self._prefix = settings.prefix
        self._stack = AsyncExitStack()
        self._client: Any = None

    async def _s3(self) -> Any:
        if self._client is None:
            from aiobotocore.config import AioConfig
            from aiobotocore.session import get_session

            s = self._settings
            config = AioConfig(
                s3={"addressing_style": "path" if s.path_style else "virtual"},
                retries={"max_attempts": RETRIES, "mode": "standard"},
                connect_timeout=5,
                read_timeout=60,
            )
            self._client = await self._stack.enter_async_context(
                get_session().create_client(
                    "s3",
                    endpoint_url=s.endpoint or None,
                    region_name=s.region,
                    aws_access_key_id=secret(s.access_key_env) or None,
                    aws_secret_access_key=secret(s.secret_key_env) or None,
                    config=config,
                )
            )
        return self._client

    async def put(self, key: str, data: bytes) -> StoredFile:
        s3 = await self._s3()
        digest = hashlib.sha256(data).hexdigest()
        try:
            await s3.put_object(
                Bucket=self._settings.bucket,
                Key=self._prefix + key,
                Body=data,
                Metadata={"sha256": digest},
            )
        except Exception as error:
            raise self._failed("keep", key, error) from error
        return StoredFile(key, len(data), digest, utcnow())

    async def get(self, key: str) -> bytes | None:
        s3 = await self._s3()
        try:
            found = await s3.get_object(Bucket=self._settings.bucket, Key=self._prefix + key)
            async with found["Body"] as body:
                return bytes(await body.read())
        except Exception as error:
            if _code(error) in MISSING:
                return None
            raise self._failed("read", key, error) from error

    async def list(self, prefix: str) -> list[StoredFile]:
        s3 = await self._s3()
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=self._settings.bucket, Prefix=self._prefix + prefix
        )
        found: list[StoredFile] = []
        try:
            async for page in pages:
                for item in page.get("Contents", []):
                    key = str(item["Key"])[len(self._prefix) :]
                    etag = str(item.get("ETag", "")).strip('"')
                    found.append(StoredFile(key, int(item["Size"]), etag, item["LastModified"]))
        except Exception as error:
            raise self._failed("list", prefix, error) from error
        return sorted(found, key=lambda f: f.key)

    async def delete(self, key: str) -> bool:
        s3 = await self._s3()
        bucket, name = self._settings.bucket, self._prefix + key
        try:
            await s3.head_object(Bucket=bucket, Key=name)
        except Exception as error:
            if _code(error) in MISSING:
                return False
            raise self._failed("find", key, error) from error
        try:
            await s3.delete_object(Bucket=bucket, Key=name)
        except Exception as error:
            raise self._failed("remove", key, error) from error
        return True

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None

    def _failed(self, doing: str, key: str, error: Exception) -> FileStoreError:
        s = self._settings
        where = f"bucket {s.bucket!r} at {s.endpoint or 'AWS S3 ' + s.region}"
        return FileStoreError(
            f"无法访问对象存储 / cannot {doing} {key!r} in {where}: {error}. Check [files.s3] "
            f"and the keys in ${s.access_key_env} / ${s.secret_key_env}"
        )


def _code(error: Exception) -> str:
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""
