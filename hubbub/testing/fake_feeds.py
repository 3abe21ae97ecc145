"""A local HTTP server that serves feeds set by a test, for connector tests without the internet.

    server = FakeFeedServer().start()
    server.set_feed("/blog.xml", body, "application/rss+xml", etag='"v1"')
    server.fail_next("/blog.xml", 429, retry_after="120")
    ... FeedConnector(... feed_urls=[server.url_for("/blog.xml")], allow_private=True ...)
    assert server.count("/blog.xml") == 2
    server.stop()

It honours If-None-Match / If-Modified-Since with 304, and can answer the next N requests of a
path with an error status, a slow answer or an oversized body.
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from hubbub.testing.server import LocalHTTPServer


@dataclass
class Feed:
    body: bytes
    content_type: str
    etag: str | None = None
    last_modified: str | None = None


@dataclass
class Scripted:
    """A one-off answer used instead of the feed for one request."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    delay: float = 0.0
    # Bytes of filler to stream instead of the body, and whether to announce them in Content-Length.
    oversize: int = 0
    declare_length: bool = True


@dataclass
class SeenRequest:
    path: str
    headers: dict[str, str]


class FakeFeedServer(LocalHTTPServer):
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self._feeds: dict[str, Feed] = {}
        self._scripts: dict[str, deque[Scripted]] = defaultdict(deque)
        self._counts: dict[str, int] = defaultdict(int)
        self.requests: list[SeenRequest] = []
        self._lock = threading.Lock()
        super().__init__(_make_handler(self), host, port)

    def url_for(self, path: str) -> str:
        return self.url + path

    # -- what to serve -----------------------------------------------------------------------------

    def set_feed(
        self,
        path: str,
        body: bytes | str,
        content_type: str = "application/rss+xml; charset=utf-8",
        etag: str | None = None,
        last_modified: str | None = None,
    ) -> None:
        """Serve `body` at `path`. `etag` is sent as given (quote it: '"v1"')."""
        data = body.encode("utf-8") if isinstance(body, str) else body
        with self._lock:
            self._feeds[path] = Feed(data, content_type, etag, last_modified)

    def fail_next(
        self, path: str, status: int, times: int = 1, retry_after: str | None = None, body: bytes = b""
    ) -> None:
        """Answer the next `times` requests of `path` with `status` (e.g. 429, 404, 500, 503)."""
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        self._script(path, times, Scripted(status=status, headers=headers, body=body))

    def slow_next(self, path: str, delay: float, times: int = 1) -> None:
        """Wait `delay` seconds before answering the next `times` requests of `path` with the feed."""
        self._script(path, times, Scripted(delay=delay))

    def oversize_next(self, path: str, size: int, times: int = 1, declare_length: bool = True) -> None:
        """Answer with `size` bytes of filler; without `declare_length` no Content-Length is sent."""
        self._script(path, times, Scripted(oversize=size, declare_length=declare_length))

    def _script(self, path: str, times: int, answer: Scripted) -> None:
        with self._lock:
            self._scripts[path].extend(answer for _ in range(times))

    # -- what was asked ----------------------------------------------------------------------------

    def count(self, path: str) -> int:
        with self._lock:
            return self._counts[path]

    def last_headers(self, path: str) -> dict[str, str]:
        with self._lock:
            for request in reversed(self.requests):
                if request.path == path:
                    return request.headers
        raise KeyError(f"no request for {path}")

    # -- answering ---------------------------------------------------------------------------------

    def _take(self, path: str, headers: dict[str, str]) -> tuple[Scripted | None, Feed | None]:
        with self._lock:
            self._counts[path] += 1
            self.requests.append(SeenRequest(path, headers))
            queue = self._scripts.get(path)
            scripted = queue.popleft() if queue else None
            return scripted, self._feeds.get(path)


def _not_modified(feed: Feed, headers: dict[str, str]) -> bool:
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None:
        # If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2); weak comparison.
        if feed.etag is None:
            return False
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return "*" in tags or feed.etag.removeprefix("W/") in tags
    since = headers.get("if-modified-since")
    if since and feed.last_modified:
        try:
            return email.utils.parsedate_to_datetime(feed.last_modified) <= email.utils.parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False
    return False


def _make_handler(server: FakeFeedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.0: the connection closes after each answer, so a body without Content-Length ends there.
        protocol_version = "HTTP/1.0"

        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            path = urlsplit(self.path).path
            headers = {name.lower(): value for name, value in self.headers.items()}
            scripted, feed = server._take(path, headers)
            try:
                if scripted is not None:
                    if scripted.delay:
                        time.sleep(scripted.delay)
                    if scripted.oversize:
                        self._send_filler(scripted)
                        return
                    if scripted.status != 200:
                        self._send(scripted.status, scripted.body or b"", "text/plain", scripted.headers)
                        return
                if feed is None:
                    self._send(404, b"no such feed", "text/plain")
                    return
                validators = {}
                if feed.etag:
                    validators["ETag"] = feed.etag
                if feed.last_modified:
                    validators["Last-Modified"] = feed.last_modified
                if _not_modified(feed, headers):
                    self._send(304, b"", None, validators)
                    return
                self._send(200, feed.body, feed.content_type, validators)
            except (BrokenPipeError, ConnectionResetError):
                # The client gave up (timeout, size cap): that is what some tests want.
                pass

        def _send(self, status: int, body: bytes, content_type: str | None, extra=None) -> None:
            self.send_response(status)
            if content_type:
                self.send_header("Content-Type", content_type)
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            if status != 304:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if status != 304:
                self.wfile.write(body)

        def _send_filler(self, scripted: Scripted) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            if scripted.declare_length:
                self.send_header("Content-Length", str(scripted.oversize))
            self.end_headers()
            chunk = b"<!-- filler -->" * 4096
            left = scripted.oversize
            while left > 0:
                piece = chunk[:left]
                self.wfile.write(piece)
                left -= len(piece)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
            pass

    return Handler
