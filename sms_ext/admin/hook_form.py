"""The webhook fields of the gateway form: a custom gateway's field names and status mapping,
in their own form class nested as ``hooks`` (see :mod:`sms_ext.gateways.hook_fields`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wtforms import Form, StringField, TextAreaField

from ..gateways.hook_fields import DEFAULT_STATUSES, FIELDS, field_names, format_statuses
from ..models import Gateway

ERROR_KEYS = tuple(f"hooks_{key}" for key in (*FIELDS, "statuses"))
"""The keys of webhook errors: shown next to their fields, not again at the top."""


class HookFields(Form):
    """Nested in every gateway form as ``hooks`` (inputs ``hooks-id``, ``hooks-statuses``...);
    shown and read for custom gateways only: the others' webhooks have fixed fields."""

    message_id = StringField(FIELDS["id"], description="The gateway's message id (default: id).")
    status = StringField(FIELDS["status"], description="Default: status.")
    error_code = StringField(FIELDS["error_code"], description="Default: error_code.")
    sender = StringField(FIELDS["from"], description="Who replied (default: from).")
    text = StringField(FIELDS["text"], description="What they wrote (default: text).")
    statuses = TextAreaField(
        "Status mapping",
        description="One per line, PROVIDER_STATUS=delivered, undelivered, failed or ignore. "
        "Understood without a line: " + ", ".join(sorted(s.upper() for s in DEFAULT_STATUSES)),
    )


FORM_KEYS = {
    "id": "message_id",
    "status": "status",
    "error_code": "error_code",
    "from": "sender",
    "text": "text",
}
"""Field key -> input name (``from`` is a Python keyword, and a nested form's ``id`` is its
own HTML id)."""


def initial(gateway: Gateway | None) -> dict[str, Any]:
    """The form's values for a GET: the gateway's own names (blank where it uses a default)."""
    hooks = gateway.hooks if gateway is not None else None
    names = field_names(hooks)
    data: dict[str, Any] = {FORM_KEYS[k]: "" if names[k] == k else names[k] for k in FIELDS}
    data["statuses"] = format_statuses(hooks)
    return data


def submitted(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The store's ``hooks`` entry from the submitted nested form's data."""
    return {
        "fields": {key: str(fields.get(FORM_KEYS[key]) or "") for key in FIELDS},
        "statuses": str(fields.get("statuses") or ""),
    }
