"""The Feishu document calls' errors, with the fix in words (no SDK import: light to load)."""

from __future__ import annotations

__all__ = ["DocsError", "RateLimitedError", "explain"]

RATE_LIMITED = 99991400
MISSING_SCOPE = (99991672, 99991679)
NO_ACCESS = (131006, 1770032, 1061004, 1063002, 1061003, 403)
NOT_FOUND = (131005, 1770002, 1061007, 1061044, 404)
_SCOPES = {
    "wiki": "wiki:wiki:readonly",
    "docx": "docx:document:readonly",
    "drive": "drive:drive:readonly",
    "perm": "docs:permission.member:retrieve",
    "tenant": "tenant:tenant:readonly",
}


class DocsError(Exception):
    """A document call failed; the message says what to do."""

    def __init__(self, call: str, code: int | None, message: str) -> None:
        self.call, self.code = call, code
        super().__init__(message)

    @property
    def not_found(self) -> bool:
        return self.code in NOT_FOUND


class RateLimitedError(DocsError):
    """HTTP 429 or code 99991400: retried with backoff."""


def explain(family: str, call: str, code: int | None, msg: str) -> str:
    """A failed call's message with the fix in words."""
    if code in MISSING_SCOPE:
        scope = _SCOPES[family]
        return (
            f"scope {scope} missing ({call}: code {code}): add it to the app in the Feishu "
            "developer console (权限管理 / Permissions & Scopes) and publish a new version"
        )
    if code in NO_ACCESS and family == "wiki":
        return (
            f"the app is not a member of this wiki space ({call}: code {code}): add it as a "
            "collaborator (知识库设置 → 成员设置 → 添加文档应用 / Wiki settings → Members → Add app)"
        )
    if code in NO_ACCESS:
        return (
            f"the app may not open this document ({call}: code {code}): share it with the app "
            "(… → 添加文档应用 / … → Add document app) or with a group the app is in"
        )
    if code in NOT_FOUND:
        return f"not found in Feishu ({call}: code {code}): it was deleted or moved"
    return f"{call} failed: code {code}: {msg}"
