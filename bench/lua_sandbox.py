"""What a Lua-built request costs per message: a forked child per run against warm helpers.

Runs the tests' ``GATEWAY_SCRIPT`` ``build_request`` (JSON body, URL encoding, Basic auth) for a
typical message three ways, in one process that has imported the whole extension, as a worker
has (a fork's cost grows with the parent):

- ``fork per call``: the previous path exactly, a child forked for every run, whose fresh
  sandbox compiles the prelude from source (both copied here: the extension no longer has them);
- ``pooled helper``: :func:`sms_ext.gateways.lua_sandbox.call_script_isolated` today, warm
  helper processes reused, a fresh Lua runtime per run, its prelude loaded from bytecode;
- ``in process``: today's run with no process boundary at all (no hard deadline), the floor.

Each is timed single-threaded and from 16 threads at once (every call's own latency; median and
p99). Then the fresh sandbox alone (prelude compiled against loaded), the admin form's
``check_script`` (fork against a helper started for the run), and the memory of the helpers.

    .venv/bin/python bench/lua_sandbox.py [--calls 1000] [--threads 16]
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import resource
import select
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script: make sms_ext and tests importable

from lupa.lua54 import LuaRuntime  # noqa: E402

import sms_ext  # noqa: E402, F401  (everything a worker has loaded)
from sms_ext.errors import LuaScriptError  # noqa: E402
from sms_ext.gateways import isolation, lua_sandbox  # noqa: E402
from tests.test_lua_sandbox import GATEWAY_SCRIPT, MESSAGE  # noqa: E402


def fork_per_call(work: Callable[[], object], deadline: float) -> object:
    """The previous ``run_isolated``: fork, run ``work`` in the child, read its JSON answer
    through a pipe until the deadline, SIGKILL it past the deadline, reap it."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            gc.disable()
            os.close(read_end)
            seconds = math.ceil(deadline) + 1
            resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds))
            try:
                answer = {"result": work()}
            except LuaScriptError as error:
                answer = {"error": str(error)}
            view = memoryview(json.dumps(answer).encode())
            while view:
                view = view[os.write(write_end, view) :]
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    reply: bytes | None = None
    try:
        poller = select.poll()
        poller.register(read_end, select.POLLIN)
        chunks: list[bytes] = []
        deadline_at = time.monotonic() + deadline
        while True:
            remaining = deadline_at - time.monotonic()
            if remaining <= 0 or not poller.poll(math.ceil(remaining * 1000)):
                break
            chunk = os.read(read_end, 65536)
            if not chunk:
                reply = b"".join(chunks)
                break
            chunks.append(chunk)
    finally:
        os.close(read_end)
        if reply is None:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    if not reply:
        raise LuaScriptError("script ran too long" if reply is None else "runner died")
    answer = json.loads(reply)
    if "error" in answer:
        raise LuaScriptError(answer["error"])
    return answer["result"]


def compiled_sandbox() -> tuple[LuaRuntime, Callable[[bytes], Any]]:
    """The previous ``_new_sandbox``: the prelude compiled from source for every run."""
    lua = LuaRuntime(
        register_eval=False,
        register_builtins=False,
        unpack_returned_tuples=True,
        max_memory=lua_sandbox.MAX_MEMORY,
        attribute_handlers=(lua_sandbox._deny, lua_sandbox._deny),
        encoding=None,
    )
    prepare = lua.compile(lua_sandbox._PRELUDE, name=b"=sandbox")(
        lua_sandbox.MAX_INSTRUCTIONS,
        lua_sandbox.HOOK_STEP,
        lua_sandbox.MAX_CPU_SECONDS,
        lua_sandbox.MAX_STRING_LENGTH,
        lua_sandbox.MAX_DEPTH,
        lua_sandbox.MAX_PATTERN_LENGTH,
        lua_sandbox.MAX_PATTERN_STEPS,
        lua_sandbox.TOO_LONG.encode(),
    )
    return lua, prepare


def previous_run(data: bytes, function: str | None, argument: object) -> object:
    """``_run`` as it was: only ever called in a forked child, so patching is safe."""
    lua_sandbox._new_sandbox = compiled_sandbox
    return lua_sandbox._run(data, function, argument)


def forked_build_request() -> object:
    data = lua_sandbox._encode_source(GATEWAY_SCRIPT)
    plain = lua_sandbox._checked_call("build_request", MESSAGE)
    return fork_per_call(
        lambda: previous_run(data, "build_request", plain), lua_sandbox.DEFAULT_DEADLINE
    )


