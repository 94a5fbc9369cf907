"""Run untrusted work (a Lua script) in a separate helper process with a hard deadline.

The sandbox's own limits run inside the interpreter and cannot interrupt Lua's C library; a
process can always be killed. Helpers are started with a clean exec (``subprocess``), never
forked from the caller: a worker runs many sending threads and holds database and Redis
connections, and a fork would copy locks that other threads hold. A helper loads only the
sandbox (see :mod:`.lua_worker`) and speaks length-prefixed JSON over its stdin and stdout, so
only plain data comes back.

:func:`run_pooled` keeps up to :data:`POOL_SIZE` warm helpers per process, shared by threads,
for the scripts that run for every message; :func:`run_once` starts one helper for a single
run and ends it, for the admin form's check in a web process. Either way the caller enforces the
deadline: a helper that has not answered in time is killed (and later replaced), and the call
raises ``LuaScriptError("script ran too long")``. A helper ends by itself when its caller dies
(its stdin reaches EOF, and a thread watches its parent for when it is busy) or after
:data:`IDLE_SECONDS` without work.
"""

from __future__ import annotations

import atexit
import collections
import json
import math
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import LuaScriptError

TOO_LONG = "script ran too long"

POOL_SIZE = 4
"""Warm helpers per process at most. A build_request or parse_response run takes well under a
millisecond of helper time, so four serve a worker's 32 sending threads; they start lazily, so a
process that never has more than one script running at a time starts one."""
IDLE_SECONDS = 300.0
"""A helper with no work for this long exits (the pool drops it a little earlier, so that it never
sends work to one that is just leaving)."""
STARTUP_SECONDS = 20.0
"""How long a new helper may take to load Python and lupa (about 70 ms when idle)."""
MAX_REPLY = 16 * 1024 * 1024
"""Bytes of one answer; a result holds at most about 1 MiB of text (see lua_sandbox)."""

HEADER = struct.Struct(">I")
"""Each message on the pipes: its length as 4 bytes, big-endian, then that much UTF-8 JSON."""

_PACKAGE = __package__ or "sms_ext.gateways"
_ROOT = _PACKAGE.rpartition(".")[0]
_BOOTSTRAP = """\
import importlib.util, sys, types
# The packages' __init__ modules import Flask and SQLAlchemy (about 1.5 s and 65 MB): load the
# helper's modules without running them.
for name, path in (({root!r}, {root_dir!r}), ({package!r}, {package_dir!r})):
    spec = importlib.util.spec_from_file_location(
        name, path + "/__init__.py", submodule_search_locations=[path]
    )
    sys.modules[name] = importlib.util.module_from_spec(spec)
# errors.py imports werkzeug (14 MB, 0.2 s) for its HTTP errors; the helper only raises this one
# and sends its text back.
errors = types.ModuleType({root!r} + ".errors")
errors.LuaScriptError = type("LuaScriptError", (Exception,), {{}})
sys.modules[errors.__name__] = errors
from {package}.lua_worker import main
main(float(sys.argv[1]), int(sys.argv[2]))
"""


def helper_command(idle_seconds: float = IDLE_SECONDS) -> list[str]:
    """The command line of a helper process."""
    package_dir = Path(__file__).resolve().parent
    code = _BOOTSTRAP.format(
        root=_ROOT,
        root_dir=str(package_dir.parent),
        package=_PACKAGE,
        package_dir=str(package_dir),
    )
    # -P: nothing from the current directory shadows a module the helper imports.
    return [sys.executable, "-P", "-c", code, repr(idle_seconds), str(os.getpid())]


class _Broken(LuaScriptError):
    """A helper that had served before died without answering: most likely while idle (then the
    request was never read). Scripts have no side effects, so one more try is safe."""


def _exit_text(status: int) -> str:
    if status < 0:
        return f"signal {signal.Signals(-status).name}"
    return f"exit status {status}"


