"""The lifecycle the local wire-format servers share: bind on 127.0.0.1, serve from a thread, stop."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class LocalHTTPServer:
    """Serves `handler` in a background thread. The port is bound at construction, so `url` is known
    before start(); the handler reaches this object as `self.server.owner`."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self.port = port
        self._handler = handler
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._bind()

    def _bind(self) -> ThreadingHTTPServer:
        server = ThreadingHTTPServer((self.host, self.port), self._handler)
        # A slow answer still being written must not keep stop() waiting.
        server.daemon_threads = True
        server.block_on_close = False
        server.owner = self  # type: ignore[attr-defined]
        self._server = server
        self.port = server.server_address[1]
        return server

    def start(self) -> Self:
        """Serve in a background thread; returns self. Safe to call again after stop()."""
        if self._thread is not None:
            return self
        server = self._server or self._bind()
        # A short poll interval keeps stop(), and so every test's teardown, fast.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, name=type(self).__name__, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            if self._thread is not None:
                self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:54321."""
        return f"http://{self.host}:{self.port}"
