"""A fake Confluence Cloud site over real HTTP: the REST API paths and payloads the confluence
kind uses (`/wiki/rest/api/content` listing with cursor-style `_links.next`, one page with its
storage body, attachments and their download, a space), with basic or bearer auth, 429s with
Retry-After on demand, per-page 403s and a request log."""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

EMAIL, TOKEN = "bot@example.com", "atl-token-1"


@dataclass
class Page:
    title: str
    body: str  # storage format
    version: int = 1
    ancestors: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)  # accountIds with read restrictions
    groups: list[str] = field(default_factory=list)
    attachments: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # name -> (v, data)


class FakeConfluence:
    """Serves space `space` with `pages` (id -> Page) under /wiki on 127.0.0.1."""

    def __init__(self, space: str = "ENG", page_size: int = 2) -> None:
        self.space = space
        self.page_size = page_size
        self.pages: dict[str, Page] = {}
        self.requests: list[str] = []
        self.throttle = 0  # answer this many next requests with 429
        self.forbidden: set[str] = set()  # page ids listed, but 403 when read
        self.listing_status = 200
        self.token = TOKEN
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with fake._lock:
                    fake.requests.append(self.path)
                    throttled = fake.throttle > 0
                    fake.throttle -= 1 if throttled else 0
                if throttled:
                    self._send(429, {"message": "Rate limited"}, {"Retry-After": "0"})
                    return
                if not fake._authorized(self.headers.get("Authorization", "")):
                    self._send(401, {"message": "Unauthorized"})
                    return
                status, body = fake._route(self.path)
                self._send(status, body)

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                kind = "application/octet-stream" if isinstance(body, bytes) else "application/json"
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.base_url = f"{self.url}/wiki"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> FakeConfluence:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reads(self) -> list[str]:
        """Ids of pages whose body was fetched, in order."""
        return [
            urlsplit(p).path.rsplit("/", 1)[-1] for p in self.requests if "expand=body.storage" in p
        ]

    def _authorized(self, header: str) -> bool:
        basic = base64.b64encode(f"{EMAIL}:{self.token}".encode()).decode()
        return header in (f"Basic {basic}", f"Bearer {self.token}")

    def _route(self, raw: str) -> tuple[int, Any]:
        parts = urlsplit(raw)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        path = parts.path.removeprefix("/wiki")
        if path == "/rest/api/content":
            return self._listing(query)
        if path == f"/rest/api/space/{self.space}":
            return 200, {"key": self.space, "name": "Engineering"}
        if path.startswith("/rest/api/space/"):
            return 404, {"message": "No space with key"}
        if path.startswith("/download/attachments/"):
            _, _, page_id, name = path.split("/", 4)[1:]
            page = self.pages.get(page_id)
            if page is None or name not in page.attachments:
                return 404, {"message": "not found"}
            return 200, page.attachments[name][1]
        if path.startswith("/rest/api/content/"):
            rest = path.removeprefix("/rest/api/content/").split("/")
            page = self.pages.get(rest[0])
            if page is None:
                return 404, {"message": f"No content found with id: {rest[0]}"}
            if rest[0] in self.forbidden:
                return 403, {"message": "Not permitted to view this content"}
            if rest[1:] == ["child", "attachment"]:
                return 200, self._attachments(rest[0], page)
            return 200, {**self._content(rest[0], page), "body": {"storage": {"value": page.body}}}
        return 404, {"message": "unknown path"}

    def _listing(self, query: dict[str, str]) -> tuple[int, Any]:
        if self.listing_status != 200:
            return self.listing_status, {"message": "listing refused"}
        if query.get("spaceKey") != self.space:
            return 200, {"results": [], "size": 0, "_links": {"base": self.base_url}}
        start, limit = (
            int(query.get("start", "0")),
            min(int(query.get("limit", "25")), self.page_size),
        )
        visible = sorted(self.pages)
        window = visible[start : start + limit]
        links: dict[str, str] = {"base": self.base_url, "context": "/wiki"}
        if start + limit < len(visible):
            links["next"] = "/rest/api/content?" + urlencode({**query, "start": start + limit})
        results = [self._content(i, self.pages[i]) for i in window]
        return 200, {"results": results, "start": start, "size": len(results), "_links": links}

    def _content(self, page_id: str, page: Page) -> dict[str, Any]:
        return {
            "id": page_id,
            "type": "page",
            "status": "current",
            "title": page.title,
            "version": {"number": page.version, "when": "2026-12-01T10:00:00.000Z"},
            "ancestors": [{"id": a, "type": "page"} for a in page.ancestors],
            "restrictions": {
                "read": {
                    "operation": "read",
                    "restrictions": {
                        "user": {
                            "results": [{"accountId": u} for u in page.users],
                            "size": len(page.users),
                        },
                        "group": {
                            "results": [{"name": g} for g in page.groups],
                            "size": len(page.groups),
                        },
                    },
                }
            },
            "_links": {
                "webui": f"/spaces/{self.space}/pages/{page_id}",
                "self": f"{self.base_url}/rest/api/content/{page_id}",
            },
        }

    def _attachments(self, page_id: str, page: Page) -> dict[str, Any]:
        results = [
            {
                "id": f"att{page_id}{n}",
                "type": "attachment",
                "title": name,
                "version": {"number": version, "when": "2026-12-01T10:00:00.000Z"},
                "_links": {"download": f"/download/attachments/{page_id}/{name}"},
            }
            for n, (name, (version, _)) in enumerate(sorted(page.attachments.items()))
        ]
        return {"results": results, "size": len(results), "_links": {"base": self.base_url}}
