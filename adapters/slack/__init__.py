"""Slack: @mentions and direct messages over Socket Mode or HTTP events (slack-bolt), answers
streamed as edits, Block Kit feedback buttons. `PLATFORM` is what the registry serves."""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters.platform import Platform, Wiring, unset
from adapters.slack.config import SlackSettings

if TYPE_CHECKING:
    from adapters.base import Adapter

__all__ = ["PLATFORM", "SlackSettings"]


def build(settings: SlackSettings, wiring: Wiring) -> Adapter:
    from adapters.slack.adapter import SlackAdapter

    return SlackAdapter(settings, wiring.core)


def missing(slack: SlackSettings) -> list[str]:
    """The credentials the chosen mode needs that are not set."""
    names = ["TEAMBOT_SLACK__BOT_TOKEN (xoxb-…)"] if unset(slack.bot_token) else []
    socket = slack.mode == "socket" or (slack.mode == "auto" and not unset(slack.app_token))
    if socket and unset(slack.app_token):
        names.append("TEAMBOT_SLACK__APP_TOKEN (xapp-…, Socket Mode)")
    if not socket and unset(slack.signing_secret):
        names.append(
            "TEAMBOT_SLACK__SIGNING_SECRET (HTTP events; or set TEAMBOT_SLACK__APP_TOKEN for "
            "Socket Mode)"
        )
    return names


def followups_off(slack: SlackSettings) -> list[str]:
    """`follow_ups = false` → "slack:*", `followup_channels_off` → "slack:<channel>" (the keys
    older config files set here, before [policy] had them)."""
    off = [] if slack.follow_ups else ["slack:*"]
    return off + [f"slack:{channel}" for channel in slack.followup_channels_off]


PLATFORM = Platform(
    name="slack",
    label=("Slack", "Slack"),
    section="slack",
    settings=SlackSettings,
    build=build,
    missing=missing,
    credentials_from="api.slack.com/apps → your app (created from deploy/slack/manifest.yaml)",
    followups_off=followups_off,
)
