"""The portal's ``SECRET_KEY``: made for a fresh demo install, refused when weak.

It signs the admins' session cookies and (unless ``SMS_ENCRYPTION_KEY`` is set) encrypts the
gateway secrets, so a guessable key gives away both.
"""

from __future__ import annotations

import os
import secrets

from flask import Flask

from sms_ext import ConfigError
from sms_ext.keys import GENERATE, weak_key_reason

CONFIG_FILE = "config.py"


def ensure_secret_key(app: Flask) -> None:
    """Give a fresh install its own random key, appended to ``instance/config.py``.

    Gateway secrets are encrypted with it, so it must survive restarts; the file is readable
    by its owner only (mode 0600), whatever the umask.
    """
    os.makedirs(app.instance_path, exist_ok=True)
    path = os.path.join(app.instance_path, CONFIG_FILE)
    key = secrets.token_urlsafe(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(descriptor, "a", encoding="utf-8") as config_file:
        os.fchmod(config_file.fileno(), 0o600)  # an older file may have been made 0644
        config_file.write(f"SECRET_KEY = {key!r}\n")
    app.config["SECRET_KEY"] = key


def check_secret_key(app: Flask) -> None:
    """Refuse to start with a guessable ``SECRET_KEY`` (the README's old example passed)."""
    weakness = weak_key_reason(str(app.config.get("SECRET_KEY") or ""))
    if weakness:
        raise ConfigError(
            "SECRET_KEY signs admin sessions and encrypts gateway secrets: set it to a random "
            f"string ({weakness}). Generate one with: {GENERATE} (gateway secrets saved under "
            "the old key must then be entered again)."
        )
