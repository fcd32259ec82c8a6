"""`reply_channel(key)`: each platform adapter can post into an existing thread unprompted
(console replies, SLA reminders) or says it cannot (None)."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from adapters.dingtalk.adapter import DingTalkAdapter
from adapters.dingtalk.config import DingTalkSettings
from adapters.dingtalk.reply import DingTalkReplyChannel
from adapters.feishu.adapter import FeishuAdapter
from adapters.feishu.config import FeishuSettings
from adapters.feishu.reply import FeishuReplyChannel
from adapters.slack.adapter import SlackAdapter
from adapters.slack.config import SlackSettings
from adapters.slack.reply import SlackReplyChannel
from adapters.web.adapter import WebAdapter
from engine.messages import Answer, Outcome, ThreadKey

CORE: Any = object()


def test_slack_posts_into_threads_and_dm_top_level() -> None:
    adapter = SlackAdapter(
        SlackSettings(
            enabled=True, bot_token=SecretStr("xoxb-1"), signing_secret=SecretStr("s"), mode="http"
        ),
        CORE,
    )
    channel = adapter.reply_channel(ThreadKey("slack", "T1", "C1", "1700000000.000100"))
    assert isinstance(channel, SlackReplyChannel)
    assert channel.place.reply_ts == "1700000000.000100"
    assert adapter.reply_channel(ThreadKey("feishu", "t", "c", "om_1")) is None


def test_feishu_replies_to_message_threads_not_topics() -> None:
    adapter = FeishuAdapter(
        FeishuSettings(enabled=True, app_id="cli_1", app_secret=SecretStr("x")), CORE
    )
    assert isinstance(
        adapter.reply_channel(ThreadKey("feishu", "tk", "oc_1", "om_root")), FeishuReplyChannel
    )
    assert adapter.reply_channel(ThreadKey("feishu", "tk", "oc_1", "omt_topic")) is None


def test_dingtalk_posts_through_the_openapi() -> None:
    adapter = DingTalkAdapter(
        DingTalkSettings(enabled=True, client_id="ding1", client_secret=SecretStr("x")), CORE
    )
    key = ThreadKey("dingtalk", "corp", "cid1", "staff-9@1700000000")
    assert isinstance(adapter.reply_channel(key), DingTalkReplyChannel)
    unconfigured = DingTalkAdapter(DingTalkSettings(), CORE)
    assert unconfigured.reply_channel(key) is None


async def test_web_chat_posts_into_the_threads_open_pages() -> None:
    adapter = WebAdapter(CORE)
    key, other = ThreadKey("web", "local", "c", "t"), ThreadKey("web", "local", "c", "u")
    page, elsewhere = adapter.pages.listen(key), adapter.pages.listen(other)
    channel = adapter.reply_channel(key)
    assert channel is not None
    await channel.finish(Answer(text="**Mei** · support\n\nHi", outcome=Outcome.HANDED_OFF))
    event = page.get_nowait()
    assert event["type"] == "agent" and "<strong>Mei</strong>" in event["html"]
    assert elsewhere.empty()
