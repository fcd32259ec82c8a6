"""Feishu images and files for the attachment port: each one's bytes through lark-oapi's
`im.v1.message_resource` (GET im/v1/messages/:message_id/resources/:file_key?type=image|file),
with the platform's refusals said in words (the scope to grant, the bot to add)."""

from __future__ import annotations

from adapters.feishu.client import FeishuApi, FeishuApiError
from adapters.feishu.convert import Resource
from engine.messages import DownloadError, Fetch

# The codes this call answers with, as a person can act on them.
REFUSALS = {
    234003: "the file is not part of this message",
    234004: "the bot is not in this chat: add it to the group",
    234006: "the file is larger than Feishu lets an app download (100 MB)",
    234037: "the file is larger than Feishu lets an app download (100 MB)",
    234043: "files in merged-forward or card messages cannot be downloaded: send the file itself",
    99991672: "the app lacks the scope im:resource (or im:message): grant it in the developer "
    "console and publish a new version",
    99991679: "the app lacks the scope im:resource (or im:message): grant it in the developer "
    "console and publish a new version",
    99991400: "Feishu is rate limiting downloads: try again in a moment",
}


def resource_fetch(api: FeishuApi) -> Resource:
    """A `convert.Resource`: the download handle of one message image or file."""

    def resource(message_id: str, file_key: str, kind: str) -> Fetch:
        async def fetch(limit: int) -> bytes:
            try:
                data = await api.resource(message_id, file_key, kind)
            except FeishuApiError as error:
                known = REFUSALS.get(error.code or 0)
                raise DownloadError(known or f"Feishu refused: {error}") from error
            if len(data) > limit:
                raise DownloadError(f"larger than {limit} bytes")
            return data

        return fetch

    return resource
