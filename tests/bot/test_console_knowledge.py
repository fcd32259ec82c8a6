"""The console's knowledge page in real headless Chromium (Debian's `chromium`, driven by
Playwright), keyboard first: upload files (one good, three bad: each gets its own result),
try a question and read the dense, lexical and fused ranks beside the grounding floor, open a
document's chunks, delete it, and see it gone from retrieval. Screenshots are written on every
run (the path is printed)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from bot.console.config import ConsoleSettings
from bot.server import create_server
from bot.settings import Settings
from engine.config import LLMSettings, StorageSettings
from knowledge import KnowledgeSettings, SourceSettings
from tests.bot.served import ARGS, CHROMIUM, browser_or_skip, running
from tests.helpers import sign_in

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "knowledge"
PASSWORD = "knowledge page password"
CANTEEN = "# Canteen\n\nThe canteen serves lunch from 11:30 to 13:30 on weekdays, building C.\n"


def _settings(tmp_path: Path, sample_index: Path) -> Settings:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copytree(sample_index, data / "chroma")
    return Settings(
        storage=StorageSettings(url=f"sqlite+aiosqlite:///{data / 'teambot.db'}"),
        llm=LLMSettings(enabled=False),
        knowledge=KnowledgeSettings(
            persist_dir=data / "chroma",
            collection="test-kb",
            uploads_dir=data / "uploads",
            upload_max_mb=0.01,  # 10 KB: small enough to test the limit cheaply
        ),
        console=ConsoleSettings(password=SecretStr(PASSWORD), faq_dir=str(data / "faq")),
    )


@pytest.fixture
async def served(tmp_path: Path, sample_index: Path) -> AsyncIterator[tuple[str, Settings]]:
    settings = _settings(tmp_path, sample_index)
    async with running(create_server(settings)) as url:
        yield url, settings


async def test_knowledge_page_upload_try_delete_in_chromium(
    served: tuple[str, Settings], tmp_path: Path
) -> None:
    async_playwright = browser_or_skip()
    url, settings = served
    files = tmp_path / "upload"
    files.mkdir()
    (files / "canteen.md").write_text(CANTEEN, encoding="utf-8")
    (files / "tool.exe").write_bytes(b"MZ\x90\x00")
    (files / "huge.txt").write_text("lunch " * 4000, encoding="utf-8")  # 24 KB > 10 KB
    (files / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots of the knowledge page: {ARTIFACTS}")

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            await page.goto(f"{url}/console/sources")
            await page.fill("#name", "admin")
            await page.fill("#password", PASSWORD)
            await page.keyboard.press("Enter")
            await page.wait_for_url("**/console/sources")
            sample = page.locator("#sources tr[data-source=sample]")
            assert "示例手册 / bundled sample" in await sample.inner_text()

            await page.set_input_files("#files", [str(p) for p in sorted(files.iterdir())])
            await page.get_by_role("button", name="上传并索引 Upload and index").press("Enter")
            results = page.locator("#upload-results")
            await results.wait_for()
            await page.screenshot(path=str(ARTIFACTS / "1-uploaded.png"), full_page=True)
            text = {
                name: await results.locator(f"[data-file='{name}']").inner_text()
                for name in ("canteen.md", "tool.exe", "huge.txt", "broken.pdf")
            }
            assert "indexed: 1 chunks" in text["canteen.md"]
            assert "unsupported file type .exe" in text["tool.exe"]
            assert "too large: 23.4 KB, the limit is 10.2 KB" in text["huge.txt"]
            assert "cannot parse" in text["broken.pdf"]
            uploads = page.locator("#sources tr[data-source=uploads]")
            assert "控制台上传 / console uploads" in await uploads.inner_text()
            await uploads.get_by_role("button", name="立即刷新 Refresh now").press("Enter")
            await page.locator(".notice", has_text="Refresh of uploads started").wait_for()
            run = page.locator("#sources [data-run=uploads]")
            await run.filter(has_text="ok").wait_for(timeout=30_000)  # the poller saw it end
            assert await page.locator("#sources tr[data-source=sample]").count() == 0  # aside

            await page.focus("#q")
            await page.keyboard.type("When does the canteen serve lunch?")
            await page.keyboard.press("Enter")
            explained = page.locator("#explanation")
            await explained.wait_for()
            await page.screenshot(path=str(ARTIFACTS / "2-try-a-question.png"), full_page=True)
            assert "grounding floor" in await explained.inner_text()
            assert "0.30" in await explained.inner_text()
            first = explained.locator("tr[data-chunk]").first
            assert "Canteen" in await first.inner_text()
            for side in ("dense", "lexical", "fused"):
                cell = await first.locator(f"[data-side={side}]").inner_text()
                assert cell.startswith("#1 · "), (side, cell)
            assert "grounded" in await explained.inner_text()

            await page.get_by_role("link", name="uploads", exact=True).click()
            await page.get_by_role("link", name="uploads/canteen.md").click()
            chunk = page.locator("[data-chunk]").first
            assert "11:30 to 13:30" in await chunk.inner_text()
            await page.screenshot(path=str(ARTIFACTS / "3-chunks.png"), full_page=True)
            await page.go_back()
            page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
            await page.get_by_role("button", name="删除 Delete uploads/canteen.md").click()
            await page.locator(".notice", has_text="Deleted uploads/canteen.md").wait_for()
            await page.screenshot(path=str(ARTIFACTS / "4-deleted.png"), full_page=True)

            await page.goto(f"{url}/console/sources/try?q=When+does+the+canteen+serve+lunch%3F")
            await page.locator("#explanation").wait_for()
            assert "Canteen" not in await page.locator("#explanation").inner_text()
        finally:
            await browser.close()
    assert not (Path(settings.knowledge.uploads_dir) / "canteen.md").exists()
    assert not (Path(settings.knowledge.uploads_dir) / "tool.exe").exists()


async def test_knowledge_page_is_for_logged_in_admins_with_the_csrf_token(
    served: tuple[str, Settings],
) -> None:
    from bot.console import agents_cli

    url, settings = served
    async with httpx.AsyncClient(base_url=url) as client:
        anonymous = await client.get("/console/sources")
        assert anonymous.status_code == 303 and "/console/login" in anonymous.headers["location"]
        login = await sign_in(client, "admin", PASSWORD)
        assert login.status_code == 303, login.text
        refused = await client.post("/console/sources/sample/remove", data={"csrf": "forged"})
        assert refused.status_code == 403
        assert (await client.get("/console/sources")).status_code == 200
    # the shared password made the admin above; an agent account sees no knowledge page
    await agents_cli.add(settings.storage.url, "lin", "an agent password", agents_cli.Role.AGENT)
    async with httpx.AsyncClient(base_url=url) as agent:
        login = await sign_in(agent, "lin", "an agent password")
        assert login.status_code == 303, login.text
        page = await agent.get("/console/sources")
        assert page.status_code == 403 and "Admins only" in page.text


async def test_a_source_page_says_who_may_see_each_document(
    tmp_path: Path, sample_index: Path
) -> None:
    folder = tmp_path / "falcon"
    folder.mkdir()
    (folder / "falcon.md").write_text("# Falcon\n\nLaunch codes are in vault seven.\n", "utf-8")
    settings = _settings(tmp_path, sample_index)
    source = SourceSettings(
        name="falcon", kind="directory", location=str(folder), audience=["feishu:oc_a", "web:*"]
    )
    settings.knowledge.sources.append(source)
    async with running(create_server(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        # the start's catch-up refresh of the never-run source may hold SQLite a moment
        for _ in range(5):
            login = await sign_in(client, "admin", PASSWORD)
            if login.status_code != 500:
                break
            await asyncio.sleep(1)
        assert login.status_code == 303, login.text
        page = await client.get("/console/sources/falcon")
        assert "可见 who may see it: 群 oc_a / chat oc_a" in page.text
        csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        said = await client.post("/console/sources/falcon/refresh", data={"csrf": csrf})
        assert said.status_code == 303
        for _ in range(200):
            page = await client.get("/console/sources/falcon")
            if "falcon/falcon.md" in page.text:
                break
            await asyncio.sleep(0.1)
        row = page.text.split('data-document="falcon/falcon.md"', 1)[1].split("</tr>", 1)[0]
        assert "群 oc_a / chat oc_a" in row
        assert "网页聊天与终端 / web chat and terminal" in row
