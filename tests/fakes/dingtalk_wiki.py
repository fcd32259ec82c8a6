"""The knowledge-base side of the fake DingTalk OpenAPI: workspaces, nodes (`nextToken`
paging) and online-document blocks, with the operator checked on every call — real paths and
payloads (`/v2.0/wiki/...`, `/v1.0/doc/suites/documents/{id}/blocks`)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

OPERATOR = "union_operator_1"
PAGE = 2  # small pages, so paging is exercised


@dataclass
class WikiNode:
    node_id: str
    name: str
    parent: str
    kind: str  # FILE | FOLDER
    extension: str
    modified: str
    blocks: list[dict[str, Any]]


@dataclass
class Wikis:
    workspaces: dict[str, str] = field(default_factory=dict)  # workspace -> root node
    nodes: dict[str, WikiNode] = field(default_factory=dict)
    throttle: int = 0  # the next N calls answer 429
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def workspace(self, workspace: str) -> str:
        root = f"root-{workspace}"
        self.workspaces[workspace] = root
        return root

    def doc(
        self,
        parent: str,
        name: str,
        text: str,
        *,
        extension: str = "adoc",
        kind: str = "FILE",
        modified: str = "2026-12-01T10:00:00Z",
    ) -> WikiNode:
        blocks: list[dict[str, Any]] = []
        for line in text.splitlines():
            if line.startswith("#"):
                level = len(line) - len(line.lstrip("#"))
                blocks.append(
                    {
                        "blockType": "heading",
                        "heading": {"level": f"heading-{level}", "text": line[level:].strip()},
                    }
                )
            elif line.strip():
                blocks.append({"blockType": "paragraph", "paragraph": {"text": line}})
        node = WikiNode(
            f"node{next(self._ids):04d}", name, parent, kind, extension, modified, blocks
        )
        self.nodes[node.node_id] = node
        return node

    def install(self, app: web.Application, authorized: Any) -> None:
        self._authorized = authorized
        app.router.add_get("/v2.0/wiki/workspaces/{workspace}", self._workspace)
        app.router.add_get("/v2.0/wiki/nodes", self._nodes)
        app.router.add_get("/v1.0/doc/suites/documents/{document}/blocks", self._blocks)

    async def _check(self, request: web.Request) -> web.Response | None:
        if not await self._authorized(request):
            return web.json_response({"code": "InvalidAuthentication"}, status=401)
        if self.throttle > 0:
            self.throttle -= 1
            return web.json_response({"code": "Forbidden.AccessDenied.QpsLimit"}, status=429)
        if request.query.get("operatorId") != OPERATOR:
            return web.json_response(
                {"code": "forbidden.noPermission", "message": "no permission"}, status=403
            )
        return None

    async def _workspace(self, request: web.Request) -> web.Response:
        refused = await self._check(request)
        if refused is not None:
            return refused
        workspace = request.match_info["workspace"]
        if workspace not in self.workspaces:
            return web.json_response({"code": "notFound"}, status=404)
        return web.json_response(
            {
                "workspace": {
                    "workspaceId": workspace,
                    "name": "Handbook",
                    "rootNodeId": self.workspaces[workspace],
                }
            }
        )

    async def _nodes(self, request: web.Request) -> web.Response:
        refused = await self._check(request)
        if refused is not None:
            return refused
        parent = request.query.get("parentNodeId", "")
        children = [n for n in self.nodes.values() if n.parent == parent]
        start = int(request.query.get("nextToken") or 0)
        page = children[start : start + PAGE]
        has_children = {n.parent for n in self.nodes.values()}
        nodes = [
            {
                "nodeId": n.node_id,
                "name": n.name,
                "type": n.kind,
                "extension": n.extension,
                "modifiedTime": n.modified,
                "hasChildren": n.node_id in has_children,
                "url": f"https://alidocs.dingtalk.com/i/nodes/{n.node_id}",
            }
            for n in page
        ]
        more = start + PAGE < len(children)
        return web.json_response(
            {"nodes": nodes, **({"nextToken": str(start + PAGE)} if more else {})}
        )

    async def _blocks(self, request: web.Request) -> web.Response:
        refused = await self._check(request)
        if refused is not None:
            return refused
        node = self.nodes.get(request.match_info["document"])
        if node is None:
            return web.json_response({"code": "notFound"}, status=404)
        return web.json_response({"success": True, "result": {"data": node.blocks}})