class _Helper:
    """One helper process, used by one thread at a time."""

    def __init__(self, idle_seconds: float) -> None:
        self.idle_seconds = idle_seconds
        try:
            self.process = subprocess.Popen(
                helper_command(idle_seconds),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                bufsize=0,
                # stderr is inherited: a helper's traceback lands in the worker's log.
            )
        except OSError as error:
            raise LuaScriptError(f"the script runner could not start ({error})") from None
        assert self.process.stdin is not None and self.process.stdout is not None
        self._requests = self.process.stdin.fileno()
        self._replies = self.process.stdout.fileno()
        os.set_blocking(self._replies, False)
        self.usable = True
        self.served = 0
        self.pid = self.process.pid
        try:
            hello = self._receive(time.monotonic() + STARTUP_SECONDS)
        except BaseException:
            self.kill()
            raise
        if not isinstance(hello, dict) or hello.get("ready") != self.pid:
            self.kill()
            why = hello if isinstance(hello, str) else "no greeting in time"
            raise LuaScriptError(f"the script runner could not start ({why})")
        self.last_used = time.monotonic()

    def fresh(self) -> bool:
        """Alive, and far enough from its idle exit to be given work."""
        idle = time.monotonic() - self.last_used
        return self.usable and idle < self.idle_seconds * 0.9 and self.process.poll() is None

    def call(self, request: Mapping[str, Any], deadline: float) -> object:
        """Send ``request``; return the answer's result or raise its LuaScriptError. On the
        deadline, or if the helper dies or talks nonsense, it is killed and marked unusable."""
        data = json.dumps(request).encode()
        deadline_at = time.monotonic() + deadline
        died = _Broken if self.served else LuaScriptError
        try:
            self._send(HEADER.pack(len(data)) + data)
        except OSError:  # BrokenPipeError: it died while idle
            why = self._death()
            self.kill()
            raise died(f"the script runner died ({why})") from None
        answer = self._receive(deadline_at)
        if answer is None:
            self.kill()
            raise LuaScriptError(TOO_LONG)
        if isinstance(answer, str):
            self.kill()
            raise died(f"the script runner died ({answer})")
        self.served += 1
        self.last_used = time.monotonic()
        if isinstance(answer.get("error"), str):
            raise LuaScriptError(answer["error"])
        if "result" not in answer:
            self.kill()
            raise LuaScriptError("the script runner sent an unreadable answer")
        return answer["result"]

    def kill(self) -> None:
        """SIGKILL and reap it (it may be running a script); idempotent."""
        self.usable = False
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.close_pipes()

    def close_pipes(self) -> None:
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()

    def _send(self, data: bytes) -> None:
        # An idle helper is always reading its stdin, so a blocking write cannot hang.
        view = memoryview(data)
        while view:
            view = view[os.write(self._requests, view) :]

    def _receive(self, deadline_at: float) -> dict[str, Any] | str | None:
        """The next message, None at the deadline, or a description of the helper's death."""
        header = self._read(HEADER.size, deadline_at)
        if isinstance(header, bytes):
            (size,) = HEADER.unpack(header)
            if size > MAX_REPLY:
                self.kill()
                return "its answer was too large"
            body = self._read(size, deadline_at)
            if isinstance(body, bytes):
                try:
                    message = json.loads(body)
                except (ValueError, RecursionError):
                    message = None
                if isinstance(message, dict):
                    return message
                self.kill()
                return "its answer was not JSON"
            header = body
        if header is None:
            return None
        return self._death()

    def _read(self, size: int, deadline_at: float) -> bytes | bool | None:
        """``size`` bytes, None at the deadline, False at EOF."""
        poller = select.poll()
        poller.register(self._replies, select.POLLIN)
        data = bytearray()
        while len(data) < size:
            remaining = deadline_at - time.monotonic()
            if remaining <= 0 or not poller.poll(math.ceil(remaining * 1000)):
                return None
            try:
                chunk = os.read(self._replies, size - len(data))
            except BlockingIOError:
                continue
            if not chunk:
                return False
            data += chunk
        return bytes(data)

    def _death(self) -> str:
        """Why it has stopped (waits for it: it closed its end or could not be written to)."""
        self.usable = False
        try:
            status = self.process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            self.process.kill()
            status = self.process.wait()
        return _exit_text(status)


