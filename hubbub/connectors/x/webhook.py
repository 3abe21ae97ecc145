"""The Account Activity webhook's security checks, as pure functions (no Django, no network).

X proves it owns a webhook URL with a Challenge-Response Check: a GET with `crc_token`, answered
within three seconds with {"response_token": "sha256=" + base64(HMAC-SHA256(consumer_secret,
crc_token))}. Every event POST carries `x-twitter-webhooks-signature: sha256=<base64 HMAC-SHA256 of
the raw body, keyed with the consumer secret>`; an event whose signature does not match must be
refused before its body is read as JSON.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

SIGNATURE_HEADER = "x-twitter-webhooks-signature"
_PREFIX = "sha256="


def _digest(secret: str, message: bytes) -> str:
    return _PREFIX + base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def crc_response(crc_token: str, consumer_secret: str) -> dict[str, str]:
    """The JSON body answering a CRC GET request."""
    if not consumer_secret:
        raise ValueError("a CRC response needs the app's consumer secret")
    return {"response_token": _digest(consumer_secret, crc_token.encode())}


def verify_signature(raw_body: bytes, header: str | None, consumer_secret: str) -> bool:
    """True if `header` (x-twitter-webhooks-signature) signs exactly `raw_body`. Constant-time."""
    if not header or not consumer_secret or not isinstance(raw_body, bytes | bytearray):
        return False
    expected = _digest(consumer_secret, bytes(raw_body))
    return hmac.compare_digest(expected.encode(), header.strip().encode())
