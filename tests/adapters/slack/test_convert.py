"""Pure Slack conversions on payloads shaped as Slack sends them."""

from __future__ import annotations

import json
from dataclasses import replace

from adapters.slack import convert
from engine.messages import (
    Answer,
    ChatType,
    Citation,
    EscalationNotice,
    Outcome,
    ThreadKey,
    ThreadMessage,
)
from engine.threads.context import context_block, with_thread_context

BOT = "U0BOT"


def mention(**extra: object) -> dict[str, object]:
    event: dict[str, object] = {
        "type": "app_mention",
        "user": "U0ADA",
        "text": f"<@{BOT}> How do I reset my VPN?",
        "ts": "1700000001.000100",
        "client_msg_id": "6f1c-abc",
        "channel": "C0GENERAL",
        "event_ts": "1700000001.000100",
    }
    event.update(extra)
    return event


def test_message_id_is_the_same_for_mention_and_message_events() -> None:
    as_mention = mention()
    as_message = {**mention(), "type": "message", "channel_type": "channel"}
    assert convert.message_id(as_mention) == convert.message_id(as_message) == "6f1c-abc"
    no_client_id = {k: v for k, v in mention().items() if k != "client_msg_id"}
    assert convert.message_id(no_client_id) == "C0GENERAL:1700000001.000100"


def test_agents_and_mentioned_users_without_the_bot() -> None:
    event = mention(user="U0MEI", text=f"<@{BOT}> <@U0ADA|ada> is on it, <@U0BOB> <@U0ADA>")
    inbound = convert.to_inbound(
        event, tenant="T1", bot_user_id=BOT, mentioned=True, agents=["U0MEI"]
    )
    assert inbound.sender.is_agent and inbound.mentions == ("U0ADA", "U0BOB")
    assert inbound.threaded and inbound.text == "@ada is on it, @U0BOB @U0ADA"
    asker = convert.to_inbound(mention(), tenant="T1", bot_user_id=BOT, mentioned=True)
    assert not asker.sender.is_agent and asker.mentions == ()


def test_reply_goes_to_the_thread_or_starts_one() -> None:
    top = convert.where(mention(), "T1")
    assert (top.thread_id, top.reply_ts) == ("1700000001.000100", "1700000001.000100")
    inner = convert.where(mention(thread_ts="1699999999.000001"), "T1")
    assert (inner.thread_id, inner.reply_ts) == ("1699999999.000001", "1699999999.000001")
    dm = convert.where({"channel": "D0ADA", "channel_type": "im", "ts": "1.2"}, "T1")
    assert (dm.thread_id, dm.reply_ts) == (convert.DM_THREAD, None)
    assert dm.key == ThreadKey("slack", "T1", "D0ADA", "dm")


def test_people_only() -> None:
    assert convert.is_from_person(mention(), BOT)
    assert not convert.is_from_person(mention(user=BOT), BOT)
    assert not convert.is_from_person(mention(bot_id="B0OTHER"), BOT)
    for subtype in ("message_changed", "message_deleted", "channel_join", "bot_message"):
        assert not convert.is_from_person(mention(subtype=subtype), BOT), subtype
    assert convert.is_from_person(mention(subtype="file_share"), BOT)
    assert convert.is_from_person(mention(subtype="thread_broadcast"), BOT)


def test_plain_text_removes_the_bot_mention_and_unwraps_slack_markup() -> None:
    text = f"<@{BOT}> ask <@U0BOB|bob> in <#C0IT|it-help> about <https://vpn.example.com|the VPN> &amp; <!here>"
    assert convert.plain_text(text, BOT) == (
        "ask @bob in #it-help about the VPN (https://vpn.example.com) & @here"
    )


def test_to_inbound_with_thread_context_and_files() -> None:
    event = mention(
        thread_ts="1699999999.000001",
        files=[{"name": "screen.png", "mimetype": "image/png"}],
        text=f"<@{BOT}>",
    )
    inbound = convert.to_inbound(event, tenant="T1", bot_user_id=BOT, mentioned=True)
    assert inbound.text == "" and inbound.attachments[0].kind == "image"
    assert inbound.chat_type == ChatType.GROUP and inbound.thread_id == "1699999999.000001"
    late = convert.to_inbound(
        mention(),
        tenant="T1",
        bot_user_id=BOT,
        mentioned=True,
        history=(ThreadMessage("bob", "hi"),),
    )
    assert late.text == "How do I reset my VPN?"  # the context travels as data
    assert late.history == (ThreadMessage("bob", "hi"),)
    # the core puts it ahead of the question while the bot is new to the thread, only then
    with_context = with_thread_context(late, answered_before=False)
    assert (
        with_context.text
        == "Earlier in this thread:\n- bob: hi\n\nQuestion: How do I reset my VPN?"
    )
    assert with_thread_context(late, answered_before=True).text == "How do I reset my VPN?"


