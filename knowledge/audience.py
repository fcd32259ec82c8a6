"""Who may read a document, and who is asking: the rules that keep an answer from citing a
document its reader may not open.

An `Audience` (knowledge.types) is everyone, everyone of one tenant, or a set of principals
("platform:type:id": "feishu:chat:oc_…", "feishu:user:ou_…", "feishu:department:od_…", and
"web:*" for the web chat and the terminal). A `Reader` is the person asking, as the core knows
them from the message. `admits` decides:

- in a group chat, only documents the whole chat may open: everyone, the chat's tenant, or the
  chat itself is a principal (a document shared with some members only is not cited there);
- in a direct message, documents the asker may open: everyone, the tenant, the asker (or the
  direct chat) as a principal, or one of the asker's departments when the platform told us
  them (unknown departments admit nothing: department-only documents fail closed);
- in the web chat and the terminal (tenant "local": no platform identity), only documents for
  everyone or marked "web:*".

An empty audience admits nobody: unknown or unreadable permissions fail closed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from knowledge.types import EVERYONE, Audience

__all__ = [
    "EVERYONE",
    "LOCAL_TENANT",
    "NOBODY",
    "WEB",
    "Reader",
    "admits",
    "audience_key",
    "describe",
    "dump",
    "load",
    "parse",
]

NOBODY = Audience()
WEB = "web:*"  # the principal of the web chat and the terminal
LOCAL_TENANT = "local"  # the tenant of messages with no platform identity (web chat, terminal)
_KINDS = ("chat", "user", "department")


@dataclass(frozen=True, slots=True)
class Reader:
    """Who is asking: built by the core from the inbound message, for one retrieval."""

    platform: str
    tenant: str
    chat_id: str
    chat_type: Literal["direct", "group"]
    user_id: str = ""
    departments: frozenset[str] | None = None  # the asker's department ids; None = unknown

    @property
    def local(self) -> bool:
        """The web chat or the terminal: nobody the platform could vouch for."""
        return self.tenant == LOCAL_TENANT or not self.platform

    @property
    def principals(self) -> frozenset[str]:
        """The principals this reader stands for: the chat in a group; the asker (their chat,
        their departments when known) in a direct message; "web:*" in the web chat."""
        if self.local:
            return frozenset({WEB})
        own = {f"{self.platform}:chat:{self.chat_id}"} if self.chat_id else set()
        if self.chat_type == "direct":
            if self.user_id:
                own.add(f"{self.platform}:user:{self.user_id}")
            own.update(f"{self.platform}:department:{d}" for d in self.departments or ())
        return frozenset(own)


def admits(audience: Audience, reader: Reader) -> bool:
    """Whether `reader` may be shown a passage of a document with this audience."""
    if audience.everyone:
        return True
    if (
        not reader.local
        and reader.tenant
        and audience.tenant == f"{reader.platform}:{reader.tenant}"
    ):
        return True
    return not audience.principals.isdisjoint(reader.principals)


def parse(entries: str | Iterable[str]) -> Audience:
    """An audience from `[[knowledge.sources]]` entries: "everyone"; "PLATFORM:tenant:KEY"
    (everyone of a tenant); "PLATFORM:chat|user|department:ID"; "PLATFORM:CHAT_ID" (a chat,
    as in chat_collections); "web:*" (the web chat and the terminal). Raises ValueError with
    the accepted forms."""
    if isinstance(entries, str):
        entries = [entries]
    everyone, tenants, principals = False, set[str](), set[str]()
    for raw in entries:
        entry = raw.strip()
        parts = entry.split(":")
        if entry == "everyone":
            everyone = True
        elif entry == WEB:
            principals.add(WEB)
        elif len(parts) == 3 and all(parts) and parts[1] == "tenant":
            tenants.add(f"{parts[0]}:{parts[2]}")
        elif len(parts) == 3 and all(parts) and parts[1] in _KINDS:
            principals.add(entry)
        elif len(parts) == 2 and all(parts):
            principals.add(f"{parts[0]}:chat:{parts[1]}")
        else:
            raise ValueError(
                f"audience entry {raw!r} is not understood: use 'everyone', 'web:*', "
                "'feishu:tenant:TENANT_KEY', 'feishu:chat:oc_…', 'feishu:user:ou_…', "
                "'feishu:department:od_…' or 'slack:C0123' (a chat) / 受众写法见 docs/knowledge.md"
            )
    if len(tenants) > 1:
        raise ValueError(
            f"audience names {len(tenants)} tenants ({', '.join(sorted(tenants))}): a source "
            "may be open to one whole tenant; list the chats of the others instead"
        )
    if everyone:
        return EVERYONE
    return Audience(tenant=next(iter(tenants), ""), principals=frozenset(principals))


def dump(audience: Audience) -> dict[str, Any]:
    """The catalog's JSON form."""
    return {
        "everyone": audience.everyone,
        "tenant": audience.tenant,
        "principals": sorted(audience.principals),
    }


def load(data: Any) -> Audience:
    """The catalog's JSON form back; anything unreadable is nobody (fail closed)."""
    if not isinstance(data, dict):
        return NOBODY
    principals = data.get("principals")
    if not isinstance(principals, list) or not all(isinstance(p, str) for p in principals):
        return NOBODY
    return Audience(
        everyone=data.get("everyone") is True,
        tenant=str(data.get("tenant") or ""),
        principals=frozenset(principals),
    )


def audience_key(audience: Audience) -> str:
    """A short stable name of one audience ("doc:" + hash), stored on each chunk so that
    retrieval filters by the few audiences a reader is admitted to."""
    text = json.dumps(dump(audience), sort_keys=True, separators=(",", ":"))
    return "doc:" + hashlib.sha1(text.encode()).hexdigest()[:16]


def describe(audience: Audience | None) -> str:
    """In words, for the console: "全员 / everyone", "群 oc_x / chat oc_x", …"""
    if audience is None:
        return "同来源 / as the source"
    if audience.everyone:
        return "全员 / everyone"
    words = []
    if audience.tenant:
        words.append(f"租户 {audience.tenant.split(':', 1)[-1]} 全员 / everyone in tenant")
    names = {"chat": "群 {id} / chat {id}", "user": "用户 {id} / user {id}"}
    names["department"] = "部门 {id} / department {id}"
    for principal in sorted(audience.principals):
        if principal == WEB:
            words.append("网页聊天与终端 / web chat and terminal")
            continue
        _, kind, ident = [*principal.split(":", 2), "", ""][:3]
        words.append(names.get(kind, "{id}").format(id=ident))
    return "; ".join(words) or "无人 / nobody (permissions unknown)"
