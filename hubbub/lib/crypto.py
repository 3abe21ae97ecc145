"""Encryption of secrets at rest (account tokens, webhook secrets)."""

import base64
import json
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class SecretError(Exception):
    pass


@lru_cache(maxsize=4)
def _fernet(key_material: str) -> Fernet:
    # HKDF turns any operator-supplied string into the 32 bytes Fernet needs.
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"hubbub-secrets-v1", info=b"fernet").derive(
        key_material.encode()
    )
    return Fernet(base64.urlsafe_b64encode(derived))


def encrypt_json(value: dict[str, Any], key_material: str) -> str:
    return _fernet(key_material).encrypt(json.dumps(value, sort_keys=True).encode()).decode()


def decrypt_json(token: str, key_material: str) -> dict[str, Any]:
    if not token:
        return {}
    try:
        return json.loads(_fernet(key_material).decrypt(token.encode()))
    except InvalidToken as exc:
        raise SecretError("credentials cannot be decrypted: HUBBUB_ENCRYPTION_KEY changed?") from exc
