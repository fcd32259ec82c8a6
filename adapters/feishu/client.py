"""The Open API calls the adapter makes, through lark-oapi's async request types.

lark-oapi fetches the tenant token with blocking `requests` when its cache is cold, inside the
async calls; every call here warms the token in a thread first so the service loop never blocks.
The SDK has no generated call for the bot's own info (`/open-apis/bot/v3/info`): that one goes
through `lark.Client.arequest` with a raw `BaseRequest`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import lark_oapi as lark
from lark_oapi.api.application.v6 import ListScopeRequest
from lark_oapi.api.cardkit.v1 import Card as CardkitCard
from lark_oapi.api.cardkit.v1 import (
    ContentCardElementRequest,
    ContentCardElementRequestBody,
    CreateCardRequest,
    CreateCardRequestBody,
    SettingsCardRequest,
    SettingsCardRequestBody,
    UpdateCardRequest,
    UpdateCardRequestBody,
)
from lark_oapi.api.im.v1 import (
    CreateMessageRequest,
    CreateMessageRequestBody,
    GetMessageResourceRequest,
    PatchMessageRequest,
    PatchMessageRequestBody,
    ReplyMessageRequest,
    ReplyMessageRequestBody,
)
from lark_oapi.core.enum import AccessTokenType, HttpMethod
from lark_oapi.core.model import BaseRequest
from lark_oapi.core.token.manager import TokenManager

log = logging.getLogger(__name__)
T = TypeVar("T")


class FeishuApiError(Exception):
    """An Open API call failed (transport error or a non-zero `code`)."""

    def __init__(self, call: str, code: int | None, msg: str, log_id: str = "") -> None:
        self.call, self.code, self.msg, self.log_id = call, code, msg, log_id
        where = f", log_id {log_id}" if log_id else ""
        super().__init__(f"{call} failed: code {code}: {msg}{where}")


@dataclass(frozen=True, slots=True)
class BotInfo:
    open_id: str
    name: str
    activate_status: int | None = None


class FeishuApi:
    """One app's Open API client (a lark.Client pointed at `domain`)."""

    def __init__(self, app_id: str, app_secret: str, domain: str, timeout: float) -> None:
        self.app_id = app_id
        self.client = (
            lark.Client.builder()
            .app_id(app_id)
            .app_secret(app_secret)
            .domain(domain)
            .timeout(timeout)
            .log_level(lark.LogLevel.WARNING)
            .build()
        )
        self._token_lock = asyncio.Lock()

    async def tenant_token(self) -> str:
        """The tenant access token; fetched (blocking `requests`) in a thread when not cached."""
        cached = TokenManager.cache.get(f"self_tenant_token:{self.app_id}")
        if cached:
            return str(cached)
        async with self._token_lock:
            config = self.client.config
            try:
                return await asyncio.to_thread(TokenManager.get_self_tenant_token, config)
            except Exception as error:
                code = getattr(error, "code", None)
                raise FeishuApiError("tenant_access_token", code, str(error)) from error

    async def bot_info(self) -> BotInfo:
        await self.tenant_token()
        request = (
            BaseRequest.builder()
            .http_method(HttpMethod.GET)
            .uri("/open-apis/bot/v3/info")
            .token_types({AccessTokenType.TENANT})
            .build()
        )
        body = await self._raw("bot/v3/info", request)
        bot = body.get("bot") or (body.get("data") or {}).get("bot") or {}
        if not bot.get("open_id"):
            raise FeishuApiError("bot/v3/info", body.get("code"), "no bot in the answer")
        return BotInfo(
            open_id=str(bot["open_id"]),
            name=str(bot.get("app_name") or ""),
            activate_status=bot.get("activate_status"),
        )

    async def granted_scopes(self) -> set[str]:
        """Scopes the tenant has granted the app (application/v6/scopes)."""
        await self.tenant_token()
        call = "application/v6/scopes"
        request = ListScopeRequest.builder().build()
        data = _data(call, await _sdk(call, self.client.application.v6.scope.alist(request)))
        return {s.scope_name for s in (data.scopes or []) if s.grant_status == 1 and s.scope_name}

    async def reply(
        self, message_id: str, msg_type: str, content: dict[str, Any], *, in_thread: bool, uuid: str
    ) -> str:
        """Reply to `message_id`; returns the new message's id."""
        await self.tenant_token()
        body = (
            ReplyMessageRequestBody.builder()
            .msg_type(msg_type)
            .content(json.dumps(content, ensure_ascii=False))
            .reply_in_thread(in_thread)
            .uuid(uuid)
            .build()
        )
        request = ReplyMessageRequest.builder().message_id(message_id).request_body(body).build()
        call = "im/v1/messages reply"
        response = await _sdk(call, self.client.im.v1.message.areply(request))
        return str(_data(call, response).message_id)

    async def send(self, chat_id: str, msg_type: str, content: dict[str, Any], *, uuid: str) -> str:
        """Post a new message in `chat_id`; returns its id."""
        await self.tenant_token()
        body = (
            CreateMessageRequestBody.builder()
            .receive_id(chat_id)
            .msg_type(msg_type)
            .content(json.dumps(content, ensure_ascii=False))
            .uuid(uuid)
            .build()
        )
        request = (
            CreateMessageRequest.builder().receive_id_type("chat_id").request_body(body).build()
        )
        call = "im/v1/messages create"
        response = await _sdk(call, self.client.im.v1.message.acreate(request))
        return str(_data(call, response).message_id)

    async def patch_card(self, message_id: str, card: dict[str, Any]) -> None:
        await self.tenant_token()
        body = PatchMessageRequestBody.builder().content(json.dumps(card, ensure_ascii=False))
        request = (
            PatchMessageRequest.builder().message_id(message_id).request_body(body.build()).build()
        )
        call = "im/v1/messages patch"
        _check(call, await _sdk(call, self.client.im.v1.message.apatch(request)))

    async def create_card(self, card: dict[str, Any]) -> str:
        """A CardKit card entity; returns its card_id."""
        await self.tenant_token()
        body = (
            CreateCardRequestBody.builder()
            .type("card_json")
            .data(json.dumps(card, ensure_ascii=False))
            .build()
        )
        call = "cardkit/v1/cards create"
        request = CreateCardRequest.builder().request_body(body).build()
        response = await _sdk(call, self.client.cardkit.v1.card.acreate(request))
        return str(_data(call, response).card_id)

    async def stream_text(
        self, card_id: str, element_id: str, text: str, sequence: int, uuid: str
    ) -> None:
        """Replace a streaming card element's text (CardKit types out the difference)."""
        await self.tenant_token()
        body = (
            ContentCardElementRequestBody.builder()
            .content(text)
            .sequence(sequence)
            .uuid(uuid)
            .build()
        )
        request = (
            ContentCardElementRequest.builder()
            .card_id(card_id)
            .element_id(element_id)
            .request_body(body)
            .build()
        )
        call = "cardkit element content"
        _check(call, await _sdk(call, self.client.cardkit.v1.card_element.acontent(request)))

    async def card_settings(
        self, card_id: str, settings: dict[str, Any], sequence: int, uuid: str
    ) -> None:
        await self.tenant_token()
        body = (
            SettingsCardRequestBody.builder()
            .settings(json.dumps(settings))
            .sequence(sequence)
            .uuid(uuid)
            .build()
        )
        request = SettingsCardRequest.builder().card_id(card_id).request_body(body).build()
        call = "cardkit settings"
        _check(call, await _sdk(call, self.client.cardkit.v1.card.asettings(request)))

    async def update_card(
        self, card_id: str, card: dict[str, Any], sequence: int, uuid: str
    ) -> None:
        await self.tenant_token()
        entity = CardkitCard.builder().type("card_json").data(json.dumps(card, ensure_ascii=False))
        body = (
            UpdateCardRequestBody.builder()
            .card(entity.build())
            .sequence(sequence)
            .uuid(uuid)
            .build()
        )
        request = UpdateCardRequest.builder().card_id(card_id).request_body(body).build()
        call = "cardkit update"
        _check(call, await _sdk(call, self.client.cardkit.v1.card.aupdate(request)))

    async def resource(self, message_id: str, file_key: str, kind: str) -> bytes:
        """An image or file of a message (im/v1/messages/:id/resources/:key?type=image|file;
        scope im:message or im:resource). The SDK reads the whole body (≤ 100 MB on Feishu)."""
        await self.tenant_token()
        request = (
            GetMessageResourceRequest.builder()
            .message_id(message_id)
            .file_key(file_key)
            .type(kind)
            .build()
        )
        call = "im/v1/messages resources"
        response = await _sdk(call, self.client.im.v1.message_resource.aget(request))
        raw = response.raw
        if response.code is None and raw is not None:
            # the SDK parses an error body only under a "Content-Type" key it may not find
            try:
                body = json.loads(raw.content) if raw.content else {}
            except ValueError:
                body = {}
            code = body.get("code") if isinstance(body, dict) else None
            message = str(body.get("msg", "")) if isinstance(body, dict) else ""
            raise FeishuApiError(call, code, message or f"HTTP {raw.status_code}")
        _check(call, response)
        return response.file.read() if response.file is not None else b""

    async def _raw(self, call: str, request: BaseRequest) -> dict[str, Any]:
        response = await _sdk(call, self.client.arequest(request))
        raw = response.raw
        try:
            body: dict[str, Any] = json.loads(raw.content) if raw and raw.content else {}
        except ValueError as error:
            raise FeishuApiError(call, None, f"HTTP {raw.status_code}: not JSON") from error
        if body.get("code", 0) != 0:
            raise FeishuApiError(call, body.get("code"), str(body.get("msg", "")))
        return body


async def _sdk(call: str, pending: Awaitable[T]) -> T:
    """Await one SDK call; transport errors and unparsable answers become FeishuApiError."""
    try:
        return await pending
    except FeishuApiError:
        raise
    except Exception as error:
        raise FeishuApiError(call, None, f"{type(error).__name__}: {error}") from error


def _check(call: str, response: Any) -> None:
    if not response.success():
        raise FeishuApiError(call, response.code, str(response.msg), response.get_log_id() or "")


def _data(call: str, response: Any) -> Any:
    _check(call, response)
    if response.data is None:
        raise FeishuApiError(call, response.code, "empty data")
    return response.data