class _Waiter:
    """A thread waiting for a helper: it gets one given back, or leave to start one."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.helper: _Helper | None = None


class HelperPool:
    """Up to ``size`` warm helpers shared by threads: a caller takes an idle one, or starts one
    while fewer than ``size`` exist, or else waits in line; a helper given back goes to the first
    in line (a thread that gives one back and asks again queues behind the others). A helper
    that was killed or died is dropped, and its place goes to a new one, started on demand."""

    def __init__(self, size: int = POOL_SIZE, idle_seconds: float = IDLE_SECONDS) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self.idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._idle: list[_Helper] = []  # a stack: the warmest first, the rest may go idle
        self._helpers: set[_Helper] = set()
        self._count = 0  # helpers alive or starting
        self._waiters: collections.deque[_Waiter] = collections.deque()  # only while all busy

    def run(self, request: Mapping[str, Any], deadline: float) -> object:
        """The result of ``request`` in a helper, or its LuaScriptError."""
        for attempt in (1, 2):
            helper = self._take()
            try:
                return helper.call(request, deadline)
            except _Broken:  # it most likely died while idle: try a new one, once
                if attempt == 2:
                    raise
            except LuaScriptError:
                raise
            except BaseException:
                helper.kill()  # interrupted mid-call: its state is unknown
                raise
            finally:
                self._give_back(helper)
        raise AssertionError("unreachable")

    def pids(self) -> list[int]:
        """The process ids of the current helpers (for tests and benchmarks)."""
        with self._lock:
            return sorted(helper.pid for helper in self._helpers)

    def close(self) -> None:
        """End the idle helpers (a later call starts new ones)."""
        with self._lock:
            idle, self._idle = self._idle, []
            for helper in idle:
                self._count_out(helper)
        for helper in idle:
            helper.kill()

    def forget(self) -> None:
        """In a forked child: close the inherited pipes without touching the parent's helpers,
        which would otherwise see no EOF when the parent dies while this child lives on."""
        for helper in list(self._helpers):
            helper.close_pipes()
            helper.usable = False
        self._lock = threading.Lock()
        self._idle, self._helpers, self._count = [], set(), 0
        self._waiters = collections.deque()

    def _take(self) -> _Helper:
        stale: list[_Helper] = []
        waiter = None
        with self._lock:
            while self._idle:
                helper = self._idle.pop()
                if helper.fresh():
                    break
                stale.append(helper)
                self._count_out(helper)
            else:
                if self._count < self.size:
                    self._count += 1
                else:
                    waiter = _Waiter()
                    self._waiters.append(waiter)
                helper = None
        for old in stale:
            old.kill()
        if helper is not None:
            return helper
        if waiter is not None:
            try:
                waiter.ready.wait()
            except BaseException:
                self._leave(waiter)
                raise
            if waiter.helper is not None:
                return waiter.helper
        # A place is ours: start a helper in it.
        try:
            helper = _Helper(self.idle_seconds)
        except BaseException:
            with self._lock:
                self._pass_on_place()
            raise
        with self._lock:
            self._helpers.add(helper)
        return helper

    def _give_back(self, helper: _Helper) -> None:
        with self._lock:
            if helper.usable:
                if self._waiters:
                    waiter = self._waiters.popleft()
                    waiter.helper = helper
                    waiter.ready.set()
                else:
                    self._idle.append(helper)
                return
            self._helpers.discard(helper)
            self._pass_on_place()
        helper.kill()

    def _leave(self, waiter: _Waiter) -> None:
        """``waiter`` was interrupted: take it out of line, or pass on what it was given."""
        with self._lock:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
                return
        if waiter.helper is not None:
            self._give_back(waiter.helper)
        else:
            with self._lock:
                self._pass_on_place()

    def _pass_on_place(self) -> None:
        """A helper's place is free: the first in line may start one (the lock is held)."""
        if self._waiters:
            self._waiters.popleft().ready.set()
        else:
            self._count -= 1

    def _count_out(self, helper: _Helper) -> None:
        """An idle ``helper`` leaves the pool (the lock is held; no one is waiting then)."""
        self._helpers.discard(helper)
        self._count -= 1


def run_once(request: Mapping[str, Any], deadline: float) -> object:
    """The result of ``request`` in a helper started for it and ended after it."""
    helper = _Helper(IDLE_SECONDS)
    try:
        return helper.call(request, deadline)
    finally:
        helper.kill()


_POOL = HelperPool()


def pool() -> HelperPool:
    """This process's pool."""
    return _POOL


def run_pooled(request: Mapping[str, Any], deadline: float) -> object:
    """The result of ``request`` in one of this process's warm helpers."""
    return _POOL.run(request, deadline)


def _after_fork_in_child() -> None:
    global _POOL
    _POOL.forget()
    _POOL = HelperPool()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(lambda: _POOL.close())
