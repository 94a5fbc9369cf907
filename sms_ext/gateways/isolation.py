"""Run a piece of untrusted work (a Lua script) in a forked child with a hard deadline.

The sandbox's own limits run inside the interpreter and cannot interrupt Lua's C library; a
child process can always be killed. The child answers through a pipe as JSON, so only plain
data comes back, and it stops by itself (CPU rlimit) should the parent die first.
"""

from __future__ import annotations

import gc
import json
import math
import os
import resource
import select
import signal
import time
import traceback
from collections.abc import Callable
from typing import NoReturn

from ..errors import LuaScriptError

TOO_LONG = "script ran too long"


def run_isolated(work: Callable[[], object], deadline: float) -> object:
    """Run ``work`` in a forked child and return its result, or raise the LuaScriptError it
    raised; SIGKILL the child if it has not answered after ``deadline`` seconds."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        _child(work, read_end, write_end, deadline)
    os.close(write_end)
    reply = None
    try:
        reply = _read_until(read_end, time.monotonic() + deadline)
    finally:
        os.close(read_end)
        if reply is None:  # the deadline passed, or we were interrupted: never leave it running
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    if reply is None:
        raise LuaScriptError(TOO_LONG)
    if not reply:
        raise LuaScriptError(f"the script runner died ({_describe_exit(status)})")
    answer = json.loads(reply)
    if "error" in answer:
        raise LuaScriptError(answer["error"])
    return answer["result"]


def _child(work: Callable[[], object], read_end: int, write_end: int, deadline: float) -> NoReturn:
    exit_code = 1
    try:
        # Collecting the parent's garbage here could run finalizers that talk over its database
        # and Redis connections; os._exit below likewise skips every cleanup handler.
        gc.disable()
        os.close(read_end)
        # Should the parent die before the deadline, the child must still stop on its own.
        seconds = math.ceil(deadline) + 1
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        if hard != resource.RLIM_INFINITY:
            seconds = min(seconds, hard)
        resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds))
        try:
            answer = {"result": work()}
        except LuaScriptError as error:
            answer = {"error": str(error)}
        view = memoryview(json.dumps(answer).encode())
        while view:
            view = view[os.write(write_end, view) :]
        exit_code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(exit_code)


def _read_until(fd: int, deadline_at: float) -> bytes | None:
    """Everything written to ``fd`` until its writer closes it, or None at the deadline."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    chunks: list[bytes] = []
    while True:
        remaining = deadline_at - time.monotonic()
        if remaining <= 0 or not poller.poll(math.ceil(remaining * 1000)):
            return None
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _describe_exit(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
