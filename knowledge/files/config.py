"""`[files]`: where the files teambot keeps for every replica (console uploads) are stored."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class S3Settings(BaseModel):
    """`[files.s3]`: an S3-compatible object store (MinIO, Ceph, AWS S3 …). The keys are read
    from the variables named here (the environment, then TEAMBOT_SECRETS_FILE), never from
    the config file; unset, botocore's own chain decides (an instance role)."""

    model_config = {"extra": "forbid"}

    endpoint: str = Field(
        default="", description="http://minio:9000 for MinIO; empty = AWS S3 for the region"
    )
    bucket: str = Field(default="", description="the bucket (it must exist)")
    region: str = Field(default="us-east-1")
    prefix: str = Field(
        default="teambot/", max_length=200, description="every key starts with this"
    )
    access_key_env: str = Field(
        default="AWS_ACCESS_KEY_ID",
        description="variable (environment or TEAMBOT_SECRETS_FILE) with the access key",
    )
    secret_key_env: str = Field(
        default="AWS_SECRET_ACCESS_KEY",
        description="variable (environment or TEAMBOT_SECRETS_FILE) with the secret key",
    )
    path_style: bool = Field(
        default=True, description="bucket in the path (MinIO); false: virtual-hosted (AWS)"
    )


class FileSettings(BaseModel):
    """`[files]`: the bytes of console uploads (and, in an object store, of attachments),
    shared by every replica."""

    model_config = {"extra": "forbid"}

    store: Literal["database", "s3"] = Field(
        default="database",
        description="database: a table in [storage] (every replica reads it); "
        "s3: the object store of [files.s3]",
    )
    s3: S3Settings = Field(default_factory=S3Settings)
