"""The DingTalk OpenAPI calls the SDK lacks or wraps unusably, over async httpx.

dingtalk-stream 0.24.3 does not wrap the robot send APIs at all, and its token and card helpers
use blocking `requests` and only log failures, so a card that failed could never fall back to
markdown. Request bodies follow the SDK's own (card_replier.py) and DingTalk's documentation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any

import httpx

log = logging.getLogger(__name__)

TOKEN_PATH = "/v1.0/oauth2/accessToken"
GROUP_SEND_PATH = "/v1.0/robot/groupMessages/send"
DIRECT_SEND_PATH = "/v1.0/robot/oToMessages/batchSend"
CARD_DELIVER_PATH = "/v1.0/card/instances/createAndDeliver"
CARD_PATH = "/v1.0/card/instances"
CARD_STREAM_PATH = "/v1.0/card/streaming"
FILE_DOWNLOAD_PATH = "/v1.0/robot/messageFiles/download"
_REFRESH_EARLY = 300.0  # seconds before expiry a token is replaced (the SDK uses the same 5 min)


class DingTalkApiError(Exception):
    """An OpenAPI call failed; the message carries DingTalk's code and explanation."""

    def __init__(self, path: str, status: int, body: str) -> None:
        self.path, self.status, self.body = path, status, body
        super().__init__(f"{path}: HTTP {status}: {body[:300]}")


class OpenApi:
    """Access token (cached, refreshed early), robot sends, AI card create/stream/finish."""

    def __init__(
        self,
        endpoint: str,
        client_id: str,
        client_secret: str,
        robot_code: str,
        *,
        timeout: float = 10.0,
    ) -> None:
        self._client_id, self._secret, self.robot_code = client_id, client_secret, robot_code
        self._http = httpx.AsyncClient(base_url=endpoint, timeout=timeout, trust_env=False)
        self._token = ""
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        await self._http.aclose()

    async def access_token(self, *, force: bool = False) -> str:
        """A valid app access token; one request refreshes it for all callers."""
        async with self._lock:
            if force or not self._token or time.monotonic() >= self._expires:
                response = await self._http.post(
                    TOKEN_PATH, json={"appKey": self._client_id, "appSecret": self._secret}
                )
                if response.status_code != 200:
                    raise DingTalkApiError(TOKEN_PATH, response.status_code, response.text)
                body = response.json()
                lifetime = float(body.get("expireIn", 7200))
                self._token = str(body["accessToken"])
                self._expires = time.monotonic() + max(lifetime - _REFRESH_EARLY, lifetime / 2)
            return self._token

    async def _call(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        for attempt in (1, 2):
            token = await self.access_token(force=attempt == 2)
            response = await self._http.request(
                method, path, json=body, headers={"x-acs-dingtalk-access-token": token}
            )
            if response.status_code == 401 and attempt == 1:
                continue  # token revoked or expired early: fetch a new one once
            if response.status_code >= 400:
                raise DingTalkApiError(path, response.status_code, response.text)
            return response.json() if response.content else {}
        raise AssertionError("unreachable")

    async def file_url(self, download_code: str) -> str:
        """The temporary download URL of a file or picture the robot received."""
        robot = self.robot_code or self._client_id
        body = {"downloadCode": download_code, "robotCode": robot}
        answer = await self._call("POST", FILE_DOWNLOAD_PATH, body)
        url = answer.get("downloadUrl")
        if not isinstance(url, str) or not url:
            raise DingTalkApiError(FILE_DOWNLOAD_PATH, 200, "no downloadUrl in the answer")
        return url

    @property
    def http(self) -> httpx.AsyncClient:
        """The client the calls go through (a file's temporary URL is fetched with it too)."""
        return self._http

    async def send_markdown(self, *, group: bool, to: str, title: str, text: str) -> None:
        """A markdown message from the robot: `to` is an open conversation id or a staff id."""
        param = json.dumps({"title": title, "text": text}, ensure_ascii=False)
        body: dict[str, Any] = {
            "robotCode": self.robot_code,
            "msgKey": "sampleMarkdown",
            "msgParam": param,
        }
        if group:
            await self._call("POST", GROUP_SEND_PATH, {**body, "openConversationId": to})
        else:
            await self._call("POST", DIRECT_SEND_PATH, {**body, "userIds": [to]})

    async def create_card(
        self,
        *,
        template_id: str,
        out_track_id: str,
        data: dict[str, str],
        group: bool,
        conversation_id: str,
        staff_id: str,
        nick: str,
    ) -> None:
        """Create an AI card and deliver it to the conversation (one call), @mentioning the asker."""
        body: dict[str, Any] = {
            "cardTemplateId": template_id,
            "outTrackId": out_track_id,
            "cardData": {"cardParamMap": data},
            "callbackType": "STREAM",
            "imGroupOpenSpaceModel": {"supportForward": True},
            "imRobotOpenSpaceModel": {"supportForward": True},
            "userIdType": 1,
        }
        if group:
            body["openSpaceId"] = f"dtv1.card//IM_GROUP.{conversation_id}"
            body["imGroupOpenDeliverModel"] = {
                "robotCode": self.robot_code,
                "atUserIds": {staff_id: nick},
            }
        else:
            body["openSpaceId"] = f"dtv1.card//IM_ROBOT.{staff_id}"
            body["imRobotOpenDeliverModel"] = {
                "spaceType": "IM_ROBOT",
                "robotCode": self.robot_code,
            }
        result = await self._call("POST", CARD_DELIVER_PATH, body)
        delivered = (result.get("result") or {}).get("deliverResults") or []
        failed = [d for d in delivered if not d.get("success", True)]
        if result.get("success") is False or failed:
            raise DingTalkApiError(CARD_DELIVER_PATH, 200, json.dumps(result, ensure_ascii=False))

    async def stream_card(
        self, out_track_id: str, key: str, content: str, *, final: bool = False
    ) -> None:
        """Replace the card's streamed variable with the whole text so far."""
        body = {
            "outTrackId": out_track_id,
            "guid": uuid.uuid4().hex,
            "key": key,
            "content": content,
            "isFull": True,
            "isFinalize": final,
            "isError": False,
        }
        await self._call("PUT", CARD_STREAM_PATH, body)

    async def update_card(self, out_track_id: str, data: dict[str, str]) -> None:
        """Set card variables (flowStatus and the rest) at once."""
        body = {
            "outTrackId": out_track_id,
            "cardData": {"cardParamMap": data},
            "cardUpdateOptions": {"updateCardDataByKey": True},
        }
        await self._call("PUT", CARD_PATH, body)
