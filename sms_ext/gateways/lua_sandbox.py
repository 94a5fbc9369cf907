"""Run admins' Lua scripts for custom HTTP gateways without trusting them.

A venue admin may attach a script that defines ``build_request(msg)`` and/or
``parse_response(resp)``. The script is untrusted code running inside our worker, so each run
gets a fresh Lua 5.4 runtime with no bridge to Python, a whitelisted environment, a memory cap,
an instruction and CPU-time budget enforced by a count hook, and bounded pattern matching (Lua's
C string functions run outside the hook). What still could slip past those in-process limits is
caught by :func:`call_script_isolated`, which runs the script in a separate helper process
(:mod:`.isolation`; warm helpers are reused, each run still gets a fresh runtime) that is killed
at a hard wall-clock deadline. Values cross the boundary as plain data only: dicts, lists,
strings, numbers, booleans and ``None``, bounded in size and depth.

Scripts also get small helpers they would otherwise have to hand-write: ``url_encode``,
``base64_encode`` (HTTP Basic auth), ``json_encode`` and ``json_decode`` in Lua, and the signing
helpers of :mod:`.lua_helpers` (``hmac_sha256_hex``, ``hmac_sha256_base64``, ``sha256_hex``,
``base64_decode``, ``now``), computed in Python behind Lua wrappers that take strings only.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any, NoReturn, cast

# Explicitly 5.4: plain `import lupa` picks the newest bundled Lua, and LuaJIT ignores
# max_memory on 64-bit and runs count hooks unreliably.
from lupa.lua54 import (
    LUA_MAXINTEGER,
    LUA_MININTEGER,
    LuaError,
    LuaMemoryError,
    LuaRuntime,
    lua_type,
)

from ..errors import LuaScriptError
from .isolation import TOO_LONG, run_once, run_pooled
from .lua_helpers import HELPERS

SCRIPT_FUNCTIONS = frozenset({"build_request", "parse_response"})
"""The global functions a script may define; nothing else is ever called."""

MAX_SCRIPT_SIZE = 64 * 1024
"""Bytes of source text; a request builder is a few dozen lines."""
MAX_MEMORY = 16 * 1024 * 1024
"""Bytes the whole Lua runtime may allocate (the sandbox itself uses about 50 KiB)."""
MAX_INSTRUCTIONS = 10_000_000
"""Lua VM instructions per run (about 0.05 s); typical scripts use a few thousand."""
MAX_CPU_SECONDS = 1.0
"""Process CPU time per run, checked with the instruction count: long string operations cost
time without costing many instructions. In a busy multi-threaded process other threads' CPU time
counts too, so this can trip early there."""
HOOK_STEP = 1000
"""Instructions between budget checks: smaller is more precise, larger is faster."""
MAX_STRING_LENGTH = 256 * 1024
"""Bytes of any one string passed in or out, and of a ``string.rep`` result."""
MAX_TOTAL_BYTES = 1024 * 1024
"""Bytes of all strings (and keys) together in one argument or one result."""
MAX_DEPTH = 20
"""Nesting of tables passed in or out (also the limit of ``json_encode``/``json_decode``)."""
MAX_ITEMS = 10_000
"""Values (table entries included) in one argument or one result."""
MAX_PATTERN_LENGTH = 256
"""Bytes of a pattern given to ``string.find/match/gmatch/gsub``."""
MAX_PATTERN_STEPS = 50_000_000
"""Worst-case backtracking steps one pattern call may need (at most about 0.3 s here); see the
prelude for the estimate."""
MAX_MESSAGE_LENGTH = 500
"""Characters of an error message shown to the admin."""
DEFAULT_DEADLINE = 2.0
"""Wall-clock seconds before an isolated run is killed; above MAX_CPU_SECONDS so that the
in-sandbox budget normally stops a script first, with the same message."""

_LIMITS = (
    "MAX_MEMORY",
    "MAX_INSTRUCTIONS",
    "MAX_CPU_SECONDS",
    "HOOK_STEP",
    "MAX_STRING_LENGTH",
    "MAX_TOTAL_BYTES",
    "MAX_DEPTH",
    "MAX_ITEMS",
    "MAX_PATTERN_LENGTH",
    "MAX_PATTERN_STEPS",
    "MAX_MESSAGE_LENGTH",
)
"""The limits above, sent with each request: a helper runs with its caller's values."""

