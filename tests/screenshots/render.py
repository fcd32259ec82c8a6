"""Render the screenshots the OCR tests read: each `*.html` here becomes a 1280×800 `*.png`
beside it, in Debian's headless Chromium with the WenQuanYi Zen Hei font (apt-get install
chromium fonts-wqy-zenhei). The PNGs are committed, so the tests need no browser; run this
again after changing a page: `.venv/bin/python tests/screenshots/render.py`."""

from __future__ import annotations

import asyncio
from pathlib import Path

from playwright.async_api import async_playwright

HERE = Path(__file__).parent
CHROMIUM = "/usr/bin/chromium"


async def main() -> None:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        for html in sorted(HERE.glob("*.html")):
            await page.goto(html.as_uri())
            await page.screenshot(path=str(html.with_suffix(".png")))
            print(html.with_suffix(".png").name)
        await browser.close()


if __name__ == "__main__":
    asyncio.run(main())
