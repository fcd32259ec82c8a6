"""A fake intranet site over real HTTP: pages, robots.txt and sitemaps, with a request log."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeSite:
    """Serves `pages` (path -> (content type, body) or int status) on 127.0.0.1."""

    def __init__(self) -> None:
        self.pages: dict[str, tuple[str, bytes] | int] = {}
        self.requests: list[str] = []
        self.delay = 0.0
        self.active = 0
        self.peak = 0
        self._lock = threading.Lock()
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with site._lock:
                    site.requests.append(self.path)
                    site.active += 1
                    site.peak = max(site.peak, site.active)
                try:
                    if site.delay:
                        time.sleep(site.delay)
                    page = site.pages.get(self.path, 404)
                    if isinstance(page, int):
                        self.send_response(page)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    content_type, body = page
                    self.send_response(200)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                finally:
                    with site._lock:
                        site.active -= 1

            def log_message(self, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def html(self, path: str, title: str, body: str) -> None:
        page = f"<html><head><title>{title}</title></head><body><main><h1>{title}</h1>{body}</main></body></html>"
        self.pages[path] = ("text/html; charset=utf-8", page.encode())

    def sitemap(self, path: str, urls: list[str], *, index: bool = False) -> None:
        tag, item = ("sitemapindex", "sitemap") if index else ("urlset", "url")
        entries = "".join(f"<{item}><loc>{u}</loc></{item}>" for u in urls)
        xml = f'<?xml version="1.0"?><{tag} xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</{tag}>'
        self.pages[path] = ("application/xml", xml.encode())

    def __enter__(self) -> FakeSite:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
