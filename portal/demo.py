"""``make run``: migrate the demo database, start Redis (embedded), a worker and the web app.

Everything stops on Ctrl-C. With ``SMS_REDIS_URL`` (or ``FLASK_SMS_REDIS_URL``) set, that Redis
is used instead of the embedded one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from flask_migrate import upgrade

from sms_ext.state import embedded_redis_socket, stop_embedded_redis

from . import create_app
from .cli import DEMO_ADMIN, seed_demo

HOST = "127.0.0.1"
PORT = int(os.environ.get("PORT", "5000"))


def main() -> int:
    app = create_app()
    with app.app_context():
        upgrade()
        seeded = seed_demo()
    env = dict(os.environ)
    embedded = not app.config.get("SMS_REDIS_URL")
    if embedded:
        # This process owns the embedded server; the worker and the web app get its socket as
        # their Redis URL, so all three share one queue.
        env["FLASK_SMS_REDIS_URL"] = "unix://" + embedded_redis_socket(app.instance_path)
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    children = [
        subprocess.Popen([*flask, "sms", "worker"], env=env),
        subprocess.Popen([*flask, "run", "--host", HOST, "--port", str(PORT)], env=env),
    ]
    base = f"http://{HOST}:{PORT}"
    password = (
        f"{DEMO_ADMIN} / {seeded.password} (shown once: note it)"
        if seeded.password
        else f"{DEMO_ADMIN} (password shown at the first run; "
        "flask --app wsgi portal create-admin sets a new one)"
    )
    login = f"\n  SMS admin: {base}/sms/admin/  log in as {password}"
    print(
        f"\n  sms_ext demo portal: open {base}/\n"
        "  guest splash page (as a MikroTik hotspot would open it):\n"
        f"    {base}/s/demo/?mac=02:00:00:00:00:01&ip=10.0.0.23"
        f"&link-login-only={base}/demo/controller-login&link-orig=http://example.com/\n"
        f"  demo SMS inbox (the sandbox gateway's codes): {base}/demo/inbox{login}\n"
        f"  database: {app.config['SQLALCHEMY_DATABASE_URI']}\n"
        f"  redis: {'embedded (instance/)' if embedded else 'SMS_REDIS_URL'}\n"
        "  Ctrl-C stops the web app, the worker and the embedded Redis.\n",
        flush=True,
    )
    try:
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
