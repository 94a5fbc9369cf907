"""The custom HTTP gateway: any provider reachable with one HTTP request per message.

The admin describes the request (URL, method, form or JSON payload template, headers) and how
to recognise success (a substring of the answer). An optional Lua script, run only while its
"Use custom Lua script" toggle is on, can build the request and/or read the answer for
providers that need more than a template; it runs sandboxed, in a child process with a hard
deadline.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..errors import GatewayConfigError
from . import fields, lua_sandbox, payload
from .base import Driver, OutgoingSMS, PreparedCall, SendResult
from .http import Exchange, exchange
from .masking import redact

HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
MAX_HEADERS = 20
ID_KEYS = ("messageid", "message_id", "apimessageid", "msgid", "sid", "id", "uuid")
"""Keys that usually carry the provider's message id, looked up case-insensitively."""

CONTENT_TYPES = {
    payload.FORM: "application/x-www-form-urlencoded",
    payload.JSON: "application/json; charset=utf-8",
}


def _content_type(raw: str) -> str:
    lowered = raw.strip().lower()
    if "json" in lowered:
        return payload.JSON
    return payload.FORM if lowered in ("", "form") or "form" in lowered else lowered


def _headers(raw: Any, errors: dict[str, str]) -> list[dict[str, str]]:
    rows = raw or []
    if not isinstance(rows, list):
        errors["headers"] = "Headers must be a list of {name, value} rows."
        return []
    cleaned: list[dict[str, str]] = []
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, Mapping | None):
            errors["headers"] = f"Header {number} must be a {{name, value}} row."
            continue
        name = str((row or {}).get("name") or "")
        value = str((row or {}).get("value") or "")
        if not name.strip() and not value.strip():
            continue
        if any(ch in name + value for ch in "\r\n\0"):
            errors["headers"] = f"Header {number}: line breaks are not allowed in headers."
        elif not HEADER_NAME.match(name.strip()):
            errors["headers"] = f"Header {number}: '{name[:40]}' is not a valid header name."
        elif unknown := payload.unknown_placeholders(value):
            errors["headers"] = f"Header {number}: unknown placeholder {{{unknown[0]}}}."
        cleaned.append({"name": name.strip(), "value": value.strip()})
    if len(cleaned) > MAX_HEADERS:
        errors["headers"] = f"At most {MAX_HEADERS} custom headers."
    return cleaned


def _lua_script(config: Mapping[str, Any], enabled: bool, errors: dict[str, str]) -> str:
    """The script, kept even while switched off; checked only when it is to run, so an admin
    can park a draft."""
    script = str(config.get("lua_script") or "")
    if not script.strip():
        if enabled:
            errors["lua_script"] = "Write a script, or turn off \u201cUse custom Lua script\u201d."
        return ""
    if enabled:
        try:
            if not lua_sandbox.check_script(script) & {"build_request", "parse_response"}:
                errors["lua_script"] = "The script must define build_request or parse_response."
        except lua_sandbox.LuaScriptError as exc:
            errors["lua_script"] = f"Lua script: {exc}"
    return script


SECRET_LABELS = {"api_key": "API key", "api_secret": "API secret"}


def _secrets_in_use(normalised: Mapping[str, Any], errors: dict[str, str]) -> None:
    """A template that sends ``{api_key}`` with no key would fail at every message: refuse it
    now, under the secret's field."""
    templates = [normalised["url"], normalised["payload"]]
    templates += [row["value"] for row in normalised["headers"]]
    used = {name for text in templates for name in payload.PLACEHOLDER.findall(text)}
    for name, label in SECRET_LABELS.items():
        if name in used and not normalised[name] and name not in errors:
            errors[name] = f"The request uses {{{name}}}: type the {label}."


def find_message_id(document: object) -> str | None:
    """The provider's message id from a JSON answer, wherever the provider put it."""
    if isinstance(document, dict):
        lowered = {str(key).lower(): value for key, value in document.items()}
        for key in ID_KEYS:
            value = lowered.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
                return str(value)
        children = list(document.values())
    elif isinstance(document, list):
        children = document
    else:
        return None
    for child in children:
        found = find_message_id(child)
        if found:
            return found
    return None


