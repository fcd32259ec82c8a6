"""A fake Notion API (version 2025-09-03) over real HTTP: pages, block children (paged), a
database with one data source and its query, bearer auth, errors in Notion's own shape
(object_not_found for what is not shared, unauthorized, restricted_resource), 429 with
Retry-After on demand, and a request log."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "ntn_test_secret"


def rich(text: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": {"content": text}, "plain_text": text, "annotations": {}}]


def block(
    kind: str, text: str = "", children: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A block as the test writes it; the fake gives it an id."""
    return {"type": kind, kind: {"rich_text": rich(text)}, "children": children or []}


@dataclass
class Page:
    title: str
    blocks: list[dict[str, Any]]
    edited: str = "2026-12-01T10:00:00.000Z"
    parent: str = ""  # a page id, a database id, or "" (the workspace)
    properties: dict[str, Any] = field(default_factory=dict)


class FakeNotion:
    def __init__(self, page_size: int = 2) -> None:
        self.page_size = page_size
        self.pages: dict[str, Page] = {}
        self.databases: dict[str, str] = {}  # database id -> parent page id ("" = workspace)
        self.unshared: set[str] = set()
        self.restricted: set[str] = set()
        self.throttle = 0
        self.token = TOKEN
        self.requests: list[str] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer(None)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0") or 0)
                self._answer(json.loads(self.rfile.read(length) or b"{}"))

            def _answer(self, body: dict[str, Any] | None) -> None:
                with fake._lock:
                    fake.requests.append(f"{self.command} {self.path}")
                    throttled = fake.throttle > 0
                    fake.throttle -= 1 if throttled else 0
                if throttled:
                    status, reply = _error(429, "rate_limited", "You have been rate limited.")
                elif self.headers.get("Authorization") != f"Bearer {fake.token}":
                    status, reply = _error(401, "unauthorized", "API token is invalid.")
                elif not self.headers.get("Notion-Version"):
                    status, reply = _error(400, "missing_version", "Notion-Version header missing")
                else:
                    status, reply = fake._route(self.command, self.path, body or {})
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> FakeNotion:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _hidden(self, object_id: str) -> bool:
        """Not shared with the integration: itself or any ancestor unshared."""
        while object_id:
            if object_id in self.unshared:
                return True
            page = self.pages.get(object_id)
            object_id = page.parent if page else self.databases.get(object_id, "")
        return False

    def _route(self, method: str, raw: str, body: dict[str, Any]) -> tuple[int, Any]:
        parts = urlsplit(raw)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        path = parts.path.removeprefix("/v1/").split("/")
        object_id = path[1] if len(path) > 1 else ""
        if self._hidden(object_id) or (
            object_id not in self.pages
            and object_id not in self.databases
            and not object_id.startswith("ds-")
            and not object_id.startswith("b-")
        ):
            kind = "database" if path[0] in ("databases", "data_sources") else "block"
            return _error(
                404,
                "object_not_found",
                f"Could not find {kind} with ID: {object_id}. Make sure the relevant pages and "
                "databases are shared with your integration.",
            )
        if object_id in self.restricted:
            return _error(403, "restricted_resource", "Insufficient permissions.")
        if path[0] == "pages" and method == "GET" and object_id in self.pages:
            return 200, self._page(object_id)
        if path[0] == "databases" and object_id in self.databases:
            return 200, {
                "object": "database",
                "id": object_id,
                "title": rich("Database"),
                "data_sources": [{"id": f"ds-{object_id}", "name": "Database"}],
            }
        if path[0] == "databases":
            return _error(404, "object_not_found", f"Could not find database with ID: {object_id}.")
        if path[0] == "data_sources" and path[2:] == ["query"] and method == "POST":
            database = object_id.removeprefix("ds-")
            rows = [self._page(i) for i, p in self.pages.items() if p.parent == database]
            return 200, self._window(
                rows, body.get("start_cursor"), body.get("page_size"), "page_or_data_source"
            )
        if path[0] == "blocks" and path[2:] == ["children"]:
            return 200, self._window(
                self._children(object_id),
                query.get("start_cursor"),
                query.get("page_size"),
                "block",
            )
        return _error(400, "invalid_request_url", f"Invalid request URL: {raw}")

    def _window(self, items: list[Any], cursor: str | None, size: Any, kind: str) -> dict[str, Any]:
        start = int(cursor or 0)
        end = start + min(int(size or 100), self.page_size)
        return {
            "object": "list",
            "results": items[start:end],
            "has_more": end < len(items),
            "next_cursor": str(end) if end < len(items) else None,
            "type": kind,
            kind: {},
        }

    def _page(self, page_id: str) -> dict[str, Any]:
        page = self.pages[page_id]
        if page.parent in self.databases:
            parent = {
                "type": "data_source_id",
                "data_source_id": f"ds-{page.parent}",
                "database_id": page.parent,
            }
        elif page.parent:
            parent = {"type": "page_id", "page_id": page.parent}
        else:
            parent = {"type": "workspace", "workspace": True}
        return {
            "object": "page",
            "id": page_id,
            "url": f"https://www.notion.so/{page.title.replace(' ', '-')}-{page_id.replace('-', '')}",
            "last_edited_time": page.edited,
            "in_trash": False,
            "archived": False,
            "parent": parent,
            "properties": {
                "Name": {"id": "title", "type": "title", "title": rich(page.title)},
                **page.properties,
            },
        }

    def _children(self, object_id: str) -> list[dict[str, Any]]:
        if object_id in self.pages:
            blocks = self._ids(object_id, self.pages[object_id].blocks)
            for child, page in self.pages.items():
                if page.parent == object_id:
                    blocks.append(self._shown(child, "child_page", {"title": page.title}, False))
            for database, parent in self.databases.items():
                if parent == object_id:
                    blocks.append(
                        self._shown(database, "child_database", {"title": "Database"}, False)
                    )
            return blocks
        return self._nested.get(object_id, [])

    _nested: dict[str, list[dict[str, Any]]]

    def _ids(self, owner: str, blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not hasattr(self, "_nested"):
            self._nested = {}
        shown = []
        for n, raw in enumerate(blocks):
            block_id = f"b-{owner[-6:]}-{n}"
            kind = raw["type"]
            self._nested[block_id] = self._ids(block_id, raw.get("children", []))
            shown.append(self._shown(block_id, kind, raw[kind], bool(raw.get("children"))))
        return shown

    @staticmethod
    def _shown(block_id: str, kind: str, body: dict[str, Any], children: bool) -> dict[str, Any]:
        return {
            "object": "block",
            "id": block_id,
            "type": kind,
            "has_children": children,
            "last_edited_time": "2026-12-01T10:00:00.000Z",
            kind: body,
        }


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"object": "error", "status": status, "code": code, "message": message}
