"""Ready-made custom gateway configs for well-known providers (facts in ``docs/gateways.md``).

A preset fills the admin's "new custom gateway" form; the admin then adds the credentials
(``{api_key}``, ``{api_secret}``) and the sender (``{from}``). The custom driver has no
Basic-auth option, so providers that want Basic auth (BurstSMS, Plivo) get the credentials as
URL userinfo, which ``requests`` turns into an ``Authorization: Basic`` header.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "clickatell": {
        "label": "Clickatell (HTTP API)",
        "config": {
            "url": "https://platform.clickatell.com/messages/http/send",
            "method": "GET",
            "content_type": "form",
            "payload": "apiKey={api_key}&to={phone_digits}&content={message}",
            "success_response": '"accepted":true',
            "headers": [],
        },
        "balance": {
            "url": "https://platform.clickatell.com/v1/balance",
            "method": "GET",
            "headers": [{"name": "Authorization", "value": "{api_key}"}],
            "field": "balance",
        },
    },
    "burstsms": {
        "label": "BurstSMS / Transmit SMS",
        "config": {
            "url": "https://{api_key}:{api_secret}@api.transmitsms.com/send-sms.json",
            "method": "POST",
            "content_type": "form",
            "payload": "message={message}&to={phone_digits}&from={from}",
            "success_response": '"code":"SUCCESS"',
            "headers": [],
        },
        "balance": {
            "url": "https://{api_key}:{api_secret}@api.transmitsms.com/get-balance.json",
            "method": "GET",
            "field": "balance",
        },
    },
    "vonage": {
        "label": "Vonage (Nexmo)",
        "config": {
            "url": "https://rest.nexmo.com/sms/json",
            "method": "POST",
            "content_type": "form",
            "payload": (
                "api_key={api_key}&api_secret={api_secret}&from={from}"
                "&to={phone_digits}&text={message}&type=unicode"
            ),
            "success_response": '"status":"0"',
            "headers": [],
        },
    },
    "plivo": {
        "label": "Plivo",
        "config": {
            "url": "https://{api_key}:{api_secret}@api.plivo.com/v1/Account/{api_key}/Message/",
            "method": "POST",
            "content_type": "json",
            "payload": '{"src": "{from}", "dst": "{phone_digits}", "text": "{message}"}',
            "success_response": "queued",
            "headers": [],
        },
    },
    "infobip": {
        "label": "Infobip",
        "config": {
            "url": "https://api.infobip.com/sms/3/messages",
            "method": "POST",
            "content_type": "json",
            "payload": (
                '{"messages": [{"from": "{from}", "destinations": [{"to": "{phone_digits}"}],'
                ' "content": {"text": "{message}"}}]}'
            ),
            "success_response": '"groupId":1',
            "headers": [
                {"name": "Authorization", "value": "App {api_key}"},
                {"name": "Accept", "value": "application/json"},
            ],
        },
    },
    "messagebird": {
        "label": "MessageBird (Bird)",
        "config": {
            "url": "https://rest.messagebird.com/messages",
            "method": "POST",
            "content_type": "json",
            "payload": (
                '{"recipients": ["{phone_digits}"], "originator": "{from}", "body": "{message}"}'
            ),
            "success_response": '"id"',
            "headers": [{"name": "Authorization", "value": "AccessKey {api_key}"}],
        },
    },
    "africastalking": {
        "label": "Africa's Talking",
        "config": {
            "url": "https://api.africastalking.com/version1/messaging",
            "method": "POST",
            "content_type": "form",
            "payload": "username=YOUR_USERNAME&to={phone}&message={message}&from={from}",
            "success_response": '"status":"Success"',
            "headers": [
                {"name": "apiKey", "value": "{api_key}"},
                {"name": "Accept", "value": "application/json"},
            ],
        },
    },
    "textlocal": {
        "label": "Textlocal",
        "config": {
            "url": "https://api.txtlocal.com/send/",
            "method": "POST",
            "content_type": "form",
            "payload": "apikey={api_key}&numbers={phone_digits}&sender={from}&message={message}",
            "success_response": '"status":"success"',
            "headers": [],
        },
    },
}
"""Preset key -> ``label``, the custom gateway ``config`` it fills in, and the request of its
balance check (``balance``) where the provider has a balance endpoint."""
