"""Checks every inbound webhook endpoint makes before it believes a delivery (pure, no Django).

Meta (Facebook Pages, Messenger, Instagram) signs each POST with the app secret:
``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw request body>``. The signature covers
the bytes as sent (Meta escapes non-ASCII characters in the JSON it signs), so it must be checked
on the raw body *before* any parsing or re-encoding, and compared in constant time.

Subscribing an endpoint starts with a GET handshake:
``?hub.mode=subscribe&hub.verify_token=<the token typed into the App Dashboard>&hub.challenge=<n>``;
the endpoint answers 200 with the challenge as the body only when the token matches.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

# Meta's deliveries are batched but small; anything larger is refused before it is read or hashed.
MAX_WEBHOOK_BODY = 1024 * 1024
SIGNATURE_HEADER = "X-Hub-Signature-256"
# The same header as Django's request.META key.
SIGNATURE_META_KEY = "HTTP_X_HUB_SIGNATURE_256"
_SCHEME = "sha256"
# A challenge is echoed back into a response body: keep it short and plain.
_MAX_CHALLENGE = 256


class SignatureError(Exception):
    """The delivery is not provably from the platform: answer 403 (or 401) and store nothing."""


class VerificationError(Exception):
    """The subscription handshake is not ours: answer 403."""


def hub_signature(raw_body: bytes, app_secret: str) -> str:
    """The header value the platform sends for `raw_body` (used by fakes and tests)."""
    digest = hmac.new(app_secret.encode("utf-8"), raw_body, hashlib.sha256).hexdigest()
    return f"{_SCHEME}={digest}"


def verify_hub_signature(raw_body: bytes, header: str | None, app_secret: str) -> None:
    """Raise SignatureError unless `header` is a valid sha256 HMAC of `raw_body` with `app_secret`."""
    if not app_secret:
        # An empty key would make any attacker's HMAC valid: refuse rather than accept everything.
        raise SignatureError("no app secret is configured, so no delivery can be verified")
    if not isinstance(raw_body, bytes | bytearray):
        raise SignatureError("the signature must be checked on the raw request body (bytes)")
    if len(raw_body) > MAX_WEBHOOK_BODY:
        raise SignatureError(f"the body is larger than {MAX_WEBHOOK_BODY} bytes")
    if not header or not header.strip():
        raise SignatureError(f"the {SIGNATURE_HEADER} header is missing")
    scheme, sep, signature = header.strip().partition("=")
    if not sep or scheme.strip().lower() != _SCHEME:
        # The legacy SHA-1 X-Hub-Signature is deliberately not accepted.
        raise SignatureError(f"the signature scheme must be {_SCHEME}=")
    signature = signature.strip().lower()
    if len(signature) != 64:
        raise SignatureError("the signature is not a 64-character hex SHA-256 digest")
    try:
        given = bytes.fromhex(signature)
    except ValueError as exc:
        raise SignatureError("the signature is not hexadecimal") from exc
    expected = hmac.new(app_secret.encode("utf-8"), bytes(raw_body), hashlib.sha256).digest()
    if not hmac.compare_digest(given, expected):
        raise SignatureError("the signature does not match the body")


def verification_challenge(params: Mapping[str, Any], verify_token: str) -> str:
    """The text to answer a subscription GET with; VerificationError if the request is not ours.

    `params` is the query string as a mapping (Django's request.GET works as it is).
    """
    if not verify_token:
        raise VerificationError("no verify token is configured")
    mode = _single(params, "hub.mode")
    token = _single(params, "hub.verify_token")
    challenge = _single(params, "hub.challenge")
    if mode != "subscribe":
        raise VerificationError("hub.mode must be subscribe")
    if not hmac.compare_digest(token.encode("utf-8"), verify_token.encode("utf-8")):
        raise VerificationError("hub.verify_token does not match")
    if not challenge or len(challenge) > _MAX_CHALLENGE or not challenge.isascii() or not challenge.isalnum():
        # Meta sends an integer; anything else would be reflected into our response unchecked.
        raise VerificationError("hub.challenge is missing or not a plain token")
    return challenge


def _single(params: Mapping[str, Any], key: str) -> str:
    value = params.get(key)
    if isinstance(value, list | tuple):
        value = value[0] if len(value) == 1 else None
    return value if isinstance(value, str) else ""
