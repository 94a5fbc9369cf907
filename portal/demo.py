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

from . import create_app
from .cli import DEMO_ADMIN, seed_demo

HOST = "127.0.0.1"
PORT = int(os.environ.get("PORT", "5000"))


def main() -> int:
    app = create_app()
    with app.app_context():
        upgrade()
        seeded = seed_demo()
    keeper = None
    if not app.config.get("SMS_REDIS_URL"):
        from sms_ext.state import connect_redis

        # This process owns the embedded server (it stops when this process exits); the
        # worker and web processes attach to it through the same file in instance/.
        keeper = connect_redis(None, app.instance_path)
        keeper.ping()
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    children = [
        subprocess.Popen([*flask, "sms", "worker"]),
        subprocess.Popen([*flask, "run", "--host", HOST, "--port", str(PORT)]),
    ]
    base = f"http://{HOST}:{PORT}"
    login = (
        f"\n  admin login: {DEMO_ADMIN} / {seeded.password}  (shown once: note it)"
        if seeded.password
        else ""
    )
    print(
        f"\n  sms_ext demo portal: open {base}/\n"
        "  guest splash page (as a MikroTik hotspot would open it):\n"
        f"    {base}/s/demo/?mac=02:00:00:00:00:01&ip=10.0.0.23"
        f"&link-login-only={base}/demo/controller-login&link-orig=http://example.com/\n"
        f"  demo SMS inbox (the sandbox gateway's codes): {base}/demo/inbox{login}\n"
        f"  database: {app.config['SQLALCHEMY_DATABASE_URI']}\n"
        f"  redis: {'embedded (instance/)' if keeper is not None else 'SMS_REDIS_URL'}\n"
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
    return max((child.returncode or 0) for child in children)


if __name__ == "__main__":
    sys.exit(main())