def test_thread_history_is_bounded_and_skips_bots_and_the_question() -> None:
    messages = [
        {
            "type": "message",
            "user": "U0BOB",
            "text": "VPN drops every hour",
            "ts": "1.0",
            "user_profile": {"display_name": "bob"},
        },
        {"type": "message", "user": BOT, "text": "earlier bot answer", "ts": "1.1"},
        {"type": "message", "bot_id": "B0X", "text": "some bot", "ts": "1.2"},
        *[
            {"type": "message", "user": "U0CY", "text": f"note {i} " + "x" * 500, "ts": f"2.{i}"}
            for i in range(30)
        ],
        {"type": "message", "user": "U0ADA", "text": f"<@{BOT}> why?", "ts": "9.9"},
    ]

    def listed(history: tuple[ThreadMessage, ...]) -> str:
        return context_block(
            replace(
                convert.to_inbound(mention(), tenant="T1", bot_user_id=BOT, mentioned=True),
                history=history,
            )
        )

    history = convert.thread_history(
        messages, current_ts="9.9", bot_user_id=BOT, limit=20, max_chars=1500
    )
    context = listed(history)
    lines = context.splitlines()
    assert lines[0] == "Earlier in this thread:" and lines[-1].startswith("- U0CY: note 29 ")
    assert lines[1].startswith("- U0CY: note 26 ")  # the oldest went first
    assert len(context) <= 1500
    assert (
        "earlier bot answer" not in context and "some bot" not in context and "why?" not in context
    )
    short = convert.thread_history(
        messages[:2], current_ts="9.9", bot_user_id=BOT, limit=20, max_chars=1500
    )
    assert listed(short) == "Earlier in this thread:\n- bob: VPN drops every hour"
    assert (
        convert.thread_history(messages, current_ts="9.9", bot_user_id=BOT, limit=0, max_chars=1500)
        == ()
    )


def test_markdown_to_mrkdwn() -> None:
    md = (
        "## Reset the VPN\n"
        "**Quit** the client, then *restart* it.\n"
        "- open `vpn <reset>`\n"
        "* see [the guide](https://wiki.example.com/vpn?a=1&b=2)\n"
        "1. ~~old~~ new\n"
        "```bash\nvpn --reset && echo ok\n```"
    )
    assert convert.markdown_to_mrkdwn(md) == (
        "*Reset the VPN*\n\n"
        "*Quit* the client, then _restart_ it.\n\n"
        "• open `vpn &lt;reset&gt;`\n\n"  # a new marker starts a new list (CommonMark)
        "• see <https://wiki.example.com/vpn?a=1&amp;b=2|the guide>\n\n"
        "1. ~old~ new\n\n"
        "```\nvpn --reset &amp;&amp; echo ok\n```"
    )
    assert convert.markdown_to_mrkdwn("2 * 3 * 4 and a_b_c") == "2 * 3 * 4 and a_b_c"


def answer(**extra: object) -> Answer:
    values: dict[str, object] = {
        "text": "Restart the client [1].",
        "outcome": Outcome.ANSWERED,
        "citations": (
            Citation(1, "VPN", "sample", "sample/vpn.md", section="Reset"),
            Citation(2, "Wiki", "web", "https://wiki.example.com/vpn", kind="web"),
        ),
        "turn_id": 42,
    }
    values.update(extra)
    return Answer(**values)  # type: ignore[arg-type]


def test_final_blocks_have_sources_and_buttons() -> None:
    place = convert.Where("T1", "C0GENERAL", "1.0", "1.0")
    blocks = convert.final_blocks(
        "Restart", answer(), place, last=True, labels=convert.labels("en")
    )
    assert [b["type"] for b in blocks] == ["section", "context", "actions"]
    sources = [e["text"] for e in blocks[1]["elements"]]
    assert sources == ["[1] VPN › Reset (sample/vpn.md)", "[2] <https://wiki.example.com/vpn|Wiki>"]
    helpful, person = blocks[2]["elements"]
    assert helpful["action_id"] == convert.HELPFUL and person["action_id"] == convert.ESCALATE
    turn, back = convert.parse_button_value(helpful["value"], "C0GENERAL")
    assert turn == 42 and back == place
    middle = convert.final_blocks("part", answer(), place, last=False, labels=convert.labels("en"))
    assert [b["type"] for b in middle] == ["section"]
    no_turn = convert.final_blocks(
        "x", answer(turn_id=None), place, last=True, labels=convert.labels("zh")
    )
    assert [b["type"] for b in no_turn] == ["section", "context"]


def test_long_answers_split_at_the_section_limit() -> None:
    pieces = convert.answer_pieces(answer(text="word " * 2000))
    assert len(pieces) == 4 and all(len(p) <= convert.SECTION_CHARS for p in pieces)


def test_escalation_notice_mentions_and_links() -> None:
    assert (
        convert.mention_text(["S0AGENTS", "U0AGENT", "here"])
        == "<!subteam^S0AGENTS> <@U0AGENT> <!here>"
    )
    notice = EscalationNotice(
        thread=ThreadKey("slack", "T1", "C0GENERAL", "1.0"),
        question="VPN <broken>",
        trigger="button",
        summary="Q: VPN\nA: restart",
    )
    text, blocks = convert.escalation_message(
        notice,
        permalink="https://fake.slack.com/archives/C0GENERAL/p10",
        mention="<!subteam^S0AGENTS>",
    )
    body = blocks[0]["text"]["text"]
    assert "<!subteam^S0AGENTS>" in body and "VPN &lt;broken&gt;" in body
    assert "<https://fake.slack.com/archives/C0GENERAL/p10|打开会话 / Open the thread>" in body
    assert text.startswith("<!subteam^S0AGENTS> 需要人工 / a thread needs a person")
    assert json.dumps(blocks)  # serialisable as Slack wants it
