"""In real headless Chromium: an answer whose stream is cut before it ends (a proxy, a replica
gone) still reaches the asker's page — the page listens on the thread's event stream, and the
answer arrives there as a late answer, into the bubble that was waiting for it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.bot.served import ARGS, CHROMIUM, browser_or_skip, make_settings, serve
from tests.fakes.sglang import FakeSGLang

LATE = "Your badge is ready at the **front desk** of building A."


async def test_an_answer_whose_stream_was_cut_arrives_late_in_chromium(
    tmp_path: Path, fake_sglang: FakeSGLang, monkeypatch: pytest.MonkeyPatch
) -> None:
    async_playwright = browser_or_skip()
    settings = make_settings(tmp_path, fake_sglang, None)
    async with serve(settings, monkeypatch) as (url, _):
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                chat = await (await browser.new_context(locale="en-US")).new_page()
                await chat.goto(url)
                await chat.fill("#text", "How do I reset my VPN password?")
                await chat.press("#text", "Enter")  # the first answer: the page's session
                await chat.locator(".msg.bot .sources").wait_for(timeout=30_000)

                fake_sglang.behave(answer=LATE, latency=3.0)
                forwarded: list[asyncio.Task[Any]] = []

                async def cut(route: Any) -> None:
                    """The request reaches the server, which starts answering; the connection
                    is dropped after a second, and the page gets a stream that just ends."""

                    async def forward() -> None:
                        try:
                            await route.fetch(timeout=1000)
                        except Exception:  # the timeout: the connection to the server is gone
                            pass

                    forwarded.append(asyncio.create_task(forward()))
                    await asyncio.sleep(1.2)
                    body = 'data: {"type": "open"}\n\n'
                    await route.fulfill(
                        status=200, headers={"content-type": "text/event-stream"}, body=body
                    )

                await chat.route("**/api/chat", cut)
                await chat.fill("#text", "Where do I collect my new badge?")
                await chat.press("#text", "Enter")
                late = chat.locator(".msg.bot", has_text="front desk")
                await late.wait_for(timeout=30_000)
                assert await late.locator("strong", has_text="front desk").count() == 1
                bots = chat.locator(".msg.bot")
                assert await bots.count() == 2  # into the waiting bubble, not a third one
                assert "Thinking" not in await bots.last.inner_text()
                await asyncio.gather(*forwarded, return_exceptions=True)
            finally:
                await browser.close()
