"""The shipped catalogs: every guest-facing string translated, every .mo compiled from its .po.

The ``.mo`` files are committed (Flask-Babel reads only those), so a fresh clone runs without a
compile step; these tests catch a ``.po`` edited without recompiling, and a string added to a
guest page or message without its translation.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from portal.i18n import LANGUAGES

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("sms_ext", "portal")
TRANSLATED = [code for code, _name in LANGUAGES if code != "en"]


def catalog(package: str, language: str) -> Catalog:
    path = ROOT / package / "translations" / language / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as file:
        return read_po(file, locale=language)


def extracted(package: str) -> set[str]:
    """Every msgid in ``package``'s Python code and templates, as ``pybabel extract`` sees it."""
    with (ROOT / "babel.cfg").open(encoding="utf-8") as file:
        method_map, options_map = parse_mapping_cfg(file)
    found = extract_from_dir(str(ROOT / package), method_map, options_map)
    return {message[2] if isinstance(message[2], str) else message[2][0] for message in found}


def _plain(value: object) -> object:
    """read_po gives plural forms as tuples, read_mo as lists."""
    return tuple(value) if isinstance(value, list | tuple) else value


def as_dict(messages: Catalog) -> dict[object, object]:
    return {_plain(message.id): _plain(message.string) for message in messages if message.id}


@pytest.mark.parametrize("package", PACKAGES)
@pytest.mark.parametrize("language", TRANSLATED)
def test_every_message_is_translated(package: str, language: str) -> None:
    messages = catalog(package, language)
    wanted = extracted(package)
    assert wanted, "nothing extracted: babel.cfg no longer matches the sources"
    translated = {
        message.id if isinstance(message.id, str) else message.id[0]: message
        for message in messages
        if message.id
    }
    missing = sorted(wanted - translated.keys())
    assert not missing, f"run pybabel update for {package} and translate: {missing}"
    for msgid in wanted:
        message = translated[msgid]
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        assert all(strings), f"{package} {language}: {msgid!r} has no translation"
        assert not message.fuzzy, f"{package} {language}: {msgid!r} is marked fuzzy"
    problems = [(message.id, errors) for message, errors in messages.check()]
    assert not problems, f"placeholders differ from the English: {problems}"


@pytest.mark.parametrize("package", PACKAGES)
@pytest.mark.parametrize("language", TRANSLATED)
def test_mo_is_compiled_from_its_po(package: str, language: str) -> None:
    mo = ROOT / package / "translations" / language / "LC_MESSAGES" / "messages.mo"
    with mo.open("rb") as file:
        compiled = read_mo(file)
    source = {key: value for key, value in as_dict(catalog(package, language)).items() if value}
    assert as_dict(compiled) == source, (
        f"{mo.relative_to(ROOT)} is stale: run "
        f"'.venv/bin/pybabel compile -d {package}/translations'"
    )
