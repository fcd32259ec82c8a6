"""The web lookup: whether to search for this message, then search, fetch, trim and cache."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from engine.llm import LLMClient
from engine.privacy import Redactor
from engine.text import estimate_tokens
from engine.weblookup.cache import TTLCache
from engine.weblookup.config import WebMode, WebSettings
from engine.weblookup.fetch import Fetcher, FetchError, Page
from engine.weblookup.guard import Guard, Refused, Resolver, system_resolve
from engine.weblookup.providers import Provider, ProviderError, build_provider
from engine.weblookup.tools import ToolDecider, ToolError
from engine.weblookup.types import SearchHit, WebReport, WebSource

log = logging.getLogger(__name__)

_PREFIX = re.compile(r"^\s*/web(?![A-Za-z0-9_])[\s:：,，]*", re.IGNORECASE)
_TRIGGER = re.compile(r"(?<![A-Za-z])search(?![A-Za-z])|联网|上网查|搜一下", re.IGNORECASE)
# Leading request phrasing, taken off the search query: "search the web for …", "联网搜一下 …".
_LEAD = re.compile(
    r"^\s*(?:please\s+)?(?:web\s+)?search(?:\s+(?:the\s+)?(?:web|internet|online))?"
    r"(?:\s+(?:for|about))?[\s:：,，]+|^\s*(?:请|帮我|帮忙)?(?:联网|上网查|搜一下)+[\s:：,，]*",
    re.IGNORECASE,
)
_TIME_SENSITIVE = re.compile(
    r"(?<![A-Za-z])(?:today|tonight|yesterday|tomorrow|latest|newest|current(?:ly)?|right now|"
    r"this (?:week|month|year)|recent(?:ly)?|news|prices?|stock|released?|releases|outage|"
    r"down right now|weather|score|deadline|20[2-3]\d)(?![A-Za-z])"
    r"|今天|昨天|明天|最新|最近|目前|现在|当前|今年|本周|本月|新闻|价格|股价|发布|宕机|故障|天气|实时",
    re.IGNORECASE,
)
_MIN_PAGE_CHARS = 40  # less than this is a cookie wall or an empty shell: use the snippet


@dataclass(frozen=True, slots=True)
class WebRequest:
    """What the message says about the web."""

    asked: bool  # the asker asked for a web lookup (a trigger word or /web)
    command: bool  # it starts with /web
    query: str  # the question without the request phrasing


def parse_request(text: str) -> WebRequest:
    """Does the message ask for the web, and what should be searched."""
    command = bool(_PREFIX.match(text))
    query = _PREFIX.sub("", text, count=1) if command else text
    asked = command or bool(_TRIGGER.search(text))
    if asked:
        query = _LEAD.sub("", query, count=1)
    return WebRequest(asked, command, query.strip() or text.strip())


def time_sensitive(text: str) -> bool:
    """Whether the question is about something that changes (today, latest, price, outage …)."""
    return bool(_TIME_SENSITIVE.search(text))


def fit_budget(sources: list[WebSource], token_budget: int) -> list[WebSource]:
    """Clip the sources' texts so that together they fit `token_budget` estimated tokens.

    Each gets an equal share of what is left; a short one leaves its unused share to the rest.
    """
    fitted: list[WebSource] = []
    left = token_budget
    for index, source in enumerate(sources):
        share = left // (len(sources) - index)
        if share < 20:
            break
        tokens = estimate_tokens(source.text)
        text = source.text
        if tokens > share:
            chars = max(1, int(len(text) * share / tokens) - 1)
            text = text[:chars].rstrip() + "…"
            tokens = estimate_tokens(text)
        left -= tokens
        fitted.append(replace(source, text=text))
    return fitted


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class WebLookup:
    """Decides per channel and message whether to use the web, and performs the lookup."""

    def __init__(
        self,
        settings: WebSettings,
        *,
        provider: Provider | None = None,
        fetcher: Fetcher | None = None,
        tools: ToolDecider | None = None,
        resolve: Resolver = system_resolve,
    ) -> None:
        self.settings = settings
        self._provider = provider or build_provider(settings)
        self._guard = Guard(
            allow_hosts=settings.allow_hosts,
            allow_domains=settings.allow_domains,
            deny_domains=settings.deny_domains,
            resolve=resolve,
        )
        self._fetcher = fetcher or Fetcher(
            self._guard,
            timeout=settings.timeout,
            max_bytes=settings.max_bytes,
            max_redirects=settings.max_redirects,
        )
        self._tools = tools if settings.tool_calling else None
        self._private = Redactor() if settings.mask_queries else None
        self._results: TTLCache[WebReport] = TTLCache(settings.cache_ttl)
        self._pages: TTLCache[tuple[Page, str]] = TTLCache(settings.cache_ttl)

    async def close(self) -> None:
        await self._fetcher.close()
        await self._provider.close()

    def mode_for(self, platform: str, chat_id: str) -> WebMode:
        """The chat's mode: `platform:chat_id`, else `platform:*`, else `*`, else `mode`."""
        channels = self.settings.channels
        for key in (f"{platform}:{chat_id}", f"{platform}:*", "*"):
            if key in channels:
                return channels[key]
        return self.settings.mode

    async def consider(
        self, *, platform: str, chat_id: str, question: str, grounded: bool, language: str
    ) -> WebReport | None:
        """Look the question up on the web if this chat and message call for it; None if not."""
        mode = self.mode_for(platform, chat_id)
        request = parse_request(question)
        if mode == "never":
            return WebReport(request.query, off=True) if request.command else None
        if request.asked:
            return await self.lookup(request.query, language, reason="requested")
        if mode != "auto":
            return None
        if self._tools is not None and await self._tools.supported():
            try:
                query = await self._tools.decide(question, grounded=grounded)
            except ToolError as error:
                log.warning("web_search tool decision failed, using the rule: %s", error)
            else:
                return await self.lookup(query, language, reason="tool") if query else None
        if not grounded and time_sensitive(question):
            return await self.lookup(request.query, language, reason="rule")
        return None

    async def lookup(self, query: str, language: str, *, reason: str = "requested") -> WebReport:
        """Search, fetch the top pages concurrently, trim to the token budget. Never raises.

        With `mask_queries` (the default) the asker's personal data is taken out of the query
        first: it never reaches the search provider."""
        started = time.monotonic()
        if self._private is not None:
            query = self._private.scrub(query)
            if not query:
                log.info("web search skipped: nothing but personal data to search for")
                return WebReport(query, reason=reason, seconds=time.monotonic() - started)
        deadline = started + self.settings.timeout
        key = (self._provider.name, language, " ".join(query.casefold().split()))
        cached = self._results.get(key)
        if cached is not None:
            return replace(cached, reason=reason, cached=True, seconds=time.monotonic() - started)
        try:
            async with asyncio.timeout(self.settings.timeout):
                hits = await self._provider.search(query, self.settings.max_results, language)
        except (ProviderError, TimeoutError) as error:
            message = str(error) or f"no answer within {self.settings.timeout:g}s"
            log.warning("web search unavailable: %s", message)
            return WebReport(
                query, unavailable=True, error=message, reason=reason,
                seconds=time.monotonic() - started,
            )  # fmt: skip
        usable: list[SearchHit] = []
        refused: list[str] = []
        for hit in hits:
            try:
                self._guard.check_domain(hit.url)
            except Refused as why:
                log.info("web result refused: %s (%s)", hit.url, why)
                refused.append(hit.url)
            else:
                usable.append(hit)
        top = usable[: self.settings.fetch_pages]
        pages = await self._fetch_all(top, deadline)
        sources: list[WebSource] = []
        for hit in usable:
            page = pages.get(hit.url)
            if isinstance(page, Refused):
                refused.append(hit.url)  # never shown, not even its snippet
            elif page is not None:
                sources.append(WebSource(hit.title, page[0].url, page[0].text, page[1]))
            elif hit.snippet.strip():
                sources.append(WebSource(hit.title, hit.url, hit.snippet.strip(), _now(), False))
        report = WebReport(
            query,
            tuple(fit_budget(sources, self.settings.token_budget)),
            refused=tuple(refused),
            reason=reason,
            seconds=time.monotonic() - started,
        )
        if report.sources:
            self._results.put(key, report)
        return report

    async def _fetch_all(
        self, hits: list[SearchHit], deadline: float
    ) -> dict[str, tuple[Page, str] | Refused]:
        """Fetched pages (with fetch time) or the guard's refusal, by URL; failures are left out."""
        results: dict[str, tuple[Page, str] | Refused] = {}
        tasks: dict[asyncio.Task[tuple[Page, str]], str] = {}
        for hit in hits:
            cached = self._pages.get(hit.url)
            if cached is not None:
                results[hit.url] = cached
            elif hit.url not in tasks.values():
                tasks[asyncio.create_task(self._fetch(hit.url))] = hit.url
        if not tasks:
            return results
        done, pending = await asyncio.wait(tasks, timeout=max(0.1, deadline - time.monotonic()))
        for task in pending:
            task.cancel()
            log.info("web page %s dropped: over the lookup deadline", tasks[task])
        if pending:
            await asyncio.wait(pending)
        for task in done:
            url = tasks[task]
            error = task.exception()
            if isinstance(error, Refused):
                log.warning("web page refused: %s (%s)", url, error)
                results[url] = error
            elif isinstance(error, FetchError):
                log.info("web page skipped: %s", error)
            elif error is not None:
                log.warning("web page %s failed: %r", url, error)
            else:
                results[url] = task.result()
        return results

    async def _fetch(self, url: str) -> tuple[Page, str]:
        page = await self._fetcher.fetch(url)
        if len(page.text) < _MIN_PAGE_CHARS:
            raise FetchError(f"{url}: almost no text ({len(page.text)} characters)")
        result = (page, _now())
        self._pages.put(url, result)
        return result


def build_lookup(settings: WebSettings, *, llm: LLMClient | None = None) -> WebLookup | None:
    """The lookup for `[web]`, or None when no chat may use the web.

    With `llm` (the app's model client, which the lookup shares and does not close) and some
    chat in auto mode, the model is offered a web_search tool whenever its server reports a
    tool-call parser.
    """
    if not settings.enabled:
        return None
    tools = None
    auto = settings.mode == "auto" or "auto" in settings.channels.values()
    if llm is not None and auto and settings.tool_calling:
        tools = ToolDecider(llm, seconds=min(llm.settings.first_token_timeout, 20.0))
    return WebLookup(settings, tools=tools)
