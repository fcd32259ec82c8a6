"""Fetching result pages from the fake pages over real HTTP: limits and main-text extraction."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from engine.weblookup.fetch import Fetcher, FetchError, extract_main_text, fallback_text
from engine.weblookup.guard import Guard
from tests.fakes.searx import NORMAL_FACT, FakeWeb


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    guard = Guard(allow_hosts=["127.0.0.1:*"])  # the fakes' intranet allowlist
    built = Fetcher(guard, timeout=1.0, max_bytes=200_000, max_redirects=3)
    yield built
    await built.close()


async def test_normal_page_main_text_without_menus_or_scripts(
    fetcher: Fetcher, fake_web: FakeWeb
) -> None:
    page = await fetcher.fetch(fake_web.page("/page/normal"))
    assert NORMAL_FACT in page.text
    for noise in ("SCRIPT-NOISE", "MENU-NOISE", "color: red"):
        assert noise not in page.text
    assert not page.truncated


async def test_huge_page_is_cut_at_the_byte_cap_and_not_read_further(
    fetcher: Fetcher, fake_web: FakeWeb
) -> None:
    started = time.monotonic()
    page = await fetcher.fetch(fake_web.page("/page/huge"))
    assert page.truncated and "lorem ipsum" in page.text
    assert len(page.text) <= 200_000
    assert time.monotonic() - started < 1.5
    # the server could only push what the socket buffers took, not the 50 MB
    assert fake_web.huge_bytes_sent < 20 * 1024 * 1024


async def test_slow_page_gives_up_at_the_timeout(fetcher: Fetcher, fake_web: FakeWeb) -> None:
    started = time.monotonic()
    with pytest.raises(FetchError, match="within 1s"):
        await fetcher.fetch(fake_web.page("/page/slow"))
    assert time.monotonic() - started < 1.5


async def test_only_html_and_text(fetcher: Fetcher, fake_web: FakeWeb) -> None:
    with pytest.raises(FetchError, match="application/pdf is not HTML"):
        await fetcher.fetch(fake_web.page("/page/pdf"))


async def test_redirects_are_followed_up_to_the_cap(fetcher: Fetcher, fake_web: FakeWeb) -> None:
    page = await fetcher.fetch(fake_web.page("/redirect/ok"))
    assert NORMAL_FACT in page.text and page.url.endswith("/page/normal")
    with pytest.raises(FetchError, match="more than 3 redirects"):
        await fetcher.fetch(fake_web.page("/redirect/loop"))
    assert fake_web.hits.count("GET /redirect/loop") == 4


async def test_missing_page_is_an_error(fetcher: Fetcher, fake_web: FakeWeb) -> None:
    with pytest.raises(FetchError, match="HTTP 404"):
        await fetcher.fetch(fake_web.page("/redirect/nothing"))


def test_fallback_extractor_keeps_visible_text_only() -> None:
    markup = (
        "<html><head><title>T</title><style>p{}</style></head><body><nav>menu</nav>"
        "<div hidden><div>HIDDEN-1</div><p>HIDDEN-2</div>"
        "<p style='display: none'>HIDDEN-3</p><script>HIDDEN-4</script>"
        "<p>Visible &amp; kept</p><br>second line<!-- HIDDEN-5 --></body></html>"
    )
    text = fallback_text(markup)
    assert "Visible & kept" in text and "second line" in text
    assert "HIDDEN" not in text and "menu" not in text


def test_extraction_reads_declared_charsets() -> None:
    body = "<html><head><meta charset='gbk'></head><body><p>联网搜索的结果</p></body></html>"
    assert "联网搜索的结果" in extract_main_text(body.encode("gbk"))
