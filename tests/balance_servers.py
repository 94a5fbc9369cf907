"""Real servers on loopback for the balance tests: a provider answering balance requests and an
SMTP server (aiosmtpd) whose received emails the tests read."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message as Email
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Seen:
    """One request the provider received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Answer:
    status: int = 200
    body: str = '{"balance": "12.50"}'
    content_type: str = "application/json"
    delay: float = 0.0


class BalanceProvider:
    """Answers every request with :attr:`answer` (changeable between checks) and records it."""

    def __init__(self) -> None:
        self.answer = Answer()
        self.seen: list[Seen] = []
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                provider.seen.append(
                    Seen(
                        self.command,
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        body,
                    )
                )
                answer = provider.answer
                if answer.delay:
                    time.sleep(answer.delay)
                data = answer.body.encode("utf-8")
                try:
                    self.send_response(answer.status)
                    self.send_header("Content-Type", answer.content_type)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (a timeout test)
                    pass

            do_GET = do_POST = _reply

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> BalanceProvider:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def say(self, body: str, status: int = 200, content_type: str = "application/json") -> None:
        self.answer = Answer(status=status, body=body, content_type=content_type)


@dataclass
class Mailbox:
    """What the SMTP server received; ``refuse`` makes it answer 451 to every message."""

    emails: list[Email] = field(default_factory=list)
    refuse: bool = False

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse:
            return "451 Requested action aborted: try again later"
        email = message_from_bytes(envelope.content)
        email["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self.emails.append(email)
        return "250 OK"

    @property
    def subjects(self) -> list[str]:
        return [str(email["Subject"]) for email in self.emails]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class SMTPServer:
    """aiosmtpd on a loopback port, for the duration of a ``with`` block."""

    def __init__(self) -> None:
        self.mailbox = Mailbox()
        self.port = free_port()
        self.controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SMTPServer:
        self.controller.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.controller.stop()

    def config(self) -> dict[str, Any]:
        """The Flask-Mail keys of an app that sends here."""
        return {
            "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": self.port,
            "MAIL_USE_TLS": False,
            "MAIL_DEFAULT_SENDER": "sms-alerts@example.com",
        }


def provider_server() -> Iterator[BalanceProvider]:
    with BalanceProvider() as provider:
        yield provider


def smtp_server() -> Iterator[SMTPServer]:
    with SMTPServer() as server:
        yield server
