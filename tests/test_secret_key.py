"""Weak secret keys are refused at start-up; the demo's own key file is private (0600)."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from flask import Flask

from portal import create_app
from portal.secret_key import ensure_secret_key
from sms_ext import SMS, ConfigError
from sms_ext.keys import weak_key_reason
from tests.conftest import TEST_KEY

README_EXAMPLE = "a long random string"
"""The README's example SECRET_KEY until issue 9: it passed the old 16-character rule."""


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        (README_EXAMPLE, "a phrase"),
        ("test-secret-key-that-is-long-enough", "a phrase"),
        ("Correct Horse Battery Staple", "a phrase"),
        ("CHANGEME_IN_PRODUCTION", "a phrase"),
        ("my-secret-key-2024-prod", "placeholder"),
        ("changeme1234567890", "placeholder"),
        ("aaaaaaaaaaaaaaaaaaaaaaaa", "different characters"),
        ("abcabcabcabcabcabcabc", "different characters"),
        ("1234567890123456789", "kinds of characters"),
        ("short", "at least 16 characters"),
    ],
)
def test_weak_keys_are_named_with_a_reason(key: str, reason: str) -> None:
    assert reason in (weak_key_reason(key) or "")


def test_generated_keys_pass() -> None:
    keys = [TEST_KEY, Fernet.generate_key().decode()]
    for _ in range(300):
        keys += [secrets.token_urlsafe(32), secrets.token_hex(16), secrets.token_urlsafe(24)]
    assert [key for key in keys if weak_key_reason(key)] == []


def test_extension_refuses_the_readme_example() -> None:
    app = Flask("weak")
    app.config.update(SECRET_KEY=README_EXAMPLE, SQLALCHEMY_DATABASE_URI="sqlite://")
    with pytest.raises(ConfigError, match=r"SMS_ENCRYPTION_KEY \(or SECRET_KEY\).*phrase"):
        SMS().init_app(app)
    app.config["SMS_ENCRYPTION_KEY"] = "my-secret-key-2024-prod"
    with pytest.raises(ConfigError, match="token_urlsafe"):
        SMS().init_app(app)


def test_portal_refuses_a_weak_secret_key(database_urls: dict[str, str]) -> None:
    """The portal signs sessions with SECRET_KEY even when SMS_ENCRYPTION_KEY is strong."""
    with pytest.raises(ConfigError, match="SECRET_KEY signs admin sessions"):
        create_app(
            {
                "SECRET_KEY": README_EXAMPLE,
                "SMS_ENCRYPTION_KEY": TEST_KEY,
                "SQLALCHEMY_DATABASE_URI": database_urls["sqlite"],
            }
        )


def test_demo_key_file_is_private_whatever_the_umask(tmp_path: Path) -> None:
    app = Flask("fresh", instance_path=str(tmp_path / "instance"))
    old_umask = os.umask(0o022)
    try:
        ensure_secret_key(app)
    finally:
        os.umask(old_umask)
    path = tmp_path / "instance" / "config.py"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == f"SECRET_KEY = {app.config['SECRET_KEY']!r}\n"
    assert weak_key_reason(app.config["SECRET_KEY"]) is None

    path.write_text("SMS_DEFAULT_REGION = 'ZA'\n")
    path.chmod(0o644)  # made by hand, or by an older version
    ensure_secret_key(app)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("SMS_DEFAULT_REGION = 'ZA'\nSECRET_KEY = ")