TOO_MUCH_MEMORY = "script used too much memory"

_PRELUDE = resources.files(__package__).joinpath("lua_prelude.lua").read_bytes()
"""The Lua code that builds the sandbox (see the file's header)."""


def _deny(*_args: object) -> NoReturn:
    raise AttributeError("Python objects are not accessible from scripts")


@functools.cache
def _prelude_bytecode() -> bytes:
    """The prelude compiled once per process: loading it costs about a quarter of compiling it
    (0.15 ms against 0.6 ms a run here). Our own code, dumped by this very Lua build; scripts
    are still loaded as text only."""
    compiler = LuaRuntime(register_eval=False, register_builtins=False, encoding=None)
    return cast(bytes, compiler.eval("string.dump")(compiler.compile(_PRELUDE, name=b"=sandbox")))


def _new_sandbox() -> tuple[LuaRuntime, Callable[[bytes], Any]]:
    """A fresh runtime (about 0.25 ms with the prelude): no run can leave state for another."""
    lua = LuaRuntime(
        register_eval=False,
        register_builtins=False,
        unpack_returned_tuples=True,
        max_memory=MAX_MEMORY,
        attribute_handlers=(_deny, _deny),
        encoding=None,  # Lua strings arrive as bytes: we decode them, and say so when we cannot.
    )
    prepare = lua.compile(_prelude_bytecode(), name=b"=sandbox", mode="b")(
        MAX_INSTRUCTIONS,
        HOOK_STEP,
        MAX_CPU_SECONDS,
        MAX_STRING_LENGTH,
        MAX_DEPTH,
        MAX_PATTERN_LENGTH,
        MAX_PATTERN_STEPS,
        TOO_LONG.encode(),
        lua.table_from({name.encode(): helper for name, helper in HELPERS.items()}),
    )
    return lua, prepare


