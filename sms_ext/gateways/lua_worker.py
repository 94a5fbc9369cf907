"""The helper process that runs admins' Lua scripts for :mod:`.isolation`.

Started by :func:`.isolation.helper_command` with a clean exec; it loads this module and the
sandbox only. It reads requests from stdin and writes answers to stdout, each a 4-byte
big-endian length and UTF-8 JSON: first ``{"ready": <pid>}``, then for each request
``{"result": ...}`` or ``{"error": "<LuaScriptError text>"}``. Every request runs in a fresh
Lua runtime (:func:`.lua_sandbox.serve`), so nothing a script does reaches the next one.

It exits when stdin reaches EOF (its caller closed it, or died), after ``idle_seconds`` with no
request, and on any unexpected error (the caller reports "the script runner died"). A script
stuck in Lua's C library reads no EOF: a thread that sees the caller gone ends the process
within :data:`WATCH_SECONDS` (lupa lets go of the GIL while Lua runs), and a CPU-time limit per
run is the last guard.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import select
import signal
import threading
import time
from typing import Any

from ..errors import LuaScriptError
from .isolation import HEADER
from .lua_sandbox import serve

_REQUESTS = 0
WATCH_SECONDS = 0.25
"""How often the helper checks that its caller is alive."""


def main(idle_seconds: float, caller: int) -> None:
    # Ctrl-C in a terminal reaches the whole process group: the caller decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch, args=(caller,), name="watch caller", daemon=True).start()
    # Answers get their own descriptor; anything printed by mistake goes to stderr instead.
    answers = os.dup(1)
    os.dup2(2, 1)
    with contextlib.suppress(BrokenPipeError):  # the caller is gone
        _serve(answers, idle_seconds)


def _serve(answers: int, idle_seconds: float) -> None:
    _write(answers, {"ready": os.getpid()})
    poller = select.poll()
    poller.register(_REQUESTS, select.POLLIN)
    while poller.poll(math.ceil(idle_seconds * 1000)):
        header = _read(HEADER.size)
        if header is None:
            return
        body = _read(HEADER.unpack(header)[0])
        if body is None:
            return
        request = json.loads(body)
        _limit_cpu(float(request["deadline"]))
        try:
            answer: dict[str, Any] = {"result": serve(request)}
        except LuaScriptError as error:
            answer = {"error": str(error)}
        _write(answers, answer)


def _watch(caller: int) -> None:
    """End the process once ``caller`` is no longer its parent (it died: we were adopted)."""
    while os.getppid() == caller:
        time.sleep(WATCH_SECONDS)
    os._exit(1)


def _limit_cpu(deadline: float) -> None:
    """Let this run use ``deadline`` more CPU seconds (and a little), then SIGXCPU ends the
    process: the caller kills it at the deadline, unless the caller itself died."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = math.ceil(usage.ru_utime + usage.ru_stime + deadline) + 1
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _read(size: int) -> bytes | None:
    """``size`` bytes from stdin, or None at EOF."""
    data = bytearray()
    while len(data) < size:
        chunk = os.read(_REQUESTS, size - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def _write(fd: int, message: dict[str, Any]) -> None:
    data = json.dumps(message).encode()
    view = memoryview(HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]
