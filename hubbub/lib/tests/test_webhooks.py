"""Webhook signature and subscription-handshake checks (pure, no database)."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from hubbub.lib.webhooks import (
    MAX_WEBHOOK_BODY,
    SignatureError,
    VerificationError,
    hub_signature,
    verification_challenge,
    verify_hub_signature,
)

SECRET = "0123456789abcdef0123456789abcdef"
# Meta signs the body as sent, with non-ASCII characters escaped.
BODY = json.dumps({"object": "page", "entry": [{"id": "1", "time": 1, "changes": []}], "t": "café"}).encode()


def header_for(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_a_valid_signature_passes() -> None:
    verify_hub_signature(BODY, header_for(BODY), SECRET)
    verify_hub_signature(BODY, hub_signature(BODY, SECRET), SECRET)
    # Upper-case hex and surrounding spaces are still the same signature.
    verify_hub_signature(BODY, "  sha256=" + header_for(BODY)[7:].upper() + " ", SECRET)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("   ", "missing"),
        ("sha1=" + hmac.new(SECRET.encode(), BODY, hashlib.sha1).hexdigest(), "scheme"),  # noqa: S324
        ("md5=abc", "scheme"),
        (header_for(BODY)[7:], "scheme"),  # no "sha256=" prefix
        ("sha256=" + "zz" * 32, "hexadecimal"),
        ("sha256=abcd", "64-character"),
        (header_for(BODY, "another-secret"), "does not match"),
    ],
)
def test_bad_signatures_are_refused(header: str | None, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason):
        verify_hub_signature(BODY, header, SECRET)


def test_a_tampered_body_is_refused() -> None:
    header = header_for(BODY)
    tampered = BODY.replace(b'"id": "1"', b'"id": "2"')
    with pytest.raises(SignatureError, match="does not match"):
        verify_hub_signature(tampered, header, SECRET)
    # Re-encoding the parsed JSON (the mistake this check exists to prevent) also fails.
    reencoded = json.dumps(json.loads(BODY), ensure_ascii=False).encode()
    with pytest.raises(SignatureError):
        verify_hub_signature(reencoded, header, SECRET)


def test_no_secret_means_nothing_is_trusted() -> None:
    with pytest.raises(SignatureError, match="no app secret"):
        verify_hub_signature(BODY, header_for(BODY, ""), "")


def test_parsed_bodies_and_oversized_bodies_are_refused() -> None:
    with pytest.raises(SignatureError, match="raw request body"):
        verify_hub_signature(BODY.decode(), header_for(BODY), SECRET)  # type: ignore[arg-type]
    big = b" " * (MAX_WEBHOOK_BODY + 1)
    with pytest.raises(SignatureError, match="larger"):
        verify_hub_signature(big, header_for(big), SECRET)


def test_the_handshake_echoes_the_challenge() -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": "meatyhamhock", "hub.challenge": "1158201444"}
    assert verification_challenge(params, "meatyhamhock") == "1158201444"
    # Django's QueryDict.lists() shape and parse_qs output work too.
    assert verification_challenge({k: [v] for k, v in params.items()}, "meatyhamhock") == "1158201444"


@pytest.mark.parametrize(
    ("params", "token"),
    [
        ({"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"}, "meatyhamhock"),
        ({"hub.mode": "unsubscribe", "hub.verify_token": "meatyhamhock", "hub.challenge": "1"}, "meatyhamhock"),
        ({"hub.verify_token": "meatyhamhock", "hub.challenge": "1"}, "meatyhamhock"),
        ({"hub.mode": "subscribe", "hub.verify_token": "meatyhamhock"}, "meatyhamhock"),
        ({"hub.mode": "subscribe", "hub.verify_token": "meatyhamhock", "hub.challenge": "<script>"}, "meatyhamhock"),
        ({"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1"}, ""),
    ],
)
def test_a_wrong_handshake_is_refused(params: dict, token: str) -> None:
    with pytest.raises(VerificationError):
        verification_challenge(params, token)
