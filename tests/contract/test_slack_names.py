"""The console's Slack names through the real slack_sdk against the fake Web API: the channel's
name from conversations.info, the asker's display name from users.info, each asked once."""

from __future__ import annotations

from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.names import SlackDirectory
from engine.messages import ThreadKey
from tests.fakes.slack import BOT_TOKEN, FakeSlack


async def test_names_come_from_slack_once() -> None:
    async with FakeSlack() as slack:
        client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url)
        names = SlackDirectory(client)
        key = ThreadKey("slack", "T0TEAM", "C0GENERAL", "1796173981.099911")
        for _ in range(3):
            assert await names.chat_name(key) == "#general"
            assert await names.user_name(key, "U0ADA") == "Ada"
        dm = ThreadKey("slack", "T0TEAM", "D0ADA", "dm")
        assert await names.chat_name(dm) == "私信 / direct message"
        assert len(slack.calls_to("conversations.info")) == 2
        assert len(slack.calls_to("users.info")) == 1
        slack.fail_next("users.info", 500)
        assert await names.user_name(key, "U0BOB") == ""  # the console shows the id instead
