"""The web chat and the agents' console in real headless Chromium (Debian's `chromium`, driven by
Playwright), at 1280 px and at 390 px (a phone):

- the asker sees a welcome with example questions, presses Enter, watches "Thinking… N s", gets
  rendered Markdown (bold, a table; a `<script>` from the model stays text) with sources, clicks
  Helpful, then Talk to a person;
- a named agent signs in, finds the thread by its question, takes it, replies; the reply, signed
  with the agent's name, appears in the asker's open page live; the asker's link brings the
  whole conversation back;
- on a chat platform: take, reply (signed), resolve, approve the FAQ candidate, and the next
  asker is answered from it.

Screenshots go to tests/artifacts/screens on every run (the path is printed).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.console import agents_cli
from bot.console.accounts import Role
from engine.messages import ThreadKey
from tests.bot.served import ARGS, CHROMIUM, browser_or_skip, make_settings, serve
from tests.fakes.sglang import FakeSGLang

SCREENS = Path(__file__).resolve().parents[1] / "artifacts" / "screens"
AGENT, AGENT_PASSWORD = "Mei", "mei's long password"
QUESTION = "How many days of annual leave do I get?"
ANSWER = (
    "**Annual leave**: full-time staff get **25 days** a year [1].\n\n"
    "| Kind | Days |\n| --- | ---: |\n| Annual | 25 |\n| Sick | 10 |\n\n"
    "Unused days carry over for *30 days*. <script>window.pwned = 1</script>"
)
AGENT_REPLY = "Hi! Up to **5 days** carry over if your manager agrees."


async def _shot(page: Any, name: str) -> None:
    SCREENS.mkdir(parents=True, exist_ok=True)
    path = SCREENS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")


async def _sign_in(page: Any, url: str) -> None:
    await page.goto(f"{url}/console")
    assert "/console/login" in page.url
    await page.fill("#name", AGENT)
    await page.fill("#password", AGENT_PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/console/escalations")


async def _fits(page: Any, width: int) -> None:
    scroll = await page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width + 1, f"the page is {scroll} px wide in a {width} px window"


@pytest.mark.parametrize("width", [1280, 390])
async def test_web_chat_and_console_in_chromium(
    width: int, tmp_path: Path, fake_sglang: FakeSGLang, monkeypatch: pytest.MonkeyPatch
) -> None:
    async_playwright = browser_or_skip()
    print(f"\nscreenshots of this run: {SCREENS}")
    fake_sglang.behave(answer=ANSWER, latency=2.5)
    settings = make_settings(tmp_path, fake_sglang, None)
    size = {"width": width, "height": 900 if width > 500 else 844}
    async with serve(settings, monkeypatch) as (url, _):
        await agents_cli.add(settings.storage.url, AGENT, AGENT_PASSWORD, Role.AGENT)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                chat = await (await browser.new_context(viewport=size, locale="en-US")).new_page()
                await chat.goto(url)
                examples = chat.locator(".examples button")
                await examples.first.wait_for()
                assert await examples.count() >= 2
                await _fits(chat, width)
                await _shot(chat, f"chat-welcome-{width}")

                await chat.fill("#text", QUESTION)
                await chat.press("#text", "Enter")  # Enter sends
                bot = chat.locator(".msg.bot").last
                await chat.wait_for_function(
                    "/Thinking… [1-9]\\d* s/.test(document.querySelector('.msg.bot').innerText)"
                )
                await _shot(chat, f"chat-thinking-{width}")
                await bot.locator(".sources").wait_for(timeout=30_000)
                assert await bot.locator("strong", has_text="25 days").count() == 1
                assert await bot.locator("table td", has_text="Sick").count() == 1
                assert await bot.locator("em", has_text="30 days").count() == 1
                assert "**" not in await bot.inner_text()
                assert "<script>" in await bot.inner_text()  # shown as text, never run
                assert await chat.evaluate("window.pwned === undefined")
                assert await bot.locator(".body script").count() == 0
                assert await bot.locator(".sources li").count() >= 1
                await bot.get_by_role("button", name="👍 Helpful").click()
                await bot.get_by_role("button", name="Thanks for the feedback!").wait_for()
                await _fits(chat, width)
                await _shot(chat, f"chat-answer-{width}")

                await bot.get_by_role("button", name="Talk to a person").click()
                handed = chat.locator(".msg.bot.handed_off")
                await handed.wait_for()
                assert "colleague" in (await handed.inner_text()).lower()

                console = await (await browser.new_context(viewport=size)).new_page()
                await _sign_in(console, url)
                row = console.locator("#waiting tr[data-thread]", has_text=QUESTION)
                await row.wait_for()
                assert "网页聊天" in await row.inner_text()  # the platform in words
                assert "点击了转人工按钮" in await row.inner_text()  # the trigger in words
                await _fits(console, width)
                await _shot(console, f"console-escalations-{width}")

                await row.get_by_role("link", name=QUESTION).click()
                await console.locator("#actions").wait_for()
                turn = console.locator(".turn").first
                assert await turn.locator(".a strong", has_text="25 days").count() == 1
                assert "有帮助 helpful" in await turn.inner_text()  # the asker's click
                await console.get_by_role("button", name="接手 Take").click()
                await console.locator(".notice", has_text="Taken").wait_for()
                await console.locator("#reply textarea").fill(AGENT_REPLY)
                await console.locator("#reply").get_by_role("button", name="发送 Send").click()
                await console.locator(".notice", has_text="Sent").wait_for()
                await _fits(console, width)
                await _shot(console, f"console-thread-{width}")

                agent = chat.locator(".msg.agent")
                await agent.wait_for(timeout=15_000)  # live, without a reload
                assert await agent.locator("strong", has_text=AGENT).count() == 1
                assert await agent.locator("strong", has_text="5 days").count() == 1
                await _shot(chat, f"chat-agent-reply-{width}")

                link = chat.url
                # 128 random bits each (crypto.getRandomValues), not the time
                assert re.search(r"#c=[0-9a-f]{32}&t=[0-9a-f]{32}$", link)
                # the link brings the conversation back in the same browser (its session) …
                again = await chat.context.new_page()
                await again.goto(link)
                await again.locator(".msg.agent", has_text="5 days").wait_for()
                assert await again.locator(".msg.me", has_text=QUESTION).count() == 1
                assert await again.locator(".msg.bot strong", has_text="25 days").count() >= 1
                # … and to nobody else: another browser is told so and gets a chat of its own
                stranger = await (await browser.new_context(viewport=size)).new_page()
                await stranger.goto(link)
                await stranger.locator(".msg.failed", has_text="another browser").wait_for()
                assert await stranger.locator(".msg.me").count() == 0
                assert await stranger.locator(".msg.agent").count() == 0
                await stranger.fill("#text", QUESTION)
                await stranger.press("#text", "Enter")
                await stranger.locator(".msg.bot .sources").wait_for(timeout=30_000)
                assert link.split("#c=")[1][:32] not in stranger.url
            finally:
                await browser.close()


async def test_platform_thread_take_reply_resolve_learn(
    tmp_path: Path, fake_sglang: FakeSGLang, monkeypatch: pytest.MonkeyPatch
) -> None:
    async_playwright = browser_or_skip()
    settings = make_settings(tmp_path, fake_sglang, None)
    question = "How do I get a parking permit for the Pudong office?"
    answer = "Ask facilities at desk B2 with your badge; the permit takes one working day."
    key = ThreadKey("fakechat", "T1", "support", "th-parking")
    async with serve(settings, monkeypatch) as (url, platform):
        await agents_cli.add(settings.storage.url, AGENT, AGENT_PASSWORD, Role.ADMIN)
        assert await platform.ask(question, thread="th-parking") is not None
        handed = await platform.ask("转人工", thread="th-parking")
        assert handed is not None and handed.outcome == "handed_off"
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 900})
                await _sign_in(page, url)
                row = page.locator("#waiting tr[data-thread]", has_text=question)
                await row.wait_for()
                assert "提问人要求转人工" in await row.inner_text()
                assert "Ada" in await row.inner_text()  # the asker by name
                await row.get_by_role("button", name="接手 Take").click()
                taken = page.locator("#taken tr[data-thread]", has_text=question)
                await taken.wait_for()
                assert "Mei" in await taken.inner_text()
                assert "尚未回复" in await taken.inner_text()  # a Take is not a reply
                await taken.locator("textarea").fill(answer)
                await taken.get_by_role("button", name="发送 Send").click()
                await page.locator(".notice", has_text="Sent").wait_for()
                said = platform.thread(key)[-1]
                assert said.startswith(f"**{AGENT}**") and said.endswith(answer)  # signed
                await taken.get_by_role("button", name="解决 Resolve").click()
                await page.locator("#resolved tr[data-thread]", has_text=question).wait_for()

                await page.get_by_role("link", name="知识 Knowledge").click()
                candidate = page.locator("[data-candidate]", has_text=question)
                await candidate.wait_for()
                assert answer in await candidate.locator("textarea").input_value()
                await candidate.get_by_role("button", name="批准 Approve").click()
                await page.locator(".notice", has_text="Approved and indexed").wait_for(
                    timeout=60_000
                )
                await page.get_by_role("link", name="数据 Dashboard").click()
                await page.get_by_role("heading", name="最近 24 小时 / Last 24 hours").wait_for()
                figures = {
                    name: await page.locator(f"[data-figure={name}]").first.inner_text()
                    for name in ("escalation_rate", "first_response", "resolution")
                }
                await _shot(page, "console-dashboard-1280")
                assert figures["escalation_rate"] == "100.0%"
                assert figures["first_response"] != "—" and figures["resolution"] != "—"

                await page.get_by_role("link", name="会话 Conversations").click()
                await page.get_by_role("link", name=question).first.click()
                await page.locator(".turn.agent", has_text="desk B2").wait_for()
                assert "提问人要求转人工" in await page.inner_text("main")
                assert "asked_for_human" not in await page.inner_text("main")
                await _shot(page, "console-transcript-1280")

                # last, as it locks this address out: what a person sees after five wrong tries
                guesser = await browser.new_page(viewport={"width": 390, "height": 844})
                for _ in range(6):
                    await guesser.goto(f"{url}/console/login")
                    await guesser.fill("#name", AGENT)
                    await guesser.fill("#password", "not the password")
                    await guesser.click("button[type=submit]")
                    await guesser.locator(".error").wait_for()
                assert "locked for 15 min" in await guesser.locator(".error").inner_text()
                await _shot(guesser, "console-lockout-390")
            finally:
                await browser.close()

        faq = Path(settings.console.faq_dir) / "handoff-faq.csv"
        assert answer in faq.read_text(encoding="utf-8")
        again = await platform.ask(question, thread="th-parking-2")
        assert again is not None
        assert any(c.source == "handoff-faq" for c in again.citations), again.citations
        async with httpx.AsyncClient() as client:
            scraped = (await client.get(f"{url}/metrics")).text
        assert "teambot_handoff_first_response_seconds_count" in scraped
