"""Encryption at rest for gateway secrets (API secrets, tokens).

A Fernet key is derived from the configured key with HKDF, so any long random string works as
configuration and the raw value is never used directly as key material.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import VaultError


class Vault:
    """Encrypts and decrypts a gateway's secrets as one JSON document."""

    def __init__(self, key: str) -> None:
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=b"sms_ext.vault", info=b"gateway secrets"
        ).derive(key.encode("utf-8"))
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def seal(self, secrets: Mapping[str, str]) -> str:
        """Encrypt ``secrets``; empty values are dropped."""
        kept = {name: value for name, value in secrets.items() if value}
        return self._fernet.encrypt(json.dumps(kept).encode("utf-8")).decode("ascii")

    def open(self, token: str | None) -> dict[str, str]:
        """Decrypt what :meth:`seal` produced; a wrong key raises :class:`VaultError`."""
        if not token:
            return {}
        try:
            return json.loads(self._fernet.decrypt(token.encode("ascii")))
        except InvalidToken:
            raise VaultError(
                "Gateway secrets cannot be decrypted: SMS_ENCRYPTION_KEY (or SECRET_KEY) changed "
                "since they were saved. Restore the old key or enter the secrets again."
            ) from None
