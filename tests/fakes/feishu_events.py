"""Feishu events as the platform sends them: payloads, AES encryption and request signatures."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import uuid
from typing import Any

from Crypto.Cipher import AES

from tests.fakes.feishu import APP_ID, BOT_OPEN_ID, TENANT


def message_event(
    text: str | None = None,
    *,
    message_id: str | None = None,
    chat_id: str = "oc_group1",
    chat_type: str = "group",
    mention_bot: bool = True,
    thread_id: str = "",
    root_id: str = "",
    sender: str = "ou_user_1",
    message_type: str = "text",
    content: dict[str, Any] | None = None,
    token: str = "",
    event_id: str | None = None,
) -> dict[str, Any]:
    """An `im.message.receive_v1` event (schema 2.0) as Feishu sends it."""
    mentions = []
    if mention_bot:
        mentions.append(
            {
                "key": "@_user_1",
                "id": {"open_id": BOT_OPEN_ID, "union_id": "on_bot", "user_id": ""},
                "name": "teambot",
                "tenant_key": TENANT,
            }
        )
    if content is None:
        prefix = "@_user_1 " if mention_bot else ""
        content = {"text": f"{prefix}{text or ''}"}
    now = str(int(time.time() * 1000))
    return {
        "schema": "2.0",
        "header": {
            "event_id": event_id or uuid.uuid4().hex,
            "token": token,
            "create_time": now,
            "event_type": "im.message.receive_v1",
            "tenant_key": TENANT,
            "app_id": APP_ID,
        },
        "event": {
            "sender": {
                "sender_id": {"open_id": sender, "union_id": "on_u", "user_id": "u1"},
                "sender_type": "user",
                "tenant_key": TENANT,
            },
            "message": {
                "message_id": message_id or f"om_{uuid.uuid4().hex}",
                "root_id": root_id,
                "parent_id": root_id,
                "create_time": now,
                "update_time": now,
                "chat_id": chat_id,
                "thread_id": thread_id,
                "chat_type": chat_type,
                "message_type": message_type,
                "content": json.dumps(content, ensure_ascii=False),
                "mentions": mentions,
                "user_agent": "Mozilla/5.0",
            },
        },
    }


def card_action_event(
    value: dict[str, Any], *, operator: str = "ou_user_1", token: str = ""
) -> dict[str, Any]:
    """A `card.action.trigger` callback (a button click) as Feishu sends it."""
    return {
        "schema": "2.0",
        "header": {
            "event_id": uuid.uuid4().hex,
            "token": token,
            "create_time": str(int(time.time() * 1000)),
            "event_type": "card.action.trigger",
            "tenant_key": TENANT,
            "app_id": APP_ID,
        },
        "event": {
            "operator": {"tenant_key": TENANT, "user_id": "u1", "open_id": operator},
            "token": "c-" + uuid.uuid4().hex,
            "action": {"value": value, "tag": "button"},
            "host": "im_message",
            "context": {"open_message_id": "om_card", "open_chat_id": "oc_group1"},
        },
    }


def encrypt(encrypt_key: str, payload: dict[str, Any]) -> dict[str, str]:
    """`{"encrypt": …}`: AES-256-CBC, key sha256(encrypt_key), random IV first, PKCS#7, base64."""
    plain = json.dumps(payload, ensure_ascii=False).encode()
    pad = AES.block_size - len(plain) % AES.block_size
    iv = os.urandom(AES.block_size)
    key = hashlib.sha256(encrypt_key.encode()).digest()
    cipher = AES.new(key, AES.MODE_CBC, iv).encrypt(plain + bytes([pad]) * pad)
    return {"encrypt": base64.b64encode(iv + cipher).decode()}


def signed_headers(encrypt_key: str, body: bytes, timestamp: str | None = None) -> dict[str, str]:
    """X-Lark-Signature = sha256(timestamp + nonce + encrypt_key + body), hex."""
    timestamp = timestamp or str(int(time.time()))
    nonce = uuid.uuid4().hex[:16]
    signature = hashlib.sha256((timestamp + nonce + encrypt_key).encode() + body).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-Lark-Request-Timestamp": timestamp,
        "X-Lark-Request-Nonce": nonce,
        "X-Lark-Signature": signature,
    }


def drive_event(event_type: str, file_token: str, file_type: str = "docx") -> dict[str, Any]:
    """A `drive.file.*_v1` event (edit_v1, trashed_v1, …) for a subscribed document."""
    return {
        "schema": "2.0",
        "header": {
            "event_id": uuid.uuid4().hex,
            "token": "",
            "create_time": str(int(time.time() * 1000)),
            "event_type": f"drive.file.{event_type}",
            "tenant_key": TENANT,
            "app_id": APP_ID,
        },
        "event": {
            "file_token": file_token,
            "file_type": file_type,
            "operator_id_list": [{"open_id": "ou_editor", "union_id": "on_e", "user_id": "e1"}],
        },
    }
