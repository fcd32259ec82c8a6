"""The core reading attachments (engine/answer/attachments.py): limits said before anything is
downloaded, a slow platform cut off, the reasons in the asker's language, the text kept with its
thread and purged with it."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from engine.answer.attachments import AttachmentReader, Read, passages, search_text
from engine.config import AttachmentSettings
from engine.messages import Attachment, DownloadError, ThreadKey
from engine.store.tables import utcnow
from tests.fakes.s3 import s3_files
from tests.helpers import Core
from tests.knowledge import bombs, files

SHOT = (Path(__file__).parent.parent / "screenshots" / "error_dialog.png").read_bytes()


class Held:
    """A download handle over bytes in memory that counts its calls."""

    def __init__(self, data: bytes = b"", *, delay: float = 0.0, error: str = "") -> None:
        self.data, self.delay, self.error, self.calls = data, delay, error, 0

    async def __call__(self, limit: int) -> bytes:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.error:
            raise DownloadError(self.error)
        if len(self.data) > limit:
            raise DownloadError(f"larger than {limit} bytes")
        return self.data


async def test_a_file_declared_too_large_is_refused_without_downloading_it() -> None:
    handle = Held(b"x")
    reader = AttachmentReader(AttachmentSettings(max_mb=1))
    [read] = await reader.read_all(
        [Attachment("file", "big.pdf", 3 * 1_048_576, fetch=handle)], "zh"
    )
    assert handle.calls == 0
    assert read.error == "文件太大（3.0 MB，上限 1.0 MB）。请发送较小的文件或相关的部分"


async def test_a_slow_platform_is_cut_off_and_other_files_still_read() -> None:
    reader = AttachmentReader(AttachmentSettings(download_timeout=0.2, max_files=2))
    slow = Attachment("file", "slow.txt", fetch=Held(b"late", delay=5))
    quick = Attachment("file", "notes.md", fetch=Held("# 备注\n\n密码每 90 天更换。".encode()))
    third = Attachment("file", "third.txt", fetch=Held(b"never read"))
    reads = await reader.read_all([slow, quick, third], "en")
    assert reads[0].error == "the download took longer than 0.2 s. Try again in a moment"
    assert "密码每 90 天更换" in reads[1].text and reads[1].kind == "markdown"
    assert reads[2].error == "only the first 2 attachments of a message are read"


@pytest.mark.parametrize(
    ("data", "name", "reason"),
    [
        (
            b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(64),
            "old.doc",
            "this kind of file is not read",
        ),
        (SHOT[:500], "cut.png", "seems damaged"),
        (files.pdf([""]), "blank.pdf", "no text was found in it"),
        (bombs.encrypted_pdf(), "locked.pdf", "it is password-protected"),
    ],
)
async def test_each_unreadable_file_gets_its_reason(data: bytes, name: str, reason: str) -> None:
    reader = AttachmentReader(AttachmentSettings())
    [read] = await reader.read_all([Attachment("file", name, fetch=Held(data))], "en")
    assert not read.text and reason in read.error


async def test_a_platform_refusal_is_passed_on_in_words() -> None:
    reader = AttachmentReader(AttachmentSettings())
    handle = Held(error="the bot is not in this chat: add it to the group")
    [read] = await reader.read_all([Attachment("image", "x.png", fetch=handle)], "en")
    assert read.error == "the download failed (the bot is not in this chat: add it to the group)"


def test_the_error_lines_are_searched_and_the_best_pieces_cited() -> None:
    text = "DesignSuite 2026\n错误 Error\nLicense server unreachable\n错误代码 Error code: TX-7781"
    shot = Read("shot.png", "image", text=text)
    assert search_text([shot]) == "错误 Error 错误代码 Error code: TX-7781"
    long = Read("plan.docx", "docx", text="\n".join(f"Section {i}: filler words" for i in range(200))
                + "\nFalcon owner: Li Wei", id=7)  # fmt: skip
    found = passages([long], "Who owns Falcon?", chars=300)
    assert len(found) == 3 and any("Li Wei" in p.text for p in found)
    assert {p.title for p in found} == {"attached: plan.docx"}
    assert all(p.chunk_id.startswith("attached:7:") for p in found)


async def test_attachments_stay_with_their_thread_and_go_with_the_retention_purge(
    core: Core,
) -> None:
    doc = files.docx("Falcon", [("Owner", "Li Wei owns Falcon.")])
    handle = Held(doc)
    answer, _ = await core.ask(
        "Who owns Falcon?",
        thread="t-falcon",
        attachments=(Attachment("file", "plan.docx", fetch=handle),),
    )
    assert answer is not None and answer.text.startswith("In plan.docx I read:")
    key = ThreadKey("web", "local", "c1", "t-falcon")
    thread = await core.store.thread(key)
    [kept] = await core.store.attachments.for_thread(thread.id)
    assert kept.name == "plan.docx" and "Li Wei" in kept.text and kept.kind == "docx"
    other = await core.store.thread(ThreadKey("web", "local", "c1", "t-other"))
    assert await core.store.attachments.for_thread(other.id) == []
    stored = await core.store.attachments.file(kept.id or 0)
    assert stored is not None and stored[0] == thread.id and stored[1].data == doc
    purged = await core.store.upkeep.purge(utcnow() + timedelta(days=1))
    assert purged["attachments"] == 1
    assert await core.store.attachments.for_thread(thread.id) == []


async def test_with_an_object_store_the_bytes_go_there_and_leave_with_the_purge(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`[files] store = "s3"`: an attachment's bytes are an object (not a column), the console
    reads them back from any replica, and the retention purge deletes the object too."""
    doc = files.docx("Falcon", [("Owner", "Li Wei owns Falcon.")])
    async with s3_files(monkeypatch) as store:
        core.store.attachments.files = core.store.upkeep.files = store
        await core.ask(
            "Who owns Falcon?",
            thread="t-s3",
            attachments=(Attachment("file", "plan.docx", fetch=Held(doc)),),
        )
        thread = await core.store.thread(ThreadKey("web", "local", "c1", "t-s3"))
        [kept] = await core.store.attachments.for_thread(thread.id)
        assert kept.kept
        [obj] = await store.list(f"attachments/{thread.id}/")
        assert obj.size == len(doc)
        async with core.store.engine.connect() as conn:
            column = await conn.scalar(text("SELECT data FROM thread_attachments"))
        assert column is None  # not in the database
        stored = await core.store.attachments.file(kept.id or 0)
        assert stored is not None and stored[1].data == doc
        purged = await core.store.upkeep.purge(utcnow() + timedelta(days=1))
        assert purged["attachments"] == 1
        assert await store.list("attachments/") == []