class _Totals:
    """Counts the values and bytes of one whole argument or result, which per-value limits miss:
    one long string referenced ten thousand times is small in Lua and huge in Python."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.items = 0
        self.size = 0

    def add(self, size: int = 0) -> None:
        self.items += 1
        self.size += size
        if self.items > MAX_ITEMS:
            raise LuaScriptError(f"{self.what} has more than {MAX_ITEMS} values")
        if self.size > MAX_TOTAL_BYTES:
            raise LuaScriptError(f"{self.what} holds more than {MAX_TOTAL_BYTES} bytes of text")


def _lua_text(value: str, totals: _Totals) -> bytes:
    # A lone surrogate (possible from JSON "\ud800") cannot be UTF-8: it becomes "?".
    data = value.encode("utf-8", "replace")
    if len(data) > MAX_STRING_LENGTH:
        raise LuaScriptError(f"{totals.what} has a string longer than {MAX_STRING_LENGTH} bytes")
    totals.add(len(data))
    return data


def _lua_data(value: object, depth: int, totals: _Totals) -> object:
    """``value`` as data that ``table_from`` turns into plain Lua values, never Python objects."""
    if value is None or isinstance(value, bool | float):
        totals.add()
        return value
    if isinstance(value, int):
        totals.add()
        return value if LUA_MININTEGER <= value <= LUA_MAXINTEGER else float(value)
    if isinstance(value, str):
        return _lua_text(value, totals)
    if depth >= MAX_DEPTH:
        raise LuaScriptError(f"{totals.what} is nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, Mapping):
        totals.add()
        data: dict[object, object] = {}
        for key, item in value.items():
            if isinstance(key, str):
                lua_key: object = _lua_text(key, totals)
            elif isinstance(key, int) and not isinstance(key, bool):
                lua_key = key
            else:
                raise TypeError(f"cannot pass a {type(key).__name__} key to a Lua script")
            data[lua_key] = _lua_data(item, depth + 1, totals)
        return data
    if isinstance(value, list | tuple):
        totals.add()
        return [_lua_data(item, depth + 1, totals) for item in value]
    raise TypeError(f"cannot pass a {type(value).__name__} to a Lua script")


def _python_text(data: bytes, totals: _Totals) -> str:
    if len(data) > MAX_STRING_LENGTH:
        raise LuaScriptError(f"{totals.what} has a string longer than {MAX_STRING_LENGTH} bytes")
    totals.add(len(data))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise LuaScriptError(f"{totals.what} has a string that is not valid UTF-8 text") from None


def _python_data(value: Any, depth: int, totals: _Totals) -> object:
    """A Lua value as plain Python: tables with keys 1..n become lists, other tables dicts with
    string keys (numbers as text), so a result looks the same after the JSON trip from a child."""
    if value is None or isinstance(value, bool | int | float):
        totals.add()
        return value
    if isinstance(value, bytes):
        return _python_text(value, totals)
    kind = lua_type(value)
    if kind != "table":
        raise LuaScriptError(f"{totals.what} contains a {kind}, which cannot leave the script")
    if depth >= MAX_DEPTH:
        raise LuaScriptError(
            f"{totals.what} is nested more than {MAX_DEPTH} levels deep (or contains itself)"
        )
    totals.add()
    entries = []
    for key, item in value.items():  # raw iteration: no Lua code runs
        totals.add()
        entries.append((key, item))
    keys = [key for key, _ in entries]
    if keys and all(type(key) is int for key in keys) and set(keys) == set(range(1, len(keys) + 1)):
        items = dict(entries)
        return [_python_data(items[index], depth + 1, totals) for index in range(1, len(keys) + 1)]
    result: dict[str, object] = {}
    for key, item in entries:
        if isinstance(key, bytes):
            name = _python_text(key, totals)
        elif isinstance(key, int | float) and not isinstance(key, bool):
            name = str(key)
        else:
            raise LuaScriptError(f"{totals.what} has a table key that is not a string or number")
        result[name] = _python_data(item, depth + 1, totals)
    return result


_SANDBOX_POSITION = re.compile(r"^sandbox:\d+: ")
_SCRIPT_POSITION = re.compile(r"^script:(\d+): ")


def _script_error(error: LuaError) -> LuaScriptError:
    """The admin-facing form of a Lua error: "line N: ...", or one of the limit messages."""
    if isinstance(error, LuaMemoryError):
        return LuaScriptError(TOO_MUCH_MEMORY)
    # With encoding=None lupa decodes messages as Latin-1; scripts write UTF-8.
    raw = str(error).encode("latin-1", "replace").decode("utf-8", "replace").strip()
    if not raw:  # error({...}): lupa cannot turn a table into a message
        return LuaScriptError("script raised an error without a text message")
    if raw.endswith(TOO_LONG):  # also when a helper re-raised it with a position
        return LuaScriptError(TOO_LONG)
    if raw.endswith("not enough memory"):  # caught by the script and raised again
        return LuaScriptError(TOO_MUCH_MEMORY)
    message = _SCRIPT_POSITION.sub(r"line \1: ", _SANDBOX_POSITION.sub("", raw), count=1)
    if len(message) > MAX_MESSAGE_LENGTH:
        message = message[: MAX_MESSAGE_LENGTH - 3] + "..."
    return LuaScriptError(message)


def _encode_source(source: str) -> bytes:
    data = source.encode("utf-8", "replace")
    if len(data) > MAX_SCRIPT_SIZE:
        raise LuaScriptError(f"script is larger than {MAX_SCRIPT_SIZE // 1024} KiB")
    return data


def _run(source: bytes, function: str | None, argument: object, config: object = None) -> object:
    """Load ``source`` in a fresh sandbox; with ``function`` None, list the entry points it
    defines, else call that function with ``argument`` (and ``config`` as a second argument,
    when given; both already plain data) and return its result as plain Python."""
    lua, prepare = _new_sandbox()
    try:
        env = prepare(source)
        defined: dict[str, Any] = {}
        for name in SCRIPT_FUNCTIONS:
            value = env[name.encode()]  # env has no metatable: a raw lookup
            if value is None:
                continue
            if lua_type(value) != "function":
                raise LuaScriptError(f"{name} must be a function")
            defined[name] = value
        if function is None:
            return sorted(defined)
        if function not in defined:
            return None
        arguments = [lua.table_from(argument, recursive=True)]
        if config is not None:
            arguments.append(lua.table_from(config, recursive=True))
        result = defined[function](*arguments)
        if isinstance(result, tuple):  # several return values: Lua would keep the first
            result = result[0] if result else None
        if result is None or lua_type(result) != "table":
            raise LuaScriptError(f"{function} must return a table")
        converted = _python_data(result, 0, _Totals(f"the result of {function}"))
        if not isinstance(converted, dict):
            raise LuaScriptError(f"{function} must return a table with named fields, not a list")
        return converted
    except LuaError as error:
        raise _script_error(error) from None


def _checked_call(function: str, argument: Mapping[str, object]) -> object:
    if function not in SCRIPT_FUNCTIONS:
        raise ValueError(f"unknown script function {function!r}")
    return _lua_data(argument, 0, _Totals(f"the argument of {function}"))


def _checked_config(function: str, config: Mapping[str, object] | None) -> object:
    if config is None:
        return None
    return _lua_data(config, 0, _Totals(f"the cfg of {function}"))


def _to_wire(value: object) -> object:
    """Plain Lua-bound data (from :func:`_lua_data`) as JSON: strings as text, and each table
    key tagged "s" (string) or "i" (integer), since JSON keys are all strings."""
    if isinstance(value, bytes):
        return value.decode()  # _lua_text made it valid UTF-8
    if isinstance(value, dict):
        return {
            ("s" + key.decode() if isinstance(key, bytes) else f"i{key}"): _to_wire(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_to_wire(item) for item in value]
    return value


def _from_wire(value: object) -> object:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, dict):
        return {
            (key[1:].encode() if key[0] == "s" else int(key[1:])): _from_wire(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_from_wire(item) for item in value]
    return value


def _request(
    data: bytes, function: str | None, argument: object, deadline: float, config: object = None
) -> dict[str, object]:
    return {
        "source": data.decode(),  # _encode_source made it valid UTF-8
        "function": function,
        "argument": _to_wire(argument),
        "config": _to_wire(config),
        "limits": {name: globals()[name] for name in _LIMITS},
        "deadline": deadline,
    }


def serve(request: Mapping[str, Any]) -> object:
    """Run one request of :func:`check_script` or :func:`call_script_isolated`; called in the
    helper process (:mod:`.lua_worker`), which runs nothing else at the same time."""
    globals().update({name: request["limits"][name] for name in _LIMITS})
    source = str(request["source"]).encode()
    config = request.get("config")
    return _run(
        source,
        request["function"],
        _from_wire(request["argument"]),
        None if config is None else _from_wire(config),
    )


def check_script(source: str) -> set[str]:
    """Compile ``source`` and run its main chunk to learn which entry points it defines.

    Meant for the admin form that saves a script, i.e. inside a web request: the run happens in
    a helper process with a hard deadline, because the in-process limits cannot interrupt C
    code. The helper is started for this run and ended after it (about 70 ms more than a warm
    one): a web process keeps no idle helpers, and is never forked while it runs threads.

    :raises LuaScriptError: too large, does not compile, or fails while defining its functions.
    """
    data = _encode_source(source)
    names = run_once(_request(data, None, None, DEFAULT_DEADLINE), DEFAULT_DEADLINE)
    return set(cast("list[str]", names))


def call_script_isolated(
    source: str,
    function: str,
    argument: Mapping[str, object],
    *,
    config: Mapping[str, object] | None = None,
    deadline: float = DEFAULT_DEADLINE,
) -> object | None:
    """Run ``function`` of ``source`` with ``argument`` in a fresh sandbox, in one of this
    process's warm helper processes (:mod:`.isolation`), killed after ``deadline`` wall-clock
    seconds of running it (the in-sandbox limits cannot interrupt Lua's C library, so the
    process is the hard guard). Thread-safe; waiting for a free helper does not count.

    :param function: ``"build_request"`` or ``"parse_response"``.
    :param argument: plain data (str, int, float, bool, None, mappings with str keys, lists).
    :param config: plain data passed as the function's second argument (the gateway's ``cfg``).
    :return: the function's table as a dict (through JSON), or ``None`` when the script does
        not define it.
    :raises LuaScriptError: the script failed, returned something unusable, hit a limit, or
        ``"script ran too long"`` on the deadline.
    """
    if deadline <= 0:
        raise ValueError("deadline must be positive")
    data = _encode_source(source)
    plain = _checked_call(function, argument)
    plain_config = _checked_config(function, config)
    return run_pooled(_request(data, function, plain, deadline, plain_config), deadline)
