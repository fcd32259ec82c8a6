"""The Slack adapter in Socket Mode: real slack-bolt / slack_sdk against the local fake Slack.

The fake serves the Web API and the Socket Mode WebSocket on 127.0.0.1; the core is a real
Conversation (SQLite, LLM client at the fake SGLang) with retrieval held fixed.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from adapters.slack.adapter import SlackAdapter
from adapters.slack.config import SlackSettings
from adapters.slack.convert import ESCALATE, HELPFUL
from engine.config import PolicySettings
from engine.messages import ThreadKey
from engine.store.tables import ThreadState
from tests.fakes.sglang import FakeSGLang
from tests.fakes.slack import (
    APP_TOKEN,
    BOT_ID,
    BOT_TOKEN,
    BOT_USER,
    TEAM,
    FakeSlack,
    block_action,
    user_message,
)
from tests.fakes.slack_core import SlackCore, make_slack_core

QUESTION = "How do I reset my VPN connection?"
ANSWER = (
    "To reset the VPN, **quit** the client first [1]. Then delete the old profile, sign in "
    "again with your usual account, and wait for the green shield before you reconnect."
)
Start = Callable[..., Awaitable[SlackAdapter]]


@pytest.fixture
async def core(
    tmp_path: Path, fake_sglang: FakeSGLang, request: pytest.FixtureRequest
) -> AsyncIterator[SlackCore]:
    fake_sglang.behave(answer=ANSWER, token_delay=0.005)
    marker = request.node.get_closest_marker("policy")
    policy = PolicySettings(**marker.kwargs) if marker else None
    built = await make_slack_core(tmp_path, fake_sglang, policy=policy)
    yield built
    await built.close()


def settings(slack: FakeSlack, **overrides: Any) -> SlackSettings:
    values: dict[str, Any] = {
        "enabled": True,
        "bot_token": BOT_TOKEN,
        "app_token": APP_TOKEN,
        "api_url": slack.api_url,
        "update_interval": 0.1,
        "escalation_channel": "C0HELPDESK",
        "escalation_mention": ["S0AGENTS"],
        "agents": ["U0AGENT"],
    }
    return SlackSettings(**{**values, **overrides})


@pytest.fixture
async def start(slack: FakeSlack, core: SlackCore) -> AsyncIterator[Start]:
    started: list[SlackAdapter] = []

    async def run(**overrides: Any) -> SlackAdapter:
        adapter = SlackAdapter(settings(slack, **overrides), core.conversation)
        await adapter.start()
        started.append(adapter)
        await slack.wait_connections(1)
        return adapter

    yield run
    for adapter in started:
        await adapter.stop()


def posts(slack: FakeSlack, channel: str | None = None) -> list[dict[str, Any]]:
    return [c for c in slack.calls_to("chat.postMessage") if channel in (None, c["channel"])]


def finals(slack: FakeSlack) -> list[dict[str, Any]]:
    """Messages (new or edited) that carry blocks: final answers and notices."""
    return [
        c.args
        for c in slack.calls
        if c.method in ("chat.update", "chat.postMessage")
        and c.status == 200
        and c.args.get("blocks")
    ]


def blocks_of(call: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = call["blocks"]
    return json.loads(blocks) if isinstance(blocks, str) else list(blocks)


def button(call: dict[str, Any], action_id: str) -> dict[str, Any]:
    actions = next(b for b in blocks_of(call) if b["type"] == "actions")
    return next(e for e in actions["elements"] if e["action_id"] == action_id)


async def answered(slack: FakeSlack, adapter: SlackAdapter, count: int = 1) -> list[dict[str, Any]]:
    await slack.wait_for(lambda: len(finals(slack)) >= count)
    await adapter.drain()
    return finals(slack)


async def test_mention_streams_into_the_thread(
    slack: FakeSlack, start: Start, core: SlackCore
) -> None:
    core.fake.behave(token_delay=0.02)  # ~1.5 s of streaming: several throttled edits
    adapter = await start()
    event = user_message(f"<@{BOT_USER}> {QUESTION}")
    envelope = await slack.send_event(event)
    ack = await slack.wait_ack(envelope)
    assert ack.envelope_id == envelope

    [final] = await answered(slack, adapter)
    placeholder = posts(slack)[0]
    assert placeholder == {
        "channel": "C0GENERAL",
        "thread_ts": event["ts"],
        "text": "Looking it up…",
    }
    updates = [c for c in slack.calls if c.method == "chat.update"]
    partial, last = updates[:-1], updates[-1]
    assert len(partial) >= 2 and all("blocks" not in c.args for c in partial)
    assert all(c.args["ts"] == final["ts"] for c in updates)
    gaps = [b.at - a.at for a, b in itertools.pairwise(partial)]
    assert min(gaps) >= 0.09  # update_interval 0.1 s, not one edit per token
    assert last.args is final and final["channel"] == "C0GENERAL"
    section, context, actions = blocks_of(final)
    assert section["text"]["text"].startswith("To reset the VPN, *quit* the client first [1].")
    assert context["elements"][0]["text"] == "[1] VPN › Reset (sample/vpn.md)"
    assert [e["action_id"] for e in actions["elements"]] == [HELPFUL, ESCALATE]
    assert len(posts(slack)) == 1  # one reply, in the thread


async def test_retries_and_the_message_twin_are_answered_once(
    slack: FakeSlack, start: Start
) -> None:
    adapter = await start()
    event = user_message(f"<@{BOT_USER}> {QUESTION}")
    twin = {**event, "type": "message", "channel_type": "channel"}  # Slack sends both
    envelopes = [
        await slack.send_event(event, event_id="Ev1"),
        await slack.send_event(twin, event_id="Ev2"),
        await slack.send_event(event, event_id="Ev1", retry_attempt=1),  # a redelivery
        await slack.send_event(event, event_id="Ev3"),  # a server-side duplicate, new id
    ]
    for envelope in envelopes:
        await slack.wait_ack(envelope)
    await answered(slack, adapter)
    await adapter.drain()
    assert len(posts(slack)) == 1 and len(finals(slack)) == 1


async def test_rate_limited_edit_waits_and_the_answer_completes(
    slack: FakeSlack, start: Start, core: SlackCore
) -> None:
    core.fake.behave(token_delay=0.01)
    adapter = await start()
    slack.fail_next("chat.update", 429, retry_after=1)
    await slack.send_event(user_message(f"<@{BOT_USER}> {QUESTION}"))
    [final] = await answered(slack, adapter)
    updates = [c for c in slack.calls if c.method == "chat.update"]
    assert updates[0].status == 429 and updates[1].status == 200
    assert updates[1].at - updates[0].at >= 1.0  # Retry-After honoured
    assert [b["type"] for b in blocks_of(final)] == ["section", "context", "actions"]


async def test_direct_message_answered_at_top_level(slack: FakeSlack, start: Start) -> None:
    adapter = await start()
    dm = user_message(QUESTION, channel="D0ADA", kind="message", channel_type="im")
    await slack.send_event(dm)
    [final] = await answered(slack, adapter)
    placeholder = posts(slack)[0]
    assert placeholder["channel"] == "D0ADA" and "thread_ts" not in placeholder
    assert final["channel"] == "D0ADA"


@pytest.mark.policy(followups_off=["slack:C0QUIET"])
async def test_follow_ups_in_a_thread_the_bot_answered(slack: FakeSlack, start: Start) -> None:
    adapter = await start()
    first = user_message(f"<@{BOT_USER}> {QUESTION}")
    await slack.send_event(first)
    await answered(slack, adapter)

    follow = user_message("And the leave policy?", kind="message", thread_ts=first["ts"])
    await slack.send_event(follow)
    finals_now = await answered(slack, adapter, 2)
    assert finals_now[1]["channel"] == "C0GENERAL"
    assert posts(slack)[1]["thread_ts"] == first["ts"]

    # Not answered: a thread the bot never joined, a top-level message, a channel switched off.
    quiet = user_message(f"<@{BOT_USER}> {QUESTION}", channel="C0QUIET")
    await slack.send_event(quiet)
    await answered(slack, adapter, 3)
    for event in (
        user_message("vpn again?", kind="message", thread_ts="1700000000.000001"),
        user_message("vpn again?", kind="message"),
        user_message("vpn again?", kind="message", channel="C0QUIET", thread_ts=quiet["ts"]),
    ):
        await slack.wait_ack(await slack.send_event(event))
    await adapter.drain()
    assert len(posts(slack)) == 3


async def test_bots_edits_and_joins_are_ignored(slack: FakeSlack, start: Start) -> None:
    adapter = await start()
    ignored = [
        user_message(
            QUESTION, channel="D0ADA", kind="message", channel_type="im", bot_id="B0OTHER"
        ),
        user_message(
            QUESTION,
            channel="D0ADA",
            kind="message",
            channel_type="im",
            user=BOT_USER,
            bot_id=BOT_ID,
        ),
        user_message(
            QUESTION, channel="D0ADA", kind="message", channel_type="im", subtype="message_changed"
        ),
        user_message(
            QUESTION, channel="D0ADA", kind="message", channel_type="im", subtype="message_deleted"
        ),
        user_message("", kind="message", subtype="channel_join"),
    ]
    for event in ignored:
        await slack.wait_ack(await slack.send_event(event))  # acked, so Slack does not resend
    await adapter.drain()
    assert (
        posts(slack) == [] and [c.method for c in slack.calls if c.method.startswith("chat.")] == []
    )


async def test_a_file_without_a_download_gets_a_polite_reply(
    slack: FakeSlack, start: Start
) -> None:
    adapter = await start()
    upload = user_message(
        "",
        channel="D0ADA",
        kind="message",
        channel_type="im",
        subtype="file_share",
        files=[{"id": "F1", "name": "error.png", "mimetype": "image/png"}],
    )
    await slack.send_event(upload)
    [final] = await answered(slack, adapter)
    # no url_private: nothing to download, so nothing to read and no question to answer
    assert "nothing to answer yet" in blocks_of(final)[0]["text"]["text"]


async def test_late_mention_reads_the_thread(
    slack: FakeSlack, start: Start, core: SlackCore
) -> None:
    adapter = await start()
    parent = {
        "type": "message",
        "user": "U0BOB",
        "text": "Our VPN drops every hour",
        "ts": "1700000000.000100",
        "user_profile": {"display_name": "bob"},
    }
    noise = {"type": "message", "bot_id": "B0CI", "text": "build passed", "ts": "1700000000.000200"}
    slack.add_thread("C0GENERAL", [parent, noise])
    ask = user_message(f"<@{BOT_USER}> how do I fix it?", thread_ts=parent["ts"])
    await slack.send_event(ask)
    await answered(slack, adapter)
    # the thread for context, then the mentioned message itself for its files
    replies, files = slack.calls_to("conversations.replies")
    assert replies["ts"] == parent["ts"] and files["latest"] == ask["ts"]
    prompt = core.fake.requests[-1]["messages"][-1]["content"]
    assert "Earlier in this thread:\n- bob: Our VPN drops every hour" in prompt
    assert "Question: how do I fix it?" in prompt and "build passed" not in prompt
    assert posts(slack)[0]["thread_ts"] == parent["ts"]


async def test_buttons_record_feedback_and_escalate(
    slack: FakeSlack, start: Start, core: SlackCore
) -> None:
    adapter = await start()
    event = user_message(f"<@{BOT_USER}> {QUESTION}")
    await slack.send_event(event)
    [final] = await answered(slack, adapter)
    message = {"type": "message", "user": BOT_USER, "ts": final["ts"], "thread_ts": event["ts"]}

    helpful = button(final, HELPFUL)
    ack = await slack.wait_ack(
        await slack.send_action(
            block_action(HELPFUL, helpful["value"], channel="C0GENERAL", message=message)
        )
    )
    assert ack.envelope_id
    await slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))
    await adapter.drain()
    turn_id = json.loads(helpful["value"])["turn"]
    assert (await core.store.feedback(turn_id))["U0ADA"][0] == "up"

    person = button(final, ESCALATE)
    await slack.send_action(
        block_action(ESCALATE, person["value"], channel="C0GENERAL", message=message)
    )
    await slack.wait_for(lambda: posts(slack, "C0HELPDESK"))
    await adapter.drain()
    [notice] = posts(slack, "C0HELPDESK")
    body = blocks_of(notice)[0]["text"]["text"]
    permalink = slack.calls_to("chat.getPermalink")[0]
    assert permalink["message_ts"] == event["ts"]
    assert "<!subteam^S0AGENTS>" in body and QUESTION in body
    assert (
        f"<https://fake.slack.com/archives/C0GENERAL/p{event['ts'].replace('.', '')}|打开会话 / Open the thread>"
        in body
    )
    told = posts(slack, "C0GENERAL")[-1]
    assert (
        told["thread_ts"] == event["ts"]
        and "a person will reply" in blocks_of(told)[0]["text"]["text"]
    )

    # An agent replies in the thread: it is theirs now, and the bot stays quiet there.
    takeover = user_message("I'll take it", user="U0AGENT", kind="message", thread_ts=event["ts"])
    await slack.wait_ack(await slack.send_event(takeover))
    await adapter.drain()
    thread = await core.store.thread(ThreadKey("slack", TEAM, "C0GENERAL", event["ts"]))
    assert thread.state == ThreadState.HUMAN
    before = len(posts(slack))
    await slack.wait_ack(
        await slack.send_event(user_message("still broken", kind="message", thread_ts=event["ts"]))
    )
    await adapter.drain()
    assert len(posts(slack)) == before


@pytest.mark.policy(follow_ups=False)
async def test_with_follow_ups_off_an_agent_still_takes_the_thread_over(
    slack: FakeSlack, start: Start, core: SlackCore
) -> None:
    adapter = await start()
    event = user_message(f"<@{BOT_USER}> 转人工")
    await slack.send_event(event)
    await slack.wait_for(lambda: posts(slack, "C0HELPDESK"))
    await adapter.drain()
    key = ThreadKey("slack", TEAM, "C0GENERAL", event["ts"])
    assert (await core.store.thread(key)).state == ThreadState.ESCALATED
    takeover = user_message("On it", user="U0AGENT", kind="message", thread_ts=event["ts"])
    await slack.wait_ack(await slack.send_event(takeover))
    await adapter.drain()
    thread = await core.store.thread(key)
    assert (thread.state, thread.taken_by) == (ThreadState.HUMAN, "U0AGENT")


async def test_dropped_connection_is_reconnected(slack: FakeSlack, start: Start) -> None:
    adapter = await start(watchdog_idle=3.0)
    assert adapter.status().connected is True
    await slack.drop()
    await slack.wait_connections(2)
    await slack.send_event(user_message(f"<@{BOT_USER}> {QUESTION}"))
    await answered(slack, adapter)
    assert adapter.status().connected is True


async def test_quiet_connection_is_replaced_by_the_watchdog(slack: FakeSlack, start: Start) -> None:
    adapter = await start(watchdog_idle=0.6)
    slack.stall()  # open, but no pongs and no frames
    await slack.wait_connections(2)
    slack.stall(False)
    await slack.send_event(user_message(f"<@{BOT_USER}> {QUESTION}"))
    await answered(slack, adapter)


async def test_native_streaming(slack: FakeSlack, start: Start, core: SlackCore) -> None:
    core.fake.behave(token_delay=0.01)
    adapter = await start(native_streaming=True)
    event = user_message(f"<@{BOT_USER}> {QUESTION}")
    await slack.send_event(event)
    await slack.wait_for(lambda: slack.calls_to("chat.stopStream"))
    await adapter.drain()
    [started] = slack.calls_to("chat.startStream")
    assert started["thread_ts"] == event["ts"] and started["recipient_user_id"] == "U0ADA"
    appended = "".join(c["markdown_text"] for c in slack.calls_to("chat.appendStream"))
    [stopped] = slack.calls_to("chat.stopStream")
    assert appended + stopped.get("markdown_text", "") == ANSWER
    assert [b["type"] for b in stopped["blocks"]] == ["context", "actions"]


async def test_status_and_doctor_checks(slack: FakeSlack, start: Start) -> None:
    adapter = await start()
    status = adapter.status()
    assert (status.connected, status.mode) == (True, "socket") and status.last_event_age is None
    checks = {c.name: c for c in await adapter.check()}
    assert checks["auth.test"].status == "ok" and checks["scopes"].status == "ok"
    assert checks["socket mode"].status == "ok"
    slack.scopes = "chat:write,app_mentions:read"
    scopes = next(c for c in await adapter.check() if c.name == "scopes")
    assert scopes.status == "warning" and "im:history (read direct messages)" in scopes.detail
    await asyncio.sleep(0)
