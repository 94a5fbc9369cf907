"""``make run``: migrate the demo database, start Redis (embedded), a worker and the web app.

Everything stops on Ctrl-C. With ``SMS_REDIS_URL`` (or ``FLASK_SMS_REDIS_URL``) set, that Redis
is used instead of the embedded one. ``PORT=5001 make run`` serves on another port. The demo
pages (``PORTAL_DEMO=1``) are switched on here, for this process and its children only.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from flask_migrate import upgrade

from sms_ext.connections import database_text, redis_text
from sms_ext.state import embedded_redis_socket, get_state, stop_embedded_redis

from . import create_app
from .cli import DEMO_ADMIN, DEMO_SLUG, RESET_HINT, seed_demo
from .demo_pages import splash_query

HOST = "127.0.0.1"


def _port() -> int | None:
    """``PORT`` (default 5000), or ``None`` after saying why it cannot be used."""
    raw = os.environ.get("PORT", "5000")
    port = int(raw) if raw.isdigit() else 0
    if not 0 < port < 65536:
        print(f"PORT must be a port number such as 5001, got {raw!r}.", file=sys.stderr)
        return None
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the web server does
        try:
            probe.bind((HOST, port))
        except OSError:
            print(
                f"Port {port} on {HOST} is in use (another make run?). Stop what uses it, "
                f"or pick another port: PORT={port + 1 if port < 65535 else 5001} make run",
                file=sys.stderr,
            )
            return None
    return port


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _banner(port: int, password: str | None, database: str, redis: str) -> str:
    """What to open, where the data lives, and the admin password (shown on the first run)."""
    base = f"http://{HOST}:{port}"
    login = (
        f"{DEMO_ADMIN} / {password} (shown once: note it; {RESET_HINT})"
        if password
        else f"{DEMO_ADMIN} (password shown at the first run; {RESET_HINT})"
    )
    return (
        f"\n  sms_ext demo portal: open {base}/\n"
        "  guest splash page (as a MikroTik hotspot would open it):\n"
        f"    {base}/s/{DEMO_SLUG}/?{splash_query(base + '/demo/controller-login')}\n"
        f"  demo SMS inbox (the sandbox gateway's codes): {base}/demo/inbox\n"
        f"  SMS admin: {base}/sms/admin/  log in as {login}\n"
        f"  database: {database}\n"
        f"  redis: {redis}\n"
        "  Ctrl-C stops the web app, the worker and the embedded Redis.\n"
    )


def main() -> int:
    # Checked before anything is seeded: the admin password is printed only once.
    port = _port()
    if port is None:
        return 1
    os.environ["PORTAL_DEMO"] = "1"
    app = create_app()
    with app.app_context():
        upgrade()
        seeded = seed_demo()
        database, redis = database_text(get_state()), redis_text(get_state())
    env = dict(os.environ)
    embedded = not app.config.get("SMS_REDIS_URL")
    if embedded:
        # This process owns the embedded server; the worker and the web app get its socket as
        # their Redis URL, so all three share one queue.
        env["FLASK_SMS_REDIS_URL"] = "unix://" + embedded_redis_socket(app.instance_path)
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    children: list[subprocess.Popen[bytes]] = []
    # SIGTERM (a supervisor, `timeout`, `kill`) takes the Ctrl-C path, from before the first
    # child starts: the children stop too instead of living on holding the port and the queue.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        children.append(subprocess.Popen([*flask, "sms", "worker"], env=env))
        children.append(
            subprocess.Popen([*flask, "run", "--host", HOST, "--port", str(port)], env=env)
        )
        print(_banner(port, seeded.password, database, redis), flush=True)
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        for child in children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
        if embedded:
            stop_embedded_redis(app.instance_path)
    return max((child.returncode or 0) for child in children)


if __name__ == "__main__":
    sys.exit(main())
