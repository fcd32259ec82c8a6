"""The document side of the fake Feishu Open API: wiki v2 spaces and nodes (paging by
`page_token`), docx v1 documents and blocks, drive v1 folders, downloads, permission members
and link sharing, file subscriptions and the tenant query — real paths and payloads.

`FakeFeishu.docs` holds one `Docs`; tests add pages (`page`), edit and delete them, share them
(`share`), make a page vanish when its content is read (`vanishing`), and count calls through
the fake's own call log. Rate-limit answers and missing scopes come from `FakeFeishu.fail`.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

PAGE = 50  # the API's page_size cap for node listings


def blocks_of(document_id: str, title: str, text: str) -> list[dict[str, Any]]:
    """docx blocks for simple Markdown: '# ' .. '### ' headings, '- ' bullets, paragraphs."""

    def run(content: str) -> dict[str, Any]:
        return {"elements": [{"text_run": {"content": content, "text_element_style": {}}}]}

    blocks: list[dict[str, Any]] = []
    for n, line in enumerate(x for x in text.splitlines() if x.strip()):
        block_id = f"{document_id}_b{n}"
        level = len(line) - len(line.lstrip("#"))
        if 1 <= level <= 9 and line[level : level + 1] == " ":
            kind, key, content = 2 + level, f"heading{level}", line[level + 1 :]
        elif line.startswith("- "):
            kind, key, content = 12, "bullet", line[2:]
        else:
            kind, key, content = 2, "text", line
        blocks.append(
            {"block_id": block_id, "parent_id": document_id, "block_type": kind, key: run(content)}
        )
    page = {
        "block_id": document_id,
        "parent_id": "",
        "block_type": 1,
        "page": run(title),
        "children": [b["block_id"] for b in blocks],
    }
    return [page, *blocks]


@dataclass
class Node:
    space_id: str
    node_token: str
    obj_token: str
    obj_type: str
    title: str
    parent: str
    edited: int
    text: str = ""
    data: bytes = b""

    def payload(self, has_child: bool) -> dict[str, Any]:
        return {
            "space_id": self.space_id,
            "node_token": self.node_token,
            "obj_token": self.obj_token,
            "obj_type": self.obj_type,
            "parent_node_token": self.parent,
            "node_type": "origin",
            "has_child": has_child,
            "title": self.title,
            "obj_create_time": str(self.edited),
            "obj_edit_time": str(self.edited),
            "node_create_time": str(self.edited),
            "owner": "ou_owner",
        }


@dataclass
class Docs:
    """Wiki spaces, drive folders and their documents."""

    tenant_key: str = "tenant_fake"
    domain: str = "acme"
    nodes: dict[str, Node] = field(default_factory=dict)  # node token -> node
    folders: dict[str, list[str]] = field(default_factory=dict)  # folder -> node tokens
    members: dict[str, list[dict[str, str]]] = field(default_factory=dict)  # obj token ->
    sharing: dict[str, str] = field(default_factory=dict)  # obj token -> link_share_entity
    vanishing: set[str] = field(default_factory=set)  # obj tokens deleted when read
    subscribed: set[str] = field(default_factory=set)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _clock: int = field(default_factory=lambda: int(time.time()) - 10_000)

    # -- test side ---------------------------------------------------------------------------

    def page(
        self,
        space: str,
        title: str,
        text: str,
        *,
        parent: str = "",
        obj_type: str = "docx",
        folder: str = "",
        data: bytes = b"",
    ) -> Node:
        """A wiki node (or, with `folder`, a drive file) holding `text` as docx blocks."""
        with self._lock:
            n = next(self._ids)
            self._clock += 1
            node = Node(
                space,
                f"wikcn{n:06d}",
                f"doxcn{n:06d}",
                obj_type,
                title,
                parent,
                self._clock,
                text,
                data,
            )
            self.nodes[node.node_token] = node
            if folder:
                self.folders.setdefault(folder, []).append(node.node_token)
            return node

    def edit(self, node: Node, text: str) -> None:
        with self._lock:
            self._clock += 1
            node.text, node.edited = text, self._clock

    def delete(self, node: Node) -> None:
        with self._lock:
            self.nodes.pop(node.node_token, None)
            for tokens in self.folders.values():
                if node.node_token in tokens:
                    tokens.remove(node.node_token)

    def share(
        self,
        node: Node,
        *,
        chats: tuple[str, ...] = (),
        users: tuple[str, ...] = (),
        link: str = "closed",
    ) -> None:
        with self._lock:
            self.members[node.obj_token] = [
                *(
                    {"member_type": "openchat", "member_id": c, "perm": "view", "type": "chat"}
                    for c in chats
                ),
                *(
                    {"member_type": "openid", "member_id": u, "perm": "view", "type": "user"}
                    for u in users
                ),
            ]
            self.sharing[node.obj_token] = link

    # -- routes ------------------------------------------------------------------------------

    def install(self, r: web.UrlDispatcher) -> None:
        r.add_get("/open-apis/wiki/v2/spaces/get_node", self._get_node)
        r.add_get("/open-apis/wiki/v2/spaces/{space_id}/nodes", self._list_nodes)
        r.add_get("/open-apis/docx/v1/documents/{document_id}/blocks", self._blocks)
        r.add_get("/open-apis/docx/v1/documents/{document_id}", self._document)
        r.add_get("/open-apis/drive/v1/files", self._files)
        r.add_get("/open-apis/drive/v1/files/{token}/download", self._download)
        r.add_post("/open-apis/drive/v1/files/{token}/subscribe", self._subscribe)
        r.add_get("/open-apis/drive/v1/permissions/{token}/members", self._members)
        r.add_get("/open-apis/drive/v1/permissions/{token}/public", self._public)
        r.add_get("/open-apis/tenant/v2/tenant/query", self._tenant)

    @staticmethod
    def _ok(data: dict[str, Any]) -> web.Response:
        return web.json_response({"code": 0, "msg": "success", "data": data})

    @staticmethod
    def _error(code: int, msg: str, status: int = 400) -> web.Response:
        return web.json_response({"code": code, "msg": msg}, status=status)

    def _children(self, space: str, parent: str) -> list[Node]:
        return [n for n in self.nodes.values() if n.space_id == space and n.parent == parent]

    def _has_child(self, node: Node) -> bool:
        return any(n.parent == node.node_token for n in self.nodes.values())

    async def _list_nodes(self, request: web.Request) -> web.Response:
        space = request.match_info["space_id"]
        size = min(int(request.query.get("page_size", PAGE)), PAGE)
        start = int(request.query.get("page_token") or 0)
        with self._lock:
            if not any(n.space_id == space for n in self.nodes.values()):
                return self._error(131006, "permission denied: no access to the space")
            parent = request.query.get("parent_node_token", "")
            children = self._children(space, parent)
            chosen = children[start : start + size]
            items = [n.payload(self._has_child(n)) for n in chosen]
        more = start + size < len(children)
        return self._ok(
            {"items": items, "page_token": str(start + size) if more else "", "has_more": more}
        )

    async def _get_node(self, request: web.Request) -> web.Response:
        token = request.query.get("token", "")
        with self._lock:
            node = self.nodes.get(token) or next(
                (n for n in self.nodes.values() if n.obj_token == token), None
            )
            if node is None:
                return self._error(131005, "not found")
            return self._ok({"node": node.payload(self._has_child(node))})

    def _by_obj(self, token: str) -> Node | None:
        return next((n for n in self.nodes.values() if n.obj_token == token), None)

    async def _blocks(self, request: web.Request) -> web.Response:
        token = request.match_info["document_id"]
        with self._lock:
            node = self._by_obj(token)
            if node is not None and token in self.vanishing:
                self.delete(node)
                node = None
            if node is None:
                return self._error(1770002, "not found", 404)
            items = blocks_of(token, node.title, node.text)
        return self._ok({"items": items, "has_more": False, "page_token": ""})

    async def _document(self, request: web.Request) -> web.Response:
        with self._lock:
            node = self._by_obj(request.match_info["document_id"])
            if node is None:
                return self._error(1770002, "not found", 404)
            document = {
                "document_id": node.obj_token,
                "revision_id": node.edited,
                "title": node.title,
            }
        return self._ok({"document": document})

    async def _files(self, request: web.Request) -> web.Response:
        folder = request.query.get("folder_token", "")
        with self._lock:
            if folder not in self.folders:
                return self._error(1061004, "forbidden", 403)
            files = []
            for token in self.folders[folder]:
                node = self.nodes[token]
                kind = "folder" if node.obj_type == "folder" else node.obj_type
                files.append(
                    {
                        "token": node.obj_token if kind != "folder" else node.node_token,
                        "name": node.title,
                        "type": kind,
                        "parent_token": folder,
                        "modified_time": str(node.edited),
                        "created_time": str(node.edited),
                    }
                )
        return self._ok({"files": files, "has_more": False, "next_page_token": ""})

    async def _download(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            node = self._by_obj(request.match_info["token"])
            if node is None:
                return self._error(1061007, "file has been deleted", 404)
            data = node.data or node.text.encode()
        return web.Response(body=data, content_type="application/octet-stream")

    async def _subscribe(self, request: web.Request) -> web.Response:
        with self._lock:
            self.subscribed.add(request.match_info["token"])
        return self._ok({})

    async def _members(self, request: web.Request) -> web.Response:
        with self._lock:
            token = request.match_info["token"]
            if token not in self.members:
                return self._error(1063002, "permission denied")
            return self._ok({"items": list(self.members[token])})

    async def _public(self, request: web.Request) -> web.Response:
        with self._lock:
            entity = self.sharing.get(request.match_info["token"], "closed")
        return self._ok(
            {"permission_public": {"external_access": False, "link_share_entity": entity}}
        )

    async def _tenant(self, request: web.Request) -> web.Response:
        return self._ok(
            {"tenant": {"name": "Acme", "tenant_key": self.tenant_key, "domain": self.domain}}
        )
