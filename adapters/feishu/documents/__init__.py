"""Feishu / Lark documents as knowledge sources: the `feishu_wiki`, `feishu_drive` and
`feishu_doc` kinds, on the `[feishu]` app credentials (with or without the chat adapter).

`feishu_kinds(settings, watch)` makes the three `SourceKind` records that `bot.app.source_kinds`
registers; `watch` (optional) learns every complete listing so that change events find their
document (`adapters.feishu.documents.watch`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlsplit

from pydantic import BaseModel

from adapters.feishu.config import FeishuSettings
from adapters.feishu.documents.content import Content, FeishuOptions
from adapters.feishu.documents.readers import DocReader, DriveReader, Listed, WikiReader
from adapters.feishu.documents.watch import Watch
from knowledge.config import SourceSettings
from knowledge.sources import SourceKind, SourceReader

__all__ = ["FeishuOptions", "Watch", "feishu_kinds", "parse_doc", "parse_folder", "parse_wiki"]

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{6,64}$")


def _path(location: str) -> list[str]:
    text = location.strip()
    if "://" not in text:
        return [part for part in text.split("/") if part]
    return [part for part in urlsplit(text).path.split("/") if part]


def _bad(kind: str, location: str, example: str) -> ValueError:
    return ValueError(f"{kind}: {location!r} is not a link or token it reads; paste e.g. {example}")


def parse_wiki(location: str) -> str:
    """A wiki link, space id or node token -> a space id (digits) or a node token."""
    parts = _path(location)
    if len(parts) >= 3 and parts[0] == "wiki" and parts[1] in ("settings", "space"):
        return parts[2]
    if len(parts) == 2 and parts[0] == "wiki" and _TOKEN.match(parts[1]):
        return parts[1]
    if len(parts) == 1 and _TOKEN.match(parts[0]):
        return parts[0]
    raise _bad(
        "feishu_wiki", location, "https://acme.feishu.cn/wiki/wikcnA1b2C3 or 7034502641455497244"
    )


def parse_folder(location: str) -> str:
    """A drive folder link or token -> the folder token."""
    parts = _path(location)
    if len(parts) >= 3 and parts[:2] == ["drive", "folder"]:
        return parts[2]
    if len(parts) == 1 and _TOKEN.match(parts[0]):
        return parts[0]
    raise _bad("feishu_drive", location, "https://acme.feishu.cn/drive/folder/fldcnA1b2C3")


def parse_doc(location: str) -> str:
    """A doc link (docx or wiki) or a docx token -> docx/TOKEN or wiki/TOKEN."""
    parts = _path(location)
    if len(parts) == 2 and parts[0] in ("docx", "wiki") and _TOKEN.match(parts[1]):
        return f"{parts[0]}/{parts[1]}"
    if len(parts) == 1 and _TOKEN.match(parts[0]):
        return f"docx/{parts[0]}"
    if parts[:1] in (["file"], ["sheets"], ["base"]):
        raise ValueError(
            f"feishu_doc reads docs (docx and wiki pages); for {parts[0]} links use a "
            "feishu_drive source on their folder"
        )
    raise _bad("feishu_doc", location, "https://acme.feishu.cn/docx/doxcnA1b2C3")


def feishu_kinds(settings: FeishuSettings, watch: Watch | None = None) -> list[SourceKind]:
    """The Feishu document kinds, reading with the `[feishu]` app's credentials."""

    def content(options: BaseModel, permissions: str) -> Content:
        if not settings.app_id or settings.app_secret is None:
            raise ValueError(
                "Feishu document sources need the app's credentials: set [feishu] app_id and "
                "TEAMBOT_FEISHU__APP_SECRET (the chat adapter itself may stay disabled)"
            )
        from adapters.feishu.client import FeishuApi  # lark-oapi: loaded when a source is read
        from adapters.feishu.documents.api import DocsApi

        secret = settings.app_secret.get_secret_value()
        api = FeishuApi(settings.app_id, secret, settings.domain, settings.request_timeout)
        assert isinstance(options, FeishuOptions)
        return Content(DocsApi(api), options, settings.domain, permissions == "platform")

    def listed(source: SourceSettings) -> Listed | None:
        return None if watch is None else (lambda refs: watch.listed(source.name, refs))

    def build(
        reader: type[WikiReader | DriveReader | DocReader], parse: Callable[[str], str]
    ) -> Callable[[SourceSettings, BaseModel], SourceReader]:
        def make(source: SourceSettings, options: BaseModel) -> SourceReader:
            return reader(
                content(options, source.permissions), parse(source.location), listed(source)
            )

        return make

    return [
        SourceKind(
            name="feishu_wiki",
            label="飞书知识库 / Feishu wiki",
            location_help="a wiki space id, or a wiki page link for its subtree, e.g. "
            "https://acme.feishu.cn/wiki/wikcnA1b2C3",
            build=build(WikiReader, parse_wiki),
            options=FeishuOptions,
            parse_location=parse_wiki,
        ),
        SourceKind(
            name="feishu_drive",
            label="飞书云空间文件夹 / Feishu drive folder",
            location_help="a drive folder link, e.g. https://acme.feishu.cn/drive/folder/fldcnA1b2",
            build=build(DriveReader, parse_folder),
            options=FeishuOptions,
            parse_location=parse_folder,
        ),
        SourceKind(
            name="feishu_doc",
            label="飞书文档 / Feishu doc",
            location_help="one doc link, e.g. https://acme.feishu.cn/docx/doxcnA1b2C3",
            build=build(DocReader, parse_doc),
            options=FeishuOptions,
            parse_location=parse_doc,
        ),
    ]
