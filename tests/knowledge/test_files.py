"""The shared file store (knowledge/files): the same put, get, list and delete on the database
table (SQLite and PostgreSQL) and on an S3-compatible object store (moto's S3 server on
loopback, when moto is installed)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from knowledge import KnowledgeBase, SourceSettings
from knowledge.files import FileSettings, FileStore, FileStoreError, S3Settings, open_files
from knowledge.files.database import FilesBase
from knowledge.uploads import upload
from tests.fakes.s3 import s3_files
from tests.helpers import closed_port, pg_schema

PDF = b"%PDF-1.4 " + bytes(range(256)) * 40  # binary, NUL bytes included


async def _exercise(files: FileStore) -> None:
    first = await files.put("uploads/handbook.pdf", PDF)
    assert first.size == len(PDF) and first.digest
    await files.put("uploads/notes_100%.md", b"# Notes\n")
    await files.put("uploadsX/other.md", b"not under uploads/")
    assert await files.get("uploads/handbook.pdf") == PDF
    assert await files.get("uploads/missing.md") is None
    listed = await files.list("uploads/")
    assert [f.key for f in listed] == ["uploads/handbook.pdf", "uploads/notes_100%.md"]
    assert [f.key for f in await files.list("uploads/notes_1")] == ["uploads/notes_100%.md"]
    assert await files.list("uploads/notes_%") == []  # wildcards are taken literally

    replaced = await files.put("uploads/handbook.pdf", b"%PDF-1.4 v2")
    assert replaced.digest != first.digest
    assert await files.get("uploads/handbook.pdf") == b"%PDF-1.4 v2"
    again = {f.key: f for f in await files.list("uploads/")}
    assert again["uploads/handbook.pdf"].size == len(b"%PDF-1.4 v2")
    assert again["uploads/handbook.pdf"].digest != first.digest

    assert await files.delete("uploads/handbook.pdf") is True
    assert await files.delete("uploads/handbook.pdf") is False
    assert [f.key for f in await files.list("uploads/")] == ["uploads/notes_100%.md"]


async def test_the_database_store_on_sqlite(tmp_path: object) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path}/files.db")
    async with engine.begin() as conn:
        await conn.run_sync(FilesBase.metadata.create_all)
    try:
        files = open_files(FileSettings(), engine)
        assert files.name == "database"
        await _exercise(files)
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_the_database_store_on_postgresql() -> None:
    async with pg_schema() as (url, connect_args):
        engine = create_async_engine(url, connect_args=connect_args)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(FilesBase.metadata.create_all)
            await _exercise(open_files(FileSettings(), engine))
        finally:
            await engine.dispose()


@pytest.fixture(autouse=True)
def _no_cloud(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore never asks an instance-metadata address for credentials here."""
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
async def s3_store(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FileStore]:
    async with s3_files(monkeypatch, prefix="team-a/") as files:
        yield files


async def test_the_s3_store(s3_store: FileStore) -> None:
    assert s3_store.name == "s3"
    await _exercise(s3_store)
    s3 = await s3_store._s3()  # type: ignore[attr-defined]
    listed = await s3.list_objects_v2(Bucket="teambot")
    assert [o["Key"] for o in listed["Contents"]] == [
        "team-a/uploads/notes_100%.md",
        "team-a/uploadsX/other.md",
    ]  # under the configured prefix


async def test_an_unreachable_s3_store_says_what_to_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    settings = S3Settings(endpoint=f"http://127.0.0.1:{closed_port()}", bucket="teambot")
    files = open_files(FileSettings(store="s3", s3=settings), engine=None)  # type: ignore[arg-type]
    monkeypatch.setattr("knowledge.files.s3.RETRIES", 1)
    try:
        with pytest.raises(FileStoreError, match=r"cannot list 'uploads/' in bucket 'teambot'"):
            await files.list("uploads/")
    finally:
        await files.close()
    with pytest.raises(FileStoreError, match=r"needs \[files\.s3\] bucket"):
        open_files(FileSettings(store="s3"), engine=None)  # type: ignore[arg-type]


async def test_an_upload_the_store_refuses_gets_its_own_error_and_indexes_nothing(
    kb: KnowledgeBase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setattr("knowledge.files.s3.RETRIES", 1)
    down = S3Settings(endpoint=f"http://127.0.0.1:{closed_port()}", bucket="teambot")
    kb.files = open_files(FileSettings(store="s3", s3=down), engine=None)  # type: ignore[arg-type]
    kb.settings = kb.settings.model_copy(update={"uploads_dir": tmp_path / "uploads"})
    [result] = await upload(kb, [("gym.md", b"# Gym\n\nThe gym is in the basement of B.\n")])
    assert not result.ok and "无法保存 / cannot keep the file" in result.message
    assert "bucket 'teambot'" in result.message
    assert await kb.catalog.documents("uploads") == []


async def test_a_stored_source_never_reads_the_threads_attachments(kb: KnowledgeBase) -> None:
    await kb.files.put("attachments/7/secret", b"# Payroll\n\nSalaries are private.\n")
    await kb.add_source(SourceSettings(name="peek", kind="stored", location="attachments"))
    report = await kb.refresh("peek")
    assert "attachments stay with their thread" in report.error
    assert await kb.catalog.documents("peek") == []