class CustomDriver(Driver):
    """One HTTP request per message, described by the admin."""

    kind = "custom"
    fields = (
        "url",
        "method",
        "content_type",
        "payload",
        "verify_ssl",
        "success_response",
        "headers",
        "timeout",
        "api_key",
        "api_secret",
        "from_number",
        "lua_enabled",
        "lua_script",
    )
    secret_fields = ("api_key", "api_secret")

    @classmethod
    def destination(cls, config: Mapping[str, Any]) -> tuple[str, ...]:
        """The URL, and the script when it runs: a script can send the request anywhere."""
        script = str(config.get("lua_script") or "").strip()
        scripted = fields.boolean(config, "lua_enabled", bool(script)) and script
        return (fields.destination_url(config, "url"), script if scripted else "")

    @classmethod
    def validate(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        errors: dict[str, str] = {}
        method = fields.text(config, "method").upper() or "POST"
        if method not in ("GET", "POST"):
            errors["method"] = "Method must be GET or POST."
        content_type = _content_type(fields.text(config, "content_type"))
        if content_type not in CONTENT_TYPES:
            errors["content_type"] = "Content type must be form (x-www-form-urlencoded) or JSON."
        elif content_type == payload.JSON and method == "GET":
            errors["content_type"] = "A JSON payload needs the POST method: choose POST or form."
        url = fields.required(config, "url", "URL", errors)
        if url:
            if unknown := payload.unknown_placeholders(url):
                errors["url"] = f"Unknown placeholder {{{unknown[0]}}} in the URL."
            else:
                fields.http_url(payload.render_url(url, _SAMPLE), "url", "URL", errors)
        template = str(config.get("payload") or "")
        if "payload" not in errors and content_type in CONTENT_TYPES:
            try:
                payload.validate_template(template, content_type)
            except payload.TemplateError as exc:
                errors["payload"] = str(exc)
        # Absent (an export from before the toggle existed): on when there is a script.
        use_lua = fields.boolean(config, "lua_enabled", bool(fields.text(config, "lua_script")))
        normalised: dict[str, Any] = {
            "url": url,
            "method": method,
            "content_type": content_type,
            "payload": template.strip(),
            "verify_ssl": fields.boolean(config, "verify_ssl", True),
            "success_response": str(config.get("success_response") or "").strip(),
            "headers": _headers(config.get("headers"), errors),
            "timeout": fields.timeout(config, errors),
            "api_key": fields.text(config, "api_key"),
            "api_secret": fields.text(config, "api_secret"),
            "from_number": fields.text(config, "from_number"),
            "lua_enabled": use_lua,
            "lua_script": _lua_script(config, use_lua, errors),
        }
        _secrets_in_use(normalised, errors)
        if errors:
            raise GatewayConfigError(errors)
        return normalised

    def _values(self, sms: OutgoingSMS) -> dict[str, str]:
        return {
            "phone": sms.to,
            "phone_digits": sms.phone_digits,
            "message": sms.body,
            "reference": sms.reference,
            "from": self.config.get("from_number", ""),
            "api_key": self.config.get("api_key", ""),
            "api_secret": self.config.get("api_secret", ""),
        }

    def prepare(self, sms: OutgoingSMS) -> PreparedCall:
        """The request for ``sms``; also what the admin's request preview shows."""
        values = self._values(sms)
        config = self.config
        url = payload.render_url(config["url"], values)
        method = config["method"]
        headers = {
            row["name"]: payload.substitute(row["value"], values) for row in config["headers"]
        }
        body: bytes | None = None
        if config["payload"]:
            if config["content_type"] == payload.JSON:
                body = payload.render_json(config["payload"], values)
            else:
                encoded = payload.render_form(config["payload"], values)
                if method == "GET":
                    url += ("&" if "?" in url else "?") + encoded
                else:
                    body = encoded.encode("ascii")
        if body is not None:
            headers.setdefault("Content-Type", CONTENT_TYPES[config["content_type"]])
        call = PreparedCall(method=method, url=url, headers=headers, body=body)
        if self._scripted:
            call = self._scripted_request(call, values)
        for name, value in call.headers.items():
            if any(ch in name + value for ch in "\r\n"):
                raise ValueError(f"Header {name} would contain a line break.")
        return call

    @property
    def _scripted(self) -> bool:
        return bool(self.config.get("lua_enabled") and self.config.get("lua_script"))

    def _script_config(self) -> dict[str, str]:
        """The script's ``cfg``: the gateway's secrets, kept apart from the message."""
        return {name: str(self.config.get(name) or "") for name in SECRET_LABELS}

    def _scripted_request(self, call: PreparedCall, values: Mapping[str, str]) -> PreparedCall:
        """Let the Lua script's ``build_request(msg, cfg)`` change any part of the request.

        ``msg`` carries the placeholders' names (``msg.phone``...) and the request the
        template built; ``to``, ``from_number`` and the secrets are also there under the names
        scripts used before ``cfg`` existed, so those keep working.
        """
        argument = {
            **values,
            "to": values["phone"],
            "from_number": values["from"],
            "method": call.method,
            "url": call.url,
            "headers": call.headers,
            "body": (call.body or b"").decode("utf-8"),
        }
        built = lua_sandbox.call_script_isolated(
            self.config["lua_script"], "build_request", argument, config=self._script_config()
        )
        if built is None:
            return call
        if not isinstance(built, dict):
            raise lua_sandbox.LuaScriptError("build_request must return a table")
        headers = built.get("headers", call.headers)
        body = built.get("body")
        return PreparedCall(
            method=str(built.get("method") or call.method).upper(),
            url=str(built.get("url") or call.url),
            headers={str(k): str(v) for k, v in (headers or {}).items()},
            body=str(body).encode("utf-8") if body is not None else call.body,
        )

    def send(self, sms: OutgoingSMS) -> SendResult:
        try:
            call = self.prepare(sms)
        except (ValueError, lua_sandbox.LuaScriptError) as exc:
            error = redact(f"Request could not be built: {exc}", self.secrets)
            return SendResult(ok=False, error=error)
        sent = exchange(
            self.session,
            call,
            timeout=self.config["timeout"],
            verify=self.config["verify_ssl"],
            secrets=self.secrets,
        )
        if self._scripted:
            return self._scripted_result(sent)
        return self._judge(sent)

    def _judge(self, sent: Exchange) -> SendResult:
        """Success is a 2xx answer that contains the success substring, when one is set."""
        if sent.status is None or not 200 <= sent.status < 300:
            return sent.result(False, secrets=self.secrets)
        expected = self.config["success_response"]
        if expected and expected not in sent.text:
            return sent.result(
                False,
                error=f"The answer does not contain the success text {expected!r}.",
                retryable=True,
                secrets=self.secrets,
            )
        return sent.result(True, provider_id=find_message_id(sent.json()), secrets=self.secrets)

    def _scripted_result(self, sent: Exchange) -> SendResult:
        """Let ``parse_response`` judge the answer; without it, judge as usual."""
        if sent.response is None:
            return sent.result(False, secrets=self.secrets)
        answer = {
            "status": sent.status,
            "body": sent.text[:65536],
            "headers": {k.lower(): v for k, v in sent.response.headers.items()},
            "json": sent.json(),
        }
        try:
            verdict = lua_sandbox.call_script_isolated(
                self.config["lua_script"], "parse_response", answer, config=self._script_config()
            )
        except lua_sandbox.LuaScriptError as exc:
            return sent.result(False, error=f"Lua parse_response: {exc}", secrets=self.secrets)
        if verdict is None:
            return self._judge(sent)
        if not isinstance(verdict, dict):
            return sent.result(
                False, error="Lua parse_response must return a table.", secrets=self.secrets
            )
        ok = bool(verdict.get("ok"))
        retryable = verdict.get("retryable")
        return sent.result(
            ok,
            provider_id=str(verdict["id"]) if verdict.get("id") not in (None, "") else None,
            error=str(verdict.get("error") or ""),
            retryable=None if retryable is None else bool(retryable),
            secrets=self.secrets,
        )


_SAMPLE = {
    "phone": "+27831234567",
    "phone_digits": "27831234567",
    "message": "sample",
    "reference": "1",
    "from": "Sender",
    "api_key": "key",
    "api_secret": "secret",
}
"""Values used to check that a URL template renders to a usable URL."""
