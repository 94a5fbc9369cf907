"""Demo-only pages: an inbox of sandbox "SMS" and a stand-in for a Wi-Fi controller's login.

With the sandbox gateway nothing reaches a phone, so the inbox shows what would have been
sent (the guest reads the code there). It lists sandbox messages only: messages that went
through a real gateway never appear. ``create_app`` registers these pages only when
``PORTAL_DEMO`` is on (``make run`` sets ``PORTAL_DEMO=1``): anyone could read the inbox.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from flask import Blueprint, current_app, render_template_string, request
from sqlalchemy import select

from sms_ext import Gateway, Message
from sms_ext.messages.secrecy import sandbox_text

from .extensions import db

bp = Blueprint("demo", __name__, url_prefix="/demo")

INBOX_LIMIT = 50


def splash_query(controller_login_url: str) -> str:
    """The query string a MikroTik hotspot adds to the splash page URL, for the demo links."""
    return urlencode(
        {
            "mac": "02:00:00:00:00:01",
            "ip": "10.0.0.23",
            "link-login-only": controller_login_url,
            "link-orig": "http://example.com/",
        },
        safe=":/",
    )


_STYLE = """
  *, *::before, *::after { box-sizing: border-box; }
  body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
         background: #eef2f7; color: #0f172a; }
  main { max-width: 40rem; margin: 0 auto; padding: 1rem 1rem 2.5rem; }
  .banner { background: #fef3c7; color: #78350f; border: 2px solid #f59e0b; border-radius: 14px;
            padding: .9rem 1rem; font-weight: 700; font-size: 1.05rem; text-align: center; }
  h1 { font-size: 1.4rem; margin: 1.25rem 0 .25rem; }
  .muted { color: #64748b; font-size: .92rem; }
  .sms { background: #fff; border-radius: 14px; padding: .85rem 1rem; margin: .75rem 0;
         box-shadow: 0 1px 2px rgba(15, 23, 42, .06), 0 6px 18px rgba(15, 23, 42, .06); }
  .meta { display: flex; flex-wrap: wrap; justify-content: space-between; gap: .25rem 1rem;
          color: #64748b; font-size: .88rem; }
  .to { font-weight: 650; color: #0f172a; }
  .body { font-size: 1.1rem; margin: .35rem 0 0; white-space: pre-wrap;
          overflow-wrap: anywhere; }
  table { width: 100%; border-collapse: collapse; background: #fff; border-radius: 14px;
          overflow: hidden; }
  th, td { text-align: left; padding: .55rem .75rem; border-bottom: 1px solid #e2e8f0;
           vertical-align: top; overflow-wrap: anywhere; }
  th { width: 35%; color: #334155; }
  code { font-size: .9rem; overflow-wrap: anywhere; }
"""

INBOX = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta http-equiv="refresh" content="3">
  <title>Demo SMS inbox</title>
  <style>{{ style|safe }}</style>
</head>
<body>
  <main>
    <p class="banner" role="note">Demo only: sandbox gateway, no real SMS is sent</p>
    <h1>SMS inbox</h1>
    <p class="muted">The latest {{ limit }} messages of sandbox gateways, newest first.
      This page refreshes every 3 seconds. Times are UTC.</p>
    {% for m in messages %}
    <article class="sms">
      <div class="meta">
        <span class="to">To {{ m.to }}</span>
        <time datetime="{{ (m.sent_at or m.created_at).isoformat() }}Z">
          {{- (m.sent_at or m.created_at).strftime("%Y-%m-%d %H:%M:%S") }}</time>
      </div>
      <p class="body">{{ texts[m.id] }}</p>
    </article>
    {% else %}
    <p class="muted">No message yet. Open the demo splash page and enter a phone number.</p>
    {% endfor %}
  </main>
</body>
</html>
"""

CONTROLLER_LOGIN = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Controller login (demo)</title>
  <style>{{ style|safe }}</style>
</head>
<body>
  <main>
    <p class="banner" role="note">Demo only: a stand-in for the Wi-Fi controller's login</p>
    <h1>The controller received the guest</h1>
    <p class="muted">A real controller (MikroTik, UniFi...) would now let the device online.
      These are the query parameters that reached it:</p>
    {% if params %}
    <table>
      {% for name, value in params %}
      <tr><th scope="row"><code>{{ name }}</code></th><td><code>{{ value }}</code></td></tr>
      {% endfor %}
    </table>
    {% else %}
    <p>No query parameters.</p>
    {% endif %}
    <p class="muted">Raw query string: <code>{{ raw or "(empty)" }}</code></p>
  </main>
</body>
</html>
"""


@bp.get("/inbox")
def inbox() -> str:
    """What sandbox gateways "sent", so a demo user can read the code."""
    messages = db.session.scalars(
        select(Message)
        .join(Gateway, Message.gateway_id == Gateway.id)
        .where(Gateway.type == "sandbox")
        .order_by(Message.id.desc())
        .limit(INBOX_LIMIT)
    ).all()
    vault = current_app.extensions["sms"].vault  # guest codes are stored sealed: reveal them
    texts = {m.id: sandbox_text(vault, m) for m in messages}
    return render_template_string(
        INBOX, style=_STYLE, messages=messages, texts=texts, limit=INBOX_LIMIT
    )


@bp.get("/controller-login")
def controller_login() -> str:
    """Shows every query parameter it got, in order, so the user sees they survived."""
    raw = request.query_string.decode("latin-1")
    return render_template_string(
        CONTROLLER_LOGIN,
        style=_STYLE,
        params=parse_qsl(raw, keep_blank_values=True, encoding="utf-8", errors="replace"),
        raw=raw,
    )
