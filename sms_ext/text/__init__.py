"""Text an SMS is made of: phone numbers (:mod:`.phone`) and how a body splits into segments
(:mod:`.segments`)."""

from __future__ import annotations

from .phone import country_name, normalize_phone
from .segments import analyze

__all__ = ["analyze", "country_name", "normalize_phone"]
