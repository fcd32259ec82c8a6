"""The web chat with attachments, through teambot's own server (multipart POST /api/chat) with
the model off (retrieval only): a screenshot of an error dialog finds its knowledge page among
look-alikes, a .docx stays with its thread (and never leaves it), and a 30 MB file gets a clear
refusal while the service stays ready."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.config import LLMSettings
from engine.messages import ThreadKey
from knowledge import KnowledgeSettings
from tests.bot.served import PASSWORD, make_settings, serve
from tests.fakes.sglang import FakeSGLang
from tests.helpers import sign_in
from tests.knowledge import files

SHOT = (Path(__file__).parent.parent / "screenshots" / "error_dialog.png").read_bytes()
# The page for the code in the screenshot, and four look-alikes a careless search would pick.
ERROR_PAGES = {
    "tx-7781.md": "# TX-7781 许可证服务器无法访问 (License server unreachable)\n\n"
    "DesignSuite cannot reach the license server. Connect the VPN, check that port 27000 is "
    "open, then restart the FlexLM service on the license host.\n",
    "tx-7782.md": "# TX-7782 许可证已过期 (License expired)\n\n"
    "The license file has expired. Ask the IT desk for a renewed license file.\n",
    "tx-7718.md": "# TX-7718 许可证服务器版本不匹配 (License server version mismatch)\n\n"
    "The license server runs an older version than DesignSuite. Upgrade the server.\n",
    "tx-7871.md": "# TX-7871 没有可用的许可证 (No free licenses)\n\n"
    "All licenses are in use. Close DesignSuite on an idle machine or request more seats.\n",
    "tx-1781.md": "# TX-1781 许可证文件损坏 (License file corrupted)\n\n"
    "The local license cache is damaged. Delete it and restart DesignSuite.\n",
}


def retrieval_only(tmp_path: Path, fake: FakeSGLang) -> Any:
    settings = make_settings(tmp_path, fake, None)
    knowledge = KnowledgeSettings(persist_dir=tmp_path / "data" / "chroma", seed_sample=False)
    return settings.model_copy(update={"llm": LLMSettings(enabled=False), "knowledge": knowledge})


async def ask(
    client: httpx.AsyncClient,
    text: str,
    *,
    chat: str = "c1",
    thread: str | None = None,
    upload: tuple[str, bytes, str] | None = None,
) -> dict[str, Any]:
    message_id = uuid.uuid4().hex
    body = {"chat_id": chat, "thread_id": thread or message_id, "message_id": message_id}
    body["text"] = text
    if upload is None:
        response = await client.post("/api/chat", json=body, timeout=180)
    else:
        form = {"message": json.dumps(body)}
        response = await client.post("/api/chat", data=form, files=[("file", upload)], timeout=180)
    assert response.status_code == 200, response.text
    events = [
        json.loads(line[6:]) for line in response.text.split("\n\n") if line.startswith("data: ")
    ]
    assert events and events[-1]["type"] == "final", events
    answer: dict[str, Any] = events[-1]["answer"]
    return answer


async def index(served_core: Any, folder: Path) -> None:
    app = served_core.running()
    assert app is not None
    report = await app.knowledge.ingestor.ingest_path(folder, source="errors")
    assert not report.failed
    await app.knowledge.reload()


async def test_a_screenshot_of_an_error_finds_its_page_first(
    tmp_path: Path, fake_sglang: FakeSGLang, monkeypatch: pytest.MonkeyPatch
) -> None:
    pages = tmp_path / "errors"
    pages.mkdir()
    for name, text in ERROR_PAGES.items():
        (pages / name).write_text(text, encoding="utf-8")
    async with serve(retrieval_only(tmp_path, fake_sglang), monkeypatch) as (url, fake):
        await index(fake.core, pages)
        async with httpx.AsyncClient(base_url=url) as client:
            answer = await ask(client, "这个报错怎么解决？", upload=("shot.png", SHOT, "image/png"))
    assert answer["outcome"] == "retrieval_only"
    assert answer["text"].startswith("截图 shot.png 中的文字：")
    assert "TX-7781" in answer["text"].split("\n")[0]
    first = answer["citations"][0]
    assert first["location"].endswith("tx-7781.md"), answer["citations"]
    titles = [c["title"] for c in answer["citations"]]
    assert "attached: shot.png" in titles


async def test_a_docx_stays_with_its_thread(
    tmp_path: Path, fake_sglang: FakeSGLang, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = files.docx(
        "Project Falcon",
        [("Rollout", "Falcon rolls out on 14 March 2027."), ("Owner", "Li Wei owns Falcon.")],
    )
    docx_type = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    async with serve(retrieval_only(tmp_path, fake_sglang), monkeypatch) as (url, _):
        async with httpx.AsyncClient(base_url=url) as client:
            first = await ask(
                client, "When does Falcon roll out?", thread="t-plan",
                upload=("plan.docx", plan, docx_type),
            )  # fmt: skip
            later = await ask(client, "Who owns Falcon?", thread="t-plan")
            elsewhere = await ask(client, "Who owns Falcon?", chat="c2", thread="t-other")
            same_chat = await ask(client, "Who owns Falcon?", thread="t-new")
    assert first["text"].startswith("In plan.docx I read:")
    for answer in (first, later):
        assert "attached: plan.docx" in [c["title"] for c in answer["citations"]]
        assert "Li Wei" in answer["text"]
    for answer in (elsewhere, same_chat):
        assert "plan.docx" not in json.dumps(answer)
        assert "Li Wei" not in answer["text"]


async def test_a_30_mb_file_gets_a_clear_refusal_and_the_service_stays_ready(
    tmp_path: Path, fake_sglang: FakeSGLang, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = b"\x89PNG\r\n\x1a\n" + bytes(30 * 1_048_576)
    async with serve(retrieval_only(tmp_path, fake_sglang), monkeypatch) as (url, _):
        async with httpx.AsyncClient(base_url=url) as client:
            answer = await ask(
                client, "How do I reset my VPN password?", upload=("big.png", big, "image/png")
            )
            assert (await client.get("/readyz")).status_code == 200
            after = await ask(client, "How do I reset my VPN password?")
    assert answer["text"].startswith(
        "⚠️ I could not read big.png: it is too large (30.0 MB; the limit is 20.0 MB)"
    )
    assert after["outcome"] in ("retrieval_only", "no_knowledge")


async def test_the_console_shows_a_threads_attachments_and_what_was_read(
    tmp_path: Path, fake_sglang: FakeSGLang, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (120, 80), "white").save(out, "PNG")
    blank = out.getvalue()
    plan = files.docx("Falcon", [("Owner", "Li Wei owns Falcon.")])
    settings = make_settings(tmp_path, fake_sglang, PASSWORD)
    async with serve(settings, monkeypatch) as (url, fake):
        async with httpx.AsyncClient(base_url=url) as client:
            await ask(
                client, "what is this?", thread="t-c", upload=("blank.png", blank, "image/png")
            )
            await ask(
                client, "and this?", thread="t-c", upload=("plan.docx", plan, "application/x")
            )
            app = fake.core.running()
            thread = await app.store.find_thread(ThreadKey("web", "local", "c1", "t-c"))
            assert thread is not None
            assert (await sign_in(client, "admin", PASSWORD)).status_code == 303
            page = await client.get(f"/console/threads/{thread.id}")
            assert page.status_code == 200
            assert "附件 Attachments" in page.text and "Li Wei owns Falcon." in page.text
            assert "no text was found in it" in page.text
            image_path = f"/console/threads/{thread.id}/attachments/"
            assert f'class="thumb" src="{image_path}' in page.text
            [first, second] = await app.store.attachments.for_thread(thread.id)
            image = await client.get(f"{image_path}{first.id}")
            assert image.headers["content-type"] == "image/png" and image.content == blank
            assert image.headers["x-content-type-options"] == "nosniff"
            doc = await client.get(f"{image_path}{second.id}")
            assert doc.headers["content-type"] == "application/octet-stream"
            assert doc.headers["content-disposition"].startswith("attachment;")
            elsewhere = await client.get(f"/console/threads/{thread.id + 1}/attachments/{first.id}")
            assert elsewhere.status_code == 404
