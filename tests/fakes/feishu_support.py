"""Shared pieces of the Feishu tests: settings at the fake, feeding events as lark does."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from pydantic import SecretStr

from adapters.feishu.adapter import FeishuAdapter
from adapters.feishu.config import FeishuSettings
from tests.fakes.feishu import FakeFeishu

TOKEN = "verify-token-1"
ENCRYPT_KEY = "encrypt-key-1"
VPN = "How do I reset my VPN connection?"


def settings_for(fake: FakeFeishu, **changes: Any) -> FeishuSettings:
    values: dict[str, Any] = {
        "enabled": True,
        "app_id": fake.app_id,
        "app_secret": SecretStr(fake.app_secret),
        "verification_token": SecretStr(TOKEN),
        "encrypt_key": SecretStr(ENCRYPT_KEY),
        "mode": "webhook",
        "domain": fake.url,
        "update_interval": 0.1,
        "escalation_chat_id": "oc_helpdesk",
        "agents": ["ou_agent_1"],
        "stop_timeout": 5,
        **changes,
    }
    return FeishuSettings(**values)


async def feed(adapter: FeishuAdapter, payload: dict[str, Any]) -> Any:
    """Run a raw event through the adapter's EventDispatcherHandler from another thread, as the
    long connection does (`_do_without_validation`), then wait for the work it handed off."""
    result = await asyncio.to_thread(
        adapter.dispatcher._do_without_validation, json.dumps(payload).encode()
    )
    await settle(adapter)
    return result


async def settle(adapter: FeishuAdapter) -> None:
    """Let handed-off callbacks run, then wait for every answer in flight."""
    await asyncio.sleep(0)
    while len(adapter._in_flight):
        await adapter.drain(10)
        await asyncio.sleep(0)
