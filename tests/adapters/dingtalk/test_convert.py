"""Pure conversions of the DingTalk adapter, on payloads shaped like DingTalk's."""

from __future__ import annotations

import pytest

from adapters.dingtalk.convert import (
    answer_markdown,
    escalation_markdown,
    mention,
    parse,
    reply_target,
    title_of,
    to_inbound,
    wants_answer,
)
from engine.messages import (
    Answer,
    ChatType,
    Citation,
    EscalationNotice,
    Outcome,
    ThreadKey,
)
from tests.fakes.dingtalk import bot_message


def test_group_text_mention_becomes_an_inbound() -> None:
    data = bot_message(" @teambot  How do I reset my VPN?", msg_id="msgA")
    message = parse(data)
    inbound = to_inbound(message, data)
    assert wants_answer(message)
    assert inbound.platform == "dingtalk" and inbound.tenant == "ding-corp"
    assert inbound.chat_id == "cid-group-1" and inbound.chat_type is ChatType.GROUP
    assert inbound.message_id == "msgA" and inbound.thread_id == ""  # the core places it
    assert inbound.sender.id == "staff-ada" and inbound.sender.display_name == "Ada"
    assert inbound.text == "How do I reset my VPN?"
    assert inbound.attachments == ()
    assert inbound.raw is not None and inbound.raw["msgId"] == "msgA"


def test_agents_and_the_staff_they_mention_are_marked_in_a_chat_without_threads() -> None:
    data = bot_message("@Bob 我来处理", sender="agent-mei", nick="Mei")
    data["atUsers"].append({"dingtalkId": "$:LWCP_v1:$bob", "staffId": "staff-bob"})
    inbound = to_inbound(parse(data), data, agents=["agent-mei"])
    assert inbound.sender.is_agent and inbound.mentions == ("staff-bob",)  # the bot left out
    assert inbound.threaded is False
    asker = to_inbound(parse(bot_message()), data, agents=["agent-mei"])
    assert not asker.sender.is_agent and asker.mentions == ()


def test_group_message_without_mention_is_not_for_the_bot() -> None:
    assert not wants_answer(parse(bot_message(mentioned=False)))
    assert wants_answer(parse(bot_message(group=False)))


def test_rich_text_is_reduced_to_plain_text() -> None:
    content = {
        "richText": [
            {"text": "VPN 连不上，"},
            {"downloadCode": "dl1", "type": "picture"},
            {"text": "怎么办？"},
        ]
    }
    data = bot_message(msgtype="richText", content=content, group=False)
    inbound = to_inbound(parse(data), data)
    assert inbound.text == "VPN 连不上，怎么办？"
    assert inbound.chat_type is ChatType.DIRECT
    assert [a.kind for a in inbound.attachments] == ["image"]


@pytest.mark.parametrize(
    ("msgtype", "content", "kind", "name"),
    [
        ("picture", {"downloadCode": "dl1"}, "image", ""),
        ("file", {"downloadCode": "dl2", "fileName": "report.pdf"}, "file", "report.pdf"),
        ("audio", {"downloadCode": "dl3", "recognition": "hi"}, "audio", ""),
        ("video", {"downloadCode": "dl4"}, "video", ""),
    ],
)
def test_attachments_leave_the_text_empty(
    msgtype: str, content: dict[str, str], kind: str, name: str
) -> None:
    data = bot_message(msgtype=msgtype, content=content)
    inbound = to_inbound(parse(data), data)
    assert inbound.text == ""
    assert [(a.kind, a.name) for a in inbound.attachments] == [(kind, name)]


def test_malformed_payload_is_refused() -> None:
    with pytest.raises(ValueError):
        parse({"msgtype": "text", "text": {"content": "hi"}})


def test_webhook_validity_uses_the_expiry_that_came_with_the_message() -> None:
    data = bot_message(webhook="http://hook", expires_in_ms=60_000)
    target = reply_target(parse(data))
    expires = int(data["sessionWebhookExpiredTime"])
    assert target.webhook_valid(expires - 30_000)
    assert not target.webhook_valid(expires - 5_000)  # too close to expiry
    assert not reply_target(parse(bot_message(webhook=""))).webhook_valid(0)


def _answer(**changes: object) -> Answer:
    values: dict[str, object] = {
        "text": "Open the VPN client and choose Reset [1].",
        "outcome": Outcome.ANSWERED,
        "citations": (
            Citation(1, "VPN guide", "handbook", "https://wiki/vpn", "Reset"),
            Citation(2, "Leave", "handbook", "sample/leave-policy.md"),
        ),
        "turn_id": 7,
    }
    values.update(changes)
    return Answer(**values)  # type: ignore[arg-type]


def test_answer_markdown_has_numbered_sources_and_the_human_hint() -> None:
    text = answer_markdown(_answer(), hint_human=True)
    assert text.startswith("Open the VPN client")
    assert (
        "**Sources**\n\n1. [VPN guide](https://wiki/vpn) · Reset\n2. Leave — `sample/leave-policy.md`"
        in text
    )
    assert text.endswith('_Reply "human" to reach a person (转人工)_')
    zh = answer_markdown(_answer(language="zh"), hint_human=True)
    assert "**来源**" in zh and "转人工" in zh
    handed = answer_markdown(_answer(outcome=Outcome.HANDED_OFF, citations=()), hint_human=True)
    assert handed == "Open the VPN client and choose Reset [1]."
    assert "human" not in answer_markdown(_answer(), hint_human=False)


def test_title_and_mentions() -> None:
    assert title_of("**Sources**\nx") == "Sources"
    target = reply_target(parse(bot_message()))
    assert mention("hi", target, webhook=True) == "@staff-ada\n\nhi"
    assert mention("hi", target, webhook=False) == "@Ada\n\nhi"
    direct = reply_target(parse(bot_message(group=False)))
    assert mention("hi", direct, webhook=True) == "hi"


def test_escalation_markdown_mentions_agents_and_carries_the_question() -> None:
    key = ThreadKey("dingtalk", "corp", "cid-group-1", "staff-ada@1")
    notice = EscalationNotice(key, "VPN is down", "asked_for_human", summary="Q: a\nA: b")
    target = reply_target(parse(bot_message()))
    text = escalation_markdown(notice, ["agent-bob", "agent-eve"], target)
    assert "@agent-bob @agent-eve" in text
    assert "VPN is down" in text and "Ada (staff-ada)" in text and "asked for a person" in text
