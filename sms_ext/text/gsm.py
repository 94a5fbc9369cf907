"""GSM-7 look-alikes for the typographic characters that force a whole SMS into UCS-2.

One curly quote pasted from a word processor turns a 160-character message into three parts
(UCS-2 carries 70 characters, 67 per part); its plain twin keeps it in one.
"""

from __future__ import annotations

LOOKALIKES: dict[str, str] = {
    "\u2018": "'",  # left single quote
    "\u2019": "'",  # right single quote, apostrophe
    "\u201a": "'",  # low single quote
    "\u201b": "'",  # reversed single quote
    "\u2032": "'",  # prime
    "\u201c": '"',  # left double quote
    "\u201d": '"',  # right double quote
    "\u201e": '"',  # low double quote
    "\u201f": '"',  # reversed double quote
    "\u2033": '"',  # double prime
    "\u00ab": '"',  # guillemet
    "\u00bb": '"',  # guillemet
    "\u2039": "'",  # single guillemet
    "\u203a": "'",  # single guillemet
    "\u2010": "-",  # hyphen
    "\u2011": "-",  # non-breaking hyphen
    "\u2012": "-",  # figure dash
    "\u2013": "-",  # en dash
    "\u2014": "-",  # em dash
    "\u2015": "-",  # horizontal bar
    "\u2212": "-",  # minus sign
    "\u2026": "...",  # ellipsis
    "\u00a0": " ",  # non-breaking space
    "\u2002": " ",  # en space
    "\u2003": " ",  # em space
    "\u2009": " ",  # thin space
    "\u202f": " ",  # narrow non-breaking space
    "\u200b": "",  # zero-width space
    "\u00ad": "",  # soft hyphen
    "\ufeff": "",  # byte order mark / zero-width no-break space
    "\u2022": "*",  # bullet
    "\u00b7": ".",  # middle dot
    "\u02c6": "^",  # modifier circumflex
    "\u02dc": "~",  # small tilde
}
"""Typographic character -> its GSM-7 stand-in (every stand-in is GSM-7 itself)."""

_TABLE = str.maketrans(LOOKALIKES)


def plain(text: str) -> str:
    """``text`` with smart quotes, dashes, ellipses and special spaces made GSM-7.

    Other characters outside GSM-7 (accented letters, emoji) are kept: they have no faithful
    stand-in, and the counter still shows them.
    """
    return text.translate(_TABLE)
