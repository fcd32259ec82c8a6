"""What every Feishu document kind shares: reading one document's content (docx through the
blocks API as Markdown, uploaded files through the parsing entry), its audience from its
permissions, and the links citations point at."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from adapters.feishu.documents.errors import DocsError

if TYPE_CHECKING:
    from adapters.feishu.documents.api import DocsApi
from adapters.feishu.documents.blocks import to_markdown
from knowledge.errors import LoadError
from knowledge.loaders import KINDS
from knowledge.parsing import parse_bytes
from knowledge.sources import DocumentRef
from knowledge.types import EVERYONE, Audience, Document

__all__ = ["SKIPPED", "Content", "FeishuOptions", "edit_time"]

_FILES = {".pdf", ".docx", ".md", ".markdown", ".txt", ".xlsx", ".csv", ".html"}
SKIPPED = {
    "sheet": "a Feishu sheet (电子表格) is not indexed: download it as .xlsx into a drive folder "
    "source, or copy its text into a doc",
    "bitable": "a Feishu base (多维表格) is not indexed: export it as .xlsx into a drive folder "
    "source",
    "mindnote": "a mind map (思维笔记) has no text the bot reads",
    "slides": "slides (幻灯片) are not indexed: export them as PDF into a drive folder source",
    "doc": "an old-style Feishu doc (旧版文档) cannot be read through the docx API: upgrade it "
    "to a new doc (docx) in Feishu",
    "folder": "a folder is walked, not read",
    "shortcut": "a shortcut: its target is indexed where it lives",
}
_MEMBER_KINDS = {"openid": "user", "openchat": "chat", "opendepartmentid": "department"}
_TENANT_LINKS = {"tenant_readable", "tenant_editable"}
_PUBLIC_LINKS = {"anyone_readable", "anyone_editable"}


class FeishuOptions(BaseModel):
    """The Feishu kinds' own keys in `[[knowledge.sources]]`."""

    model_config = {"extra": "forbid"}

    # `permissions` ("platform": each document's collaborators and link sharing decide) is a
    # key every source has ([[knowledge.sources]] permissions): Content gets it from there.
    site: str = Field(
        default="",
        pattern=r"^([A-Za-z0-9-]+\.)*[A-Za-z0-9-]*$",
        description="the tenant's web domain for citation links, e.g. acme.feishu.cn; "
        "empty = asked from Feishu (tenant:tenant:readonly), else www.feishu.cn",
    )


def skipped(obj_type: str, title: str) -> str:
    """Why a listed object is not read ("" when it is): said in the log, not failed each run."""
    if obj_type == "file":
        suffix = PurePosixPath(title).suffix.lower()
        if suffix not in _FILES:
            return f"{suffix or 'a file without an extension'} files are not read"
        return ""
    return SKIPPED.get(obj_type, "" if obj_type == "docx" else f"a {obj_type} is not read")


def edit_time(value: object) -> datetime | None:
    """Feishu's seconds-since-epoch strings (or numbers) as a datetime."""
    try:
        return datetime.fromtimestamp(int(str(value)), UTC)
    except (TypeError, ValueError):
        return None


@dataclass
class Content:
    """Reads documents and their audiences for one source, with one `DocsApi`."""

    api: DocsApi
    options: FeishuOptions
    open_domain: str  # the Open API origin, e.g. https://open.feishu.cn
    by_platform: bool = False  # the source's `permissions = "platform"`
    _site: str = ""

    async def site(self) -> str:
        """https://<tenant domain>, asked once."""
        if not self._site:
            domain = self.options.site or await self.api.tenant_domain()
            if domain and "." not in domain:
                lark = "larksuite" in self.open_domain
                domain = f"{domain}.{'larksuite.com' if lark else 'feishu.cn'}"
            if not domain:
                domain = "www.larksuite.com" if "larksuite" in self.open_domain else "www.feishu.cn"
            self._site = f"https://{domain}"
        return self._site

    async def audience(self, token: str, doc_type: str) -> Audience | None:
        """The document's own audience when the source says `permissions = "platform"`:
        collaborators (users, chats, departments) and link sharing within the tenant. When the
        permissions cannot be read, nobody (fails closed)."""
        if not self.by_platform:
            return None
        kind = "file" if doc_type == "file" else doc_type
        try:
            members, public = await asyncio.gather(
                self.api.members(token, kind), self.api.public(token, kind)
            )
        except DocsError:
            return Audience()
        principals = frozenset(
            f"feishu:{_MEMBER_KINDS[m['member_type']]}:{m['member_id']}"
            for m in members
            if m.get("member_type") in _MEMBER_KINDS and m.get("member_id")
        )
        sharing = str(public.get("link_share_entity") or "")
        if sharing in _PUBLIC_LINKS:
            return EVERYONE
        key = await self.api.tenant_key() if sharing in _TENANT_LINKS else ""
        return Audience(tenant=f"feishu:{key}" if key else "", principals=principals)

    async def read(self, ref: DocumentRef) -> Document:
        """One listed document's content; `LoadError` with the reason (the fix in words)."""
        obj_type, token = ref.meta.get("obj_type", ""), ref.meta.get("obj_token", ref.uri)
        if obj_type in SKIPPED:
            raise LoadError(f"skipped: {SKIPPED[obj_type]}")
        try:
            if obj_type == "docx":
                text = to_markdown(await self.api.blocks(token))
                return Document(
                    uri=ref.uri,
                    title=ref.title,
                    text=text,
                    kind="markdown",
                    modified_at=ref.modified_at,
                    url=ref.url,
                )
            if obj_type == "file":
                return await self._file(ref, token)
        except DocsError as error:
            if error.not_found:
                raise LoadError(
                    f"{error} — it was listed moments ago; the next refresh removes it"
                ) from error
            raise LoadError(str(error)) from error
        raise LoadError(f"skipped: a Feishu {obj_type or 'object'} is not a kind the bot reads")

    async def _file(self, ref: DocumentRef, token: str) -> Document:
        suffix = PurePosixPath(ref.title).suffix.lower()
        if suffix not in _FILES:
            raise LoadError(
                f"skipped: {suffix or 'a file without an extension'} is not read "
                f"(readable: {', '.join(sorted(_FILES))})"
            )
        data = await self.api.download(token)
        document = await parse_bytes(
            data,
            KINDS[suffix],
            uri=ref.uri,
            name=PurePosixPath(ref.title).stem,
            suffix=suffix,
            modified_at=ref.modified_at,
            url=ref.url,
        )
        return document


def versioned(edit: str, audience: Audience | None) -> str:
    """A listing version that also changes when the document's audience does."""
    if audience is None or not edit:
        return edit
    people = ",".join(sorted(audience.principals))
    digest = hashlib.sha1(f"{audience.everyone}|{audience.tenant}|{people}".encode()).hexdigest()
    return f"{edit}|a{digest[:10]}"
