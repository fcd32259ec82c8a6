"""The platform registry: one record per platform package, and everything that reads it."""

from __future__ import annotations

from pydantic import SecretStr

from adapters.dingtalk.config import DingTalkSettings
from adapters.feishu.config import FeishuSettings
from adapters.slack.config import SlackSettings
from bot.console.present import words
from bot.platforms import PLATFORMS, documents, labels
from bot.settings import ServerSettings, Settings, missing_credentials


def test_each_platform_has_one_record_and_its_own_section() -> None:
    names = [platform.name for platform in PLATFORMS]
    assert names == ["web", "slack", "feishu", "dingtalk"]
    settings = Settings()
    for platform in PLATFORMS:
        assert isinstance(platform.of(settings), platform.settings), platform.name
        zh, en = platform.label
        assert (zh and en and not zh.isascii()) or zh == en, platform.label
    # out of the box only the web chat is on
    assert [p.name for p in PLATFORMS if p.is_on(settings)] == ["web"]
    off = Settings(server=ServerSettings(web_chat=False), slack=SlackSettings(enabled=True))
    assert [p.name for p in PLATFORMS if p.is_on(off)] == ["slack"]


def test_missing_credentials_are_asked_of_each_platform_enabled() -> None:
    settings = Settings(
        slack=SlackSettings(enabled=True, bot_token=SecretStr("xoxb-1"), mode="http"),
        feishu=FeishuSettings(enabled=True, app_id="cli_1", app_secret=SecretStr("s")),
        dingtalk=DingTalkSettings(enabled=False),
    )
    found = missing_credentials(settings)
    assert set(found) == {"slack"}  # feishu has what its mode needs; dingtalk is off
    assert "TEAMBOT_SLACK__SIGNING_SECRET" in found["slack"]
    assert "[slack] enabled = false (TEAMBOT_SLACK__ENABLED=false)" in found["slack"]
    assert "api.slack.com/apps" in found["slack"]


def test_document_kinds_come_from_the_platforms_that_have_documents() -> None:
    kinds = {kind.name for each in documents(Settings()) for kind in each.kinds()}
    assert {"feishu_wiki", "feishu_drive", "feishu_doc", "dingtalk_wiki"} <= kinds


def test_the_console_names_each_platform_in_both_languages() -> None:
    assert str(words("dingtalk", labels())) == '钉钉 <span class="en">DingTalk</span>'
    assert str(words("web", labels())) == '网页聊天 <span class="en">web chat</span>'
    assert str(words("slack", labels())) == "Slack"
