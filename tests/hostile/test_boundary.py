"""Property tests of the boundary: any value a sender can put in any field of a platform event
becomes a clean Inbound (or a refusal the adapter logs), never an exception that escapes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lark_oapi.api.im.v1 import P2ImMessageReceiveV1
from lark_oapi.core.json import JSON

from adapters.dingtalk.convert import parse as dingtalk_parse
from adapters.dingtalk.convert import plain_text as dingtalk_text
from adapters.dingtalk.convert import reply_target
from adapters.dingtalk.convert import to_inbound as dingtalk_inbound
from adapters.feishu.convert import received
from adapters.slack.convert import malformed_request
from adapters.slack.convert import to_inbound as slack_inbound
from engine import clean
from engine.messages import ChatType, Inbound, Sender
from tests.fakes.dingtalk import bot_message
from tests.fakes.feishu import BOT_OPEN_ID
from tests.fakes.feishu_events import message_event

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# every kind of JSON value, strings with surrogates, NULs and control characters included
hostile_text = st.text(
    alphabet=st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF), max_size=300
) | st.sampled_from(["\ud800", "\x00", "a\udc00b", "\ud83d\ude00", "\x1b[31m", "\u202e", ""])
scalars = (
    hostile_text
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.booleans()
    | st.none()
    | st.sampled_from(["1e20", "inf", "-inf", "nan", "abc", "9" * 400, "1700000000.000100"])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def assert_clean(inbound: Inbound) -> None:
    """What every consumer (tokenizer, PostgreSQL, logs) relies on."""
    for value in (
        inbound.text,
        inbound.platform,
        inbound.tenant,
        inbound.chat_id,
        inbound.thread_id,
        inbound.message_id,
        inbound.sender.id,
        inbound.sender.display_name,
    ):
        assert isinstance(value, str)
        value.encode("utf-8")  # no lone surrogate
        assert "\x00" not in value
        assert not any(0 < ord(c) < 32 and c not in "\t\n" for c in value)
    for ident in (inbound.chat_id, inbound.thread_id, inbound.message_id, inbound.sender.id):
        assert len(ident) <= clean.MAX_ID
    assert len(inbound.text) <= clean.MAX_TEXT
    assert inbound.sent_at.tzinfo is not None


@PROPERTY
@given(text=hostile_text, ident=hostile_text, name=hostile_text)
def test_inbound_is_clean_whatever_it_is_built_from(text: str, ident: str, name: str) -> None:
    inbound = Inbound(
        platform="web",
        tenant=ident,
        chat_id=ident * 3,
        chat_type=ChatType.DIRECT,
        thread_id=ident,
        message_id=ident + "x" * 300,
        sender=Sender(ident, name * 10),
        text=text,
        sent_at=datetime(2026, 1, 1),  # naive: taken as UTC
    )
    assert_clean(inbound)


def test_clean_keeps_what_people_write() -> None:
    assert clean.text("VPN 怎么连？\n\tstep 1 😀") == "VPN 怎么连？\n\tstep 1 😀"
    assert clean.text("a\ud83d\ude00b") == "a😀b"  # a pair written as two code points, joined
    assert clean.text("a\ud800b\x00c\x1b") == "a\ufffdbc"
    assert clean.text(12345) == "12345" and clean.text(None) == ""
    long = "m" * 1000
    assert clean.ident(long) != clean.ident(long + "n") and len(clean.ident(long)) == 255
    for nonsense in ("1e20", "inf", "nan", "abc", 1e300, float("inf"), True, None, [1]):
        assert clean.timestamp(nonsense) is None
    assert clean.when("1e20").year == datetime.now(UTC).year
    assert clean.timestamp("1700000000.5") == datetime.fromtimestamp(1700000000.5, UTC)


@PROPERTY
@given(text=scalars, ts=scalars, user=scalars, channel=scalars, thread=scalars, profile=json_values)
def test_slack_event_fields(
    text: Any, ts: Any, user: Any, channel: Any, thread: Any, profile: Any
) -> None:
    event = {
        "type": "app_mention",
        "text": text,
        "ts": ts,
        "user": user,
        "channel": channel,
        "thread_ts": thread,
        "user_profile": profile if isinstance(profile, dict) else {},
    }
    inbound = slack_inbound(event, tenant="T1", bot_user_id="U0BOT", mentioned=True)
    assert_clean(inbound)


@PROPERTY
@given(
    body=st.binary(max_size=200) | hostile_text.map(lambda s: s.encode("utf-8", "surrogatepass")),
    stamp=hostile_text,
    kind=st.sampled_from(
        ["application/json", "application/x-www-form-urlencoded", "text/plain", ""]
    ),
)
def test_slack_request_check_never_raises(body: bytes, stamp: str, kind: str) -> None:
    assert isinstance(
        malformed_request({"x-slack-request-timestamp": stamp, "content-type": kind}, body), str
    )


def test_slack_requests_that_bolt_would_500_on() -> None:
    json_kind = {"content-type": "application/json", "x-slack-request-timestamp": "1700000000"}
    assert malformed_request(json_kind, b"\xff\xfe{}") == "body is not UTF-8"
    assert malformed_request(json_kind, b"[1, 2]") == "body is not a JSON object"
    assert "not a number" in malformed_request({"x-slack-request-timestamp": "soon"}, b"{}")
    assert malformed_request(json_kind, b'{"type": "event_callback"}') == ""


@PROPERTY
@given(text=scalars, message_id=scalars, chat_id=scalars, create_time=scalars, content=json_values)
def test_feishu_event_fields(
    text: Any, message_id: Any, chat_id: Any, create_time: Any, content: Any
) -> None:
    payload = message_event("hello")
    message = payload["event"]["message"]
    message["create_time"] = create_time
    message["message_id"] = message_id if message_id else "om_x"
    message["chat_id"] = chat_id if chat_id else "oc_x"
    message["content"] = json.dumps({"text": text, "extra": content})
    try:
        event = JSON.unmarshal(json.dumps(payload), P2ImMessageReceiveV1)
    except (TypeError, ValueError):
        return  # the SDK refuses it before us; the adapter logs and drops such an event
    try:
        got = received(event, BOT_OPEN_ID)
    except Exception as error:  # pragma: no cover - a failure here is what the test hunts
        pytest.fail(f"received() raised {error!r}")
    if got is not None:
        assert_clean(got.inbound)


@PROPERTY
@given(
    content=scalars,
    create_at=scalars,
    expires=scalars,
    nick=scalars,
    text_field=json_values,
)
def test_dingtalk_frame_fields(
    content: Any, create_at: Any, expires: Any, nick: Any, text_field: Any
) -> None:
    data = bot_message("hello")
    data["text"] = {"content": content} if not isinstance(text_field, list) else text_field
    data["createAt"] = create_at
    data["sessionWebhookExpiredTime"] = expires
    data["senderNick"] = nick
    try:
        message = dingtalk_parse(data)
    except ValueError:
        return  # logged and acknowledged by the adapter: it would not parse any better later
    reply_target(message)
    assert isinstance(dingtalk_text(message), str)
    assert_clean(dingtalk_inbound(message, data))


def test_dingtalk_number_as_text_and_nonsense_time_are_answered() -> None:
    data = bot_message("x")
    data["text"] = {"content": 12345}
    data["createAt"] = "abc"
    inbound = dingtalk_inbound(dingtalk_parse(data), data)
    assert inbound.text == "12345"
    assert abs((inbound.sent_at - datetime.now(UTC)).total_seconds()) < 60
