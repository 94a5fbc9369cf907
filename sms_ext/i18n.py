"""The extension's guest-facing sentences, in the guest's language when the host has Flask-Babel.

sms_ext does not need Flask-Babel. Without it (or in an app that never called
``Babel.init_app``) every sentence stays English. With it, sentences come from the extension's
own catalog (``sms_ext/translations``, its own :class:`flask_babel.Domain`) in the locale the
host's selector picks: the host translates its pages in its catalog and gets ours as shipped.

The extension's templates get ``_``, ``ngettext`` and ``html_lang`` in their render context
(:func:`template_context`), not as app-wide Jinja globals: a host with Flask-Babel keeps its own
``_`` for its own templates.
"""

from __future__ import annotations

import os
from typing import Any

from flask import current_app, has_app_context
from markupsafe import Markup

try:
    from flask_babel import Domain, get_locale
except ImportError:  # an integrator without Flask-Babel: English
    Domain = None

TRANSLATIONS = os.path.join(os.path.dirname(__file__), "translations")
"""The extension's catalogs: ``<language>/LC_MESSAGES/messages.mo``."""

_domain = Domain(translation_directories=[TRANSLATIONS]) if Domain is not None else None


def _catalog() -> Any | None:
    """This request's translations, when the app translates (Flask-Babel initialised on it)."""
    if _domain is None or not has_app_context() or "babel" not in current_app.extensions:
        return None
    return _domain.get_translations()


def _translate(string: str) -> str:
    catalog = _catalog()
    return str(catalog.ugettext(string)) if catalog is not None else string


def _translate_plural(singular: str, plural: str, num: int) -> str:
    catalog = _catalog()
    if catalog is not None:
        return str(catalog.ungettext(singular, plural, num))
    return singular if num == 1 else plural


def gettext(string: str, **variables: Any) -> str:
    """``string`` in the current locale, then ``%``-formatted with ``variables``."""
    text = _translate(string)
    return text % variables if variables else text


def ngettext(singular: str, plural: str, num: int, **variables: Any) -> str:
    """The singular or plural form for ``num`` (also available as ``%(num)d``)."""
    return _translate_plural(singular, plural, num) % {"num": num, **variables}


def html_lang() -> str:
    """The current locale as an HTML ``lang`` value (``es``, ``pt-BR``); ``en`` without Babel."""
    locale = get_locale() if _catalog() is not None else None
    return str(locale).replace("_", "-") if locale is not None else "en"


def territory_name(region: str, english: str) -> str:
    """``region``'s name in the current locale (CLDR, through Babel) when the app translates,
    else ``english``, the extension's own name for it."""
    locale = get_locale() if _catalog() is not None else None
    if locale is None or locale.language == "en":
        return english
    return str(locale.territories.get(region.upper(), english))


def _template_gettext(string: str, **variables: Any) -> Markup:
    """Jinja's "newstyle" gettext: the translation is trusted, the variables are escaped."""
    text = Markup(_translate(string))
    return text % variables if variables else text


def _template_ngettext(singular: str, plural: str, num: int, **variables: Any) -> Markup:
    return Markup(_translate_plural(singular, plural, num)) % {"num": num, **variables}


def template_context() -> dict[str, Any]:
    """What the extension's guest templates need to speak the guest's language."""
    return {"_": _template_gettext, "ngettext": _template_ngettext, "html_lang": html_lang()}
