"""Outbound HTTP that refuses private addresses and oversized answers.

A feed URL or an instance URL is typed in by a user; without these checks it is a way
to make hubbub fetch http://169.254.169.254/ or a database port inside the network.
Every connector gets its `requests.Session` from `safe_session()`.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlparse

import requests
from requests.adapters import HTTPAdapter

USER_AGENT = "hubbub/0.1 (+social customer service)"
DEFAULT_TIMEOUT = (5.0, 30.0)


class BlockedAddress(requests.exceptions.ConnectionError):
    """The URL points at a private, loopback, link-local or otherwise internal address."""


class ResponseTooLarge(requests.exceptions.ContentDecodingError):
    """The body is larger than the cap."""


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_url(url: str, allow_private: bool = False) -> None:
    """Raise BlockedAddress unless every address the host resolves to is public."""
    parts = urlparse(url)
    if parts.scheme not in ("http", "https"):
        raise BlockedAddress(f"only http and https URLs are fetched, not {parts.scheme or 'no scheme'!r}")
    host = parts.hostname
    if not host:
        raise BlockedAddress("URL has no host")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(host, parts.port or (443 if parts.scheme == "https" else 80))
    except socket.gaierror as exc:
        raise requests.exceptions.ConnectionError(f"cannot resolve {host}: {exc}") from exc
    for info in infos:
        address = info[4][0]
        if not is_public_address(address):
            raise BlockedAddress(f"{host} resolves to {address}, a private or internal address")


class _GuardedAdapter(HTTPAdapter):
    def __init__(self, allow_private: bool):
        super().__init__(max_retries=0)
        self.allow_private = allow_private

    def send(self, request, **kwargs):  # type: ignore[override]
        # Checked on every request, redirects included: a public URL may redirect inward.
        check_url(request.url, self.allow_private)
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = DEFAULT_TIMEOUT
        return super().send(request, **kwargs)


def allow_private_default() -> bool:
    from django.conf import settings

    return bool(getattr(settings, "HUBBUB_ALLOW_PRIVATE_URLS", False))


def safe_session(allow_private: bool | None = None) -> requests.Session:
    """A requests.Session whose every request (and redirect) is checked by `check_url`."""
    if allow_private is None:
        allow_private = allow_private_default()
    session = requests.Session()
    adapter = _GuardedAdapter(allow_private)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    session.max_redirects = 5
    return session


def read_capped(response: requests.Response, max_bytes: int) -> bytes:
    """Read a streamed response body, refusing more than `max_bytes`."""
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise ResponseTooLarge(f"response declares {declared} bytes, more than the {max_bytes} allowed")
    chunks = []
    size = 0
    for chunk in response.iter_content(64 * 1024):
        size += len(chunk)
        if size > max_bytes:
            response.close()
            raise ResponseTooLarge(f"response is larger than the {max_bytes} bytes allowed")
        chunks.append(chunk)
    return b"".join(chunks)
