"""adapters/streaming.py: coalesced updates on an injected clock (no real waiting), the reply
timings, the bounded recent-items cache."""

from __future__ import annotations

import asyncio

import pytest

from adapters.streaming import Coalescer, Recent, ReplyTimings


class Clock:
    """Time that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class Platform:
    """A platform's edit call: records what it showed and when; can be held on the wire."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.shown: list[tuple[float, str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.on_wire = asyncio.Event()
        self.refuse = False

    async def send(self, text: str) -> bool:
        self.on_wire.set()
        await self.gate.wait()
        if self.refuse:
            return False
        self.shown.append((self.clock(), text))
        return True


async def settled() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def platform(clock: Clock) -> Platform:
    return Platform(clock)


def coalescer(platform: Platform, clock: Clock, interval: float = 1.0) -> Coalescer:
    return Coalescer(platform.send, interval, clock=clock, sleep=clock.sleep)


async def test_first_text_at_once_then_the_latest_once_per_interval(
    platform: Platform, clock: Clock
) -> None:
    edits = coalescer(platform, clock)
    edits.push("Full")
    await settled()
    edits.push("Full-time")
    edits.push("Full-time staff")  # replaces the one not yet sent
    await settled()
    assert platform.shown == [(100.0, "Full"), (101.0, "Full-time staff")]
    assert clock.slept == [1.0]
    assert (edits.timings.edits, edits.timings.first_text) == (2, 100.0)


async def test_a_slow_platform_never_holds_up_the_stream(platform: Platform, clock: Clock) -> None:
    edits = coalescer(platform, clock)
    platform.gate.clear()  # the first edit hangs on the wire (a 429 and its Retry-After, say)
    edits.push("a")
    await platform.on_wire.wait()
    for text in ("ab", "abc", "abcd"):
        edits.push(text)  # returns at once: push never waits for the platform
    clock.now += 5.0
    platform.gate.set()
    await settled()
    assert platform.shown == [(105.0, "a"), (106.0, "abcd")]
    assert clock.slept == [1.0]  # the interval counts from the end of the slow edit


async def test_same_text_and_blank_text_are_not_sent_again(
    platform: Platform, clock: Clock
) -> None:
    edits = coalescer(platform, clock)
    edits.push("a")
    await settled()
    edits.push("a")
    edits.push("   ")
    await settled()
    assert [text for _, text in platform.shown] == ["a"]


async def test_close_lets_the_edit_on_the_wire_land_and_drops_the_rest(
    platform: Platform, clock: Clock
) -> None:
    edits = coalescer(platform, clock)
    platform.gate.clear()
    edits.push("a")
    await platform.on_wire.wait()
    edits.push("ab")
    closing = asyncio.create_task(edits.close())
    await settled()
    assert not closing.done()  # the final message must come after the edit on the wire
    platform.gate.set()
    await closing
    edits.push("abc")
    await settled()
    assert [text for _, text in platform.shown] == ["a"]


async def test_close_while_waiting_for_the_interval_sends_nothing_more(platform: Platform) -> None:
    never = asyncio.Event()

    async def forever(seconds: float) -> None:
        await never.wait()

    edits = Coalescer(platform.send, 1.0, clock=lambda: 0.0, sleep=forever)
    edits.push("a")
    await settled()
    edits.push("ab")
    await settled()
    await asyncio.wait_for(edits.close(), 1.0)
    assert [text for _, text in platform.shown] == ["a"]


async def test_a_refused_or_failing_edit_stops_the_stream(
    platform: Platform, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    refused = coalescer(platform, clock)
    platform.refuse = True
    refused.push("a")
    await settled()
    assert refused.broken
    platform.refuse = False
    refused.push("ab")
    await settled()
    assert platform.shown == []

    async def fails(text: str) -> bool:
        raise RuntimeError("the SDK broke")

    failing = Coalescer(fails, 1.0, clock=clock, sleep=clock.sleep)
    failing.push("a")
    await settled()
    assert failing.broken and "streamed edit failed" in caplog.text
    await failing.close()


def test_reply_timings_first_visible_is_the_earlier_sight() -> None:
    timings = ReplyTimings(created=0.0)
    assert timings.first_visible is None
    timings.text_shown(3.0)
    timings.placeholder_shown(1.0)
    timings.text_shown(5.0)  # only the first counts
    assert (timings.placeholder, timings.first_text, timings.first_visible) == (1.0, 3.0, 1.0)


def test_recent_keeps_the_latest_items() -> None:
    recent: Recent[str, int] = Recent(2)
    recent.put("a", 1)
    recent.put("b", 2)
    recent.put("a", 3)  # put again: the newest now
    recent.put("c", 4)
    assert ("b" in recent, recent.get("a"), recent.get("c"), len(recent)) == (False, 3, 4, 2)
    assert recent.add("d", 5) is True and recent.add("d", 6) is False
    assert recent.get("d") == 5 and "a" not in recent
