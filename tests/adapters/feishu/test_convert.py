"""Pure conversions on recorded-shape Feishu payloads."""

from __future__ import annotations

import json

from lark_oapi.api.im.v1 import P2ImMessageReceiveV1
from lark_oapi.core.json import JSON

from adapters.feishu.convert import (
    ReplyTarget,
    button_value,
    click,
    final_card,
    message_text,
    plain_text,
    received,
    request_uuid,
    sources_markdown,
)
from engine.messages import Answer, ChatType, Citation, Outcome, ThreadKey
from tests.fakes.feishu import BOT_OPEN_ID
from tests.fakes.feishu_events import message_event

CITES = (
    Citation(1, "VPN guide", "sample", "https://wiki.example.com/vpn", "Reset"),
    Citation(2, "Leave policy", "sample", "sample/leave-policy.md"),
)


def parse(payload: dict[str, object]) -> P2ImMessageReceiveV1:
    return JSON.unmarshal(json.dumps(payload), P2ImMessageReceiveV1)


def test_group_text_mention_is_stripped_and_keyed_by_message() -> None:
    got = received(parse(message_event("  How do I reset my VPN?", message_id="om_1")), BOT_OPEN_ID)
    assert got is not None
    inbound = got.inbound
    assert inbound.text == "How do I reset my VPN?" and inbound.mentioned
    assert inbound.chat_type == ChatType.GROUP and inbound.thread_id == "om_1"
    assert got.target.in_thread is False and got.target.message_id == "om_1"
    assert (
        inbound.raw is not None and inbound.raw["header"]["event_type"] == "im.message.receive_v1"
    )


def test_thread_id_then_root_id_then_message_id() -> None:
    in_topic = received(parse(message_event("q", thread_id="omt_9", root_id="om_r")), BOT_OPEN_ID)
    assert in_topic is not None and in_topic.inbound.thread_id == "omt_9"
    assert in_topic.target.in_thread is True
    reply = received(parse(message_event("q", root_id="om_r")), BOT_OPEN_ID)
    assert reply is not None and reply.inbound.thread_id == "om_r" and not reply.target.in_thread
    topic_chat = received(parse(message_event("q", chat_type="topic")), BOT_OPEN_ID)
    assert topic_chat is not None and topic_chat.target.in_thread


def test_other_mentions_keep_the_name_and_bot_not_mentioned() -> None:
    payload = message_event(content={"text": "@_user_2 can you check? @_all"}, mention_bot=False)
    message = payload["event"]["message"]  # type: ignore[index]
    message["mentions"] = [{"key": "@_user_2", "id": {"open_id": "ou_x"}, "name": "Li Lei"}]
    got = received(parse(payload), BOT_OPEN_ID)
    assert got is not None
    assert got.inbound.text == "@Li Lei can you check?" and not got.inbound.mentioned
    assert got.inbound.mentions == ("ou_x",) and got.inbound.threaded


def test_agents_are_marked_and_the_bot_is_not_among_the_mentions() -> None:
    payload = message_event("I'll take it", sender="ou_mei", root_id="om_r")
    message = payload["event"]["message"]  # type: ignore[index]
    message["mentions"].append({"key": "@_user_2", "id": {"open_id": "ou_ada"}, "name": "Ada"})
    got = received(parse(payload), BOT_OPEN_ID, agents=["ou_mei"])
    assert got is not None and got.inbound.sender.is_agent and got.inbound.mentioned
    assert got.inbound.mentions == ("ou_ada",)
    asker = received(parse(message_event("q")), BOT_OPEN_ID, agents=["ou_mei"])
    assert asker is not None and not asker.inbound.sender.is_agent


def test_p2p_counts_as_mentioned() -> None:
    got = received(parse(message_event("hi", chat_type="p2p", mention_bot=False)), BOT_OPEN_ID)
    assert got is not None and got.inbound.chat_type == ChatType.DIRECT and got.inbound.mentioned


def test_post_rich_text_becomes_plain_text() -> None:
    post = {
        "title": "VPN 问题",
        "content": [
            [
                {"tag": "at", "user_id": "@_user_1", "user_name": "teambot"},
                {"tag": "text", "text": " 怎么重置 "},
            ],
            [
                {"tag": "a", "text": "guide", "href": "https://x.example/vpn"},
                {"tag": "img", "image_key": "k"},
            ],
        ],
    }
    text, attachments = message_text("post", json.dumps(post), {"@_user_1": ""})
    assert text == "VPN 问题\n怎么重置\nguide (https://x.example/vpn)"
    assert [a.kind for a in attachments] == ["image"]
    wrapped, _ = message_text("post", json.dumps({"zh_cn": post}), {"@_user_1": ""})
    assert wrapped == text


def test_images_and_files_are_attachments_without_text() -> None:
    assert message_text("image", '{"image_key":"img_1"}', {}) == (
        "",
        message_text("image", "{}", {})[1],
    )
    text, attachments = message_text("file", '{"file_key":"f","file_name":"a.pdf"}', {})
    assert text == "" and attachments[0].kind == "file" and attachments[0].name == "a.pdf"


def test_final_card_has_sources_and_buttons_that_click_back() -> None:
    key = ThreadKey("feishu", "tk", "oc_1", "omt_1")
    target = ReplyTarget(key, "om_5", True)
    answer = Answer("Reset it [1].", Outcome.ANSWERED, citations=CITES, turn_id=42)
    card = final_card(answer, answer.text, target)
    elements = card["body"]["elements"]
    assert elements[0]["content"] == "Reset it [1]." and card["config"]["streaming_mode"] is False
    assert "[VPN guide](https://wiki.example.com/vpn) · Reset" in elements[2]["content"]
    values = [c["elements"][0]["behaviors"][0]["value"] for c in elements[3]["columns"]]
    clicks = [click(v) for v in values]
    assert [c.action for c in clicks if c] == ["up", "human"]
    assert clicks[1] is not None and clicks[1].target == target and clicks[1].turn_id == 42
    assert click({"tb": "other"}) is None and click(None) is None
    assert click({**button_value(target, 1), "tb": "up", "turn": "x"}) is None


def test_no_buttons_without_a_turn_or_on_refusals() -> None:
    target = ReplyTarget(ThreadKey("feishu", "t", "c", "x"), "om", False)
    refused = Answer("Text only please", Outcome.FAILED, turn_id=3)
    assert len(final_card(refused, refused.text, target)["body"]["elements"]) == 1
    unsaved = Answer("hi", Outcome.ANSWERED)
    assert len(final_card(unsaved, "hi", target)["body"]["elements"]) == 1


def test_sources_and_plain_fallback() -> None:
    assert "2. Leave policy (sample/leave-policy.md)" in sources_markdown(CITES)
    text = plain_text(Answer("A [1]", Outcome.ANSWERED, citations=CITES), "A [1]")["text"]
    assert text.startswith("A [1]\n\n来源 / Sources:\n[1] VPN guide https://wiki.example.com/vpn")


def test_request_uuid_is_stable_and_short() -> None:
    assert request_uuid("open", "om_1") == request_uuid("open", "om_1")
    assert request_uuid("open", "om_1") != request_uuid("final", "om_1")
    assert len(request_uuid("stream", "c" * 200, 10**9)) <= 50