def pooled_build_request() -> object:
    return lua_sandbox.call_script_isolated(GATEWAY_SCRIPT, "build_request", MESSAGE)


def in_process_build_request() -> object:
    data = lua_sandbox._encode_source(GATEWAY_SCRIPT)
    plain = lua_sandbox._checked_call("build_request", MESSAGE)
    return json.loads(json.dumps(lua_sandbox._run(data, "build_request", plain)))


def forked_check() -> set[str]:
    data = lua_sandbox._encode_source(GATEWAY_SCRIPT)
    names = fork_per_call(lambda: previous_run(data, None, None), lua_sandbox.DEFAULT_DEADLINE)
    return set(cast("list[str]", names))


def without_result(call: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        call()

    return run


def timed(call: Callable[[], object], count: int, threads: int, expected: object) -> list[float]:
    """Milliseconds of each of ``count`` calls made from ``threads`` threads at once."""
    per_thread = max(1, count // threads)
    results: list[list[float]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads)
    failures: list[BaseException] = []

    def loop(times: list[float]) -> None:
        try:
            start.wait()
            for _ in range(per_thread):
                began = time.perf_counter()
                result = call()
                times.append((time.perf_counter() - began) * 1000)
                if result != expected:
                    raise AssertionError(f"wrong result: {result!r}")
        except BaseException as error:
            failures.append(error)

    workers = [threading.Thread(target=loop, args=(times,)) for times in results]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if failures:
        raise failures[0]
    return [ms for times in results for ms in times]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)]


def memory_kib(pid: int, field: str) -> int:
    """VmRSS from /proc/PID/status, or Pss from /proc/PID/smaps_rollup (shared pages split)."""
    name = "smaps_rollup" if field == "Pss" else "status"
    for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=1000, help="calls per way and mode")
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()

    expected = in_process_build_request()
    ways = {
        "fork per call": forked_build_request,
        "pooled helper": pooled_build_request,
        "in process": in_process_build_request,
    }
    for call in ways.values():  # warm up: helpers started, caches filled
        timed(call, args.threads * 4, args.threads, expected)

    print(
        f"build_request of GATEWAY_SCRIPT, {args.calls} calls per row, "
        f"{os.cpu_count()} CPUs, parent RSS {memory_kib(os.getpid(), 'VmRSS') // 1024} MiB"
    )
    print(f"{'way':<15} {'threads':>7} {'median ms':>10} {'p99 ms':>8} {'calls/s':>8}")
    for threads in (1, args.threads):
        for name, call in ways.items():
            began = time.perf_counter()
            times = timed(call, args.calls, threads, expected)
            rate = len(times) / (time.perf_counter() - began)
            print(
                f"{name:<15} {threads:>7} {statistics.median(times):>10.3f} "
                f"{percentile(times, 0.99):>8.3f} {rate:>8.0f}"
            )

    print("\nfresh sandbox, single-threaded, in process")
    for name, make in (
        ("prelude compiled (before)", compiled_sandbox),
        ("prelude from bytecode", lua_sandbox._new_sandbox),
    ):
        times = timed(without_result(make), args.calls, 1, None)
        print(f"{name:<26} median {statistics.median(times):.3f} ms")

    names = {"build_request", "parse_response"}
    checks = {
        "fork per call": forked_check,
        "helper per check": lambda: lua_sandbox.check_script(GATEWAY_SCRIPT),
    }
    print("\ncheck_script (admin form), single-threaded, 50 calls")
    for name, call in checks.items():
        times = timed(call, 50, 1, names)
        median, p99 = statistics.median(times), percentile(times, 0.99)
        print(f"{name:<17} median {median:.1f} ms, p99 {p99:.1f} ms")

    pids = isolation.pool().pids()
    rss = [memory_kib(pid, "VmRSS") for pid in pids]
    pss = [memory_kib(pid, "Pss") for pid in pids]
    print(
        f"\nhelpers: {len(pids)} (pool size {isolation.POOL_SIZE}); RSS each "
        f"{', '.join(f'{kib / 1024:.1f}' for kib in rss)} MiB (PSS {sum(pss) / 1024:.1f} MiB "
        "together); a forked child shares its parent's pages until it exits"
    )


if __name__ == "__main__":
    main()
