"""Start-up and doctor checks for Slack: which mode, are the tokens and scopes right."""

from __future__ import annotations

import contextlib

from slack_sdk.web.async_client import AsyncWebClient

from adapters.base import Check
from adapters.slack.config import SlackSettings
from adapters.slack.reply import SLACK_ERRORS

# Scope -> what teambot needs it for (doctor lists the missing ones).
SCOPES = {
    "app_mentions:read": "receive @mentions in channels",
    "chat:write": "post and edit answers",
    "channels:history": "thread follow-ups and thread context in public channels",
    "groups:history": "thread follow-ups and thread context in private channels",
    "im:history": "read direct messages",
    "mpim:history": "read group direct messages",
    "users:read": "askers' names in the console",
    "channels:read": "channel names in the console",
    "groups:read": "private channel names in the console",
    "files:read": "read the images and files people attach",
}
ESSENTIAL = {"app_mentions:read", "chat:write"}


class SlackConfigError(ValueError):
    """The [slack] settings cannot work; the message says what to set."""


async def run_checks(client: AsyncWebClient, settings: SlackSettings, mode: str) -> list[Check]:
    """`teambot doctor` rows: auth.test, missing scopes with their purpose, intake, escalation."""
    checks: list[Check] = []
    try:
        identity = await client.auth_test()
    except SLACK_ERRORS as error:
        fix = "check TEAMBOT_SLACK__BOT_TOKEN and [slack] api_url"
        return [Check("auth.test", "error", f"{reason(error)}: {fix}")]
    checks.append(
        Check(
            "auth.test",
            "ok",
            f"bot {identity.get('user')} ({identity.get('user_id')}) in {identity.get('team')}",
        )
    )
    granted_header = identity.headers.get("x-oauth-scopes") or identity.headers.get(
        "X-OAuth-Scopes"
    )
    if granted_header is None:
        checks.append(Check("scopes", "warning", "Slack did not report the token's scopes"))
    else:
        granted = {s.strip() for s in str(granted_header).split(",")}
        missing = [s for s in SCOPES if s not in granted]
        if missing:
            status = "error" if ESSENTIAL & set(missing) else "warning"
            listed = "; ".join(f"{s} ({SCOPES[s]})" for s in missing)
            detail = f"missing {listed}: add them (deploy/slack/manifest.yaml) and reinstall"
            checks.append(Check("scopes", status, detail))
        else:
            checks.append(Check("scopes", "ok", ", ".join(SCOPES)))
    checks.append(await _check_intake(client, settings, mode))
    if not settings.escalation_channel:
        checks.append(
            Check(
                "escalation",
                "warning",
                "[slack] escalation_channel is not set: notices only logged",
            )
        )
    return checks


async def _check_intake(client: AsyncWebClient, settings: SlackSettings, mode: str) -> Check:
    if mode == "http":
        return Check("mode", "ok", "HTTP events at /slack/events, signing secret set")
    assert settings.app_token is not None
    try:
        await client.apps_connections_open(app_token=settings.app_token.get_secret_value())
    except SLACK_ERRORS as error:
        return Check(
            "socket mode",
            "error",
            f"apps.connections.open failed ({reason(error)}): check TEAMBOT_SLACK__APP_TOKEN "
            "(an xapp- token with connections:write) and that Socket Mode is on",
        )
    return Check("socket mode", "ok", "app token accepted")


def resolve_mode(settings: SlackSettings) -> tuple[str, str]:
    """("socket" | "http", problem or "")."""
    app_token = settings.app_token.get_secret_value() if settings.app_token else ""
    mode = settings.mode
    if mode == "auto":
        mode = "socket" if app_token else "http"
    if not settings.bot_token:
        return mode, (
            "TEAMBOT_SLACK__BOT_TOKEN is not set: create the Slack app from "
            "deploy/slack/manifest.yaml, install it, and set its Bot User OAuth Token (xoxb-…); "
            "or disable Slack with [slack] enabled = false"
        )
    if mode == "socket" and not app_token.startswith("xapp-"):
        return mode, (
            "Socket Mode needs TEAMBOT_SLACK__APP_TOKEN, an app-level token (xapp-…) with "
            "connections:write (Slack app > Basic Information > App-Level Tokens); "
            'or use [slack] mode = "http" with a signing secret'
        )
    if mode == "http" and not settings.signing_secret:
        return mode, (
            "HTTP mode needs TEAMBOT_SLACK__SIGNING_SECRET to verify that events come from Slack "
            "(Slack app > Basic Information > Signing Secret); teambot will not accept unsigned "
            "events. Or set TEAMBOT_SLACK__APP_TOKEN to use Socket Mode"
        )
    return mode, ""


def reason(error: BaseException) -> str:
    response = getattr(error, "response", None)
    if response is not None:
        with contextlib.suppress(Exception):
            return str(response["error"])
    return f"{type(error).__name__}: {error}"
