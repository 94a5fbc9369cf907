"""Run admins' Lua scripts for custom HTTP gateways without trusting them.

A venue admin may attach a script that defines ``build_request(msg)`` and/or
``parse_response(resp)``. The script is untrusted code running inside our worker, so each run
gets a fresh Lua 5.4 runtime with no bridge to Python, a whitelisted environment, a memory cap,
an instruction and CPU-time budget enforced by a count hook, and bounded pattern matching (Lua's
C string functions run outside the hook). What still could slip past those in-process limits is
caught by :func:`call_script_isolated`, which runs the script in a forked child that is killed
at a hard wall-clock deadline. Values cross the boundary as plain data only: dicts, lists,
strings, numbers, booleans and ``None``, bounded in size and depth.

Scripts also get small helpers they would otherwise have to hand-write: ``url_encode``,
``base64_encode`` (HTTP Basic auth), ``json_encode`` and ``json_decode``.
"""

from __future__ import annotations

import gc
import json
import math
import os
import re
import resource
import select
import signal
import time
import traceback
from collections.abc import Callable, Mapping
from typing import NoReturn

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

SCRIPT_FUNCTIONS = frozenset({"build_request", "parse_response"})
"""The global functions a script may define; nothing else is ever called."""

MAX_SCRIPT_SIZE = 64 * 1024
"""Bytes of source text; a request builder is a few dozen lines."""
MAX_MEMORY = 16 * 1024 * 1024
"""Bytes the whole Lua runtime may allocate (the sandbox itself uses about 100 KiB)."""
MAX_INSTRUCTIONS = 10_000_000
"""Lua VM instructions per run (about 0.05 s); typical scripts use a few thousand."""
MAX_CPU_SECONDS = 1.0
"""Process CPU time per run, checked with the instruction count: long string operations cost
time without costing many instructions. In a busy multi-threaded process other threads' CPU time
counts too, so this can trip early there, never late."""
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
"""Worst-case backtracking steps one pattern call may need (about 0.2 s); see the prelude."""
MAX_MESSAGE_LENGTH = 500
"""Characters of an error message shown to the admin."""
DEFAULT_DEADLINE = 2.0
"""Wall-clock seconds before an isolated run is killed; above MAX_CPU_SECONDS so that the
in-sandbox budget normally stops a script first, with the same message."""

TOO_LONG = "script ran too long"
TOO_MUCH_MEMORY = "script used too much memory"

# The prelude runs once in each fresh runtime with the full standard library, before any script
# code. It keeps private references to what it needs, hardens the string table shared with every
# string value, builds the script's environment and returns the function that loads a script.
_PRELUDE = r"""
local MAX_INSTRUCTIONS, HOOK_STEP, MAX_CPU_SECONDS, MAX_STRING_LENGTH, MAX_DEPTH,
      MAX_PATTERN_LENGTH, MAX_PATTERN_STEPS, TOO_LONG = ...

local debug_sethook, clock, load, os = debug.sethook, os.clock, load, os
local error, ipairs, next, pcall, tonumber, tostring, type =
      error, ipairs, next, pcall, tonumber, tostring, type
local s_byte, s_find, s_format, s_gmatch, s_gsub, s_match, s_rep, s_sub =
      string.byte, string.find, string.format, string.gmatch, string.gsub, string.match,
      string.rep, string.sub
local t_concat, t_sort, math_type, huge = table.concat, table.sort, math.type, math.huge
local utf8_char, co_create, co_wrap = utf8.char, coroutine.create, coroutine.wrap
local main_thread = coroutine.running()

---------------------------------------------------------------------------------------------
-- Budget. Once spent, the hook errors on every instruction of every thread it reaches, so a
-- pcall that catches the first error cannot keep the script going.
local used, exhausted, deadline = 0, false, huge
local hook

local function exhaust()
  if not exhausted then
    exhausted = true
    debug_sethook(main_thread, hook, "", 1)
  end
  debug_sethook(hook, "", 1)
  error(TOO_LONG, 0)
end

hook = function()
  used = used + HOOK_STEP
  if exhausted or used > MAX_INSTRUCTIONS or clock() > deadline then exhaust() end
end

-- For C functions whose cost grows with their input: a loop of them costs few instructions.
local function check_clock()
  if exhausted or clock() > deadline then exhaust() end
end

-- New coroutines start without a hook: install it before the body runs.
local function hooked(body)
  if type(body) ~= "function" then return body end  -- create/wrap report the error
  return function(...)
    debug_sethook(hook, "", exhausted and 1 or HOOK_STEP)
    return body(...)
  end
end

---------------------------------------------------------------------------------------------
-- Pattern matching runs in C, where the hook never fires, and backtracks: with k repeated
-- items (x*, x+, x-, %b, back-references) a match may try every way of splitting n bytes among
-- them, C(n + k, k) ways at each of n start positions. Refuse calls whose worst case is too big.

-- Index just past the set that starts with "[" at i (same rules as Lua's classEnd).
local function skip_set(pattern, i)
  i = i + 1
  if s_sub(pattern, i, i) == "^" then i = i + 1 end
  repeat
    if s_sub(pattern, i, i) == "%" then i = i + 1 end
    i = i + 1
  until i > #pattern or s_sub(pattern, i, i) == "]"
  return i + 1
end

local function pattern_steps(subject_length, pattern, anchorable)
  local repeats, optionals, i = 0, 0, 1
  local anchored = anchorable and s_sub(pattern, 1, 1) == "^"
  if anchored then i = 2 end
  while i <= #pattern do
    local c, item_end = s_sub(pattern, i, i), nil
    if c == "%" then
      local class = s_sub(pattern, i + 1, i + 1)
      if class == "b" then repeats, i = repeats + 1, i + 4
      elseif class == "f" then i = skip_set(pattern, i + 2)
      elseif s_find(class, "^%d") then repeats, i = repeats + 1, i + 2
      else item_end = i + 2 end
    elseif c == "[" then item_end = skip_set(pattern, i)
    elseif c == "(" or c == ")" then i = i + 1
    else item_end = i + 1 end
    if item_end then
      local quantifier = s_sub(pattern, item_end, item_end)
      if quantifier == "*" or quantifier == "+" or quantifier == "-" then
        repeats, i = repeats + 1, item_end + 1
      elseif quantifier == "?" then
        optionals, i = optionals + 1, item_end + 1
      else
        i = item_end
      end
    end
  end
  local steps = 2.0 ^ optionals
  for r = 1, repeats do steps = steps * (subject_length + r) / r end
  if not anchored then steps = steps * (subject_length + 1) end
  return steps
end

-- Raises at level 3: the script line that called the string function.
local function check_pattern_call(name, subject, pattern, anchorable, plain)
  local subject_type, pattern_type = type(subject), type(pattern)
  if subject_type ~= "string" and subject_type ~= "number" then
    error(s_format("bad argument #1 to '%s' (string expected, got %s)", name, subject_type), 3)
  end
  if pattern_type ~= "string" and pattern_type ~= "number" then
    error(s_format("bad argument #2 to '%s' (string expected, got %s)", name, pattern_type), 3)
  end
  check_clock()
  if subject_type == "string" and pattern_type == "string" then  -- numbers are short
    if #pattern > MAX_PATTERN_LENGTH then
      error(s_format("%s: pattern is longer than %d bytes", name, MAX_PATTERN_LENGTH), 3)
    end
    if not plain and pattern_steps(#subject, pattern, anchorable) > MAX_PATTERN_STEPS then
      error(s_format("%s: pattern too complex for a %d-byte string: use fewer repetitions "
        .. "(*, +, -) per pattern, anchor it with ^, or match a shorter string",
        name, #subject), 3)
    end
  end
end

-- The real string table is also every string's method table ("x"):find, so change it in place.
string.dump = nil  -- bytecode can be crafted to break out of the VM
string.find = function(s, pattern, init, plain)
  check_pattern_call("find", s, pattern, true, plain)
  return s_find(s, pattern, init, plain)
end
string.match = function(s, pattern, init)
  check_pattern_call("match", s, pattern, true)
  return s_match(s, pattern, init)
end
string.gmatch = function(s, pattern, init)
  check_pattern_call("gmatch", s, pattern, false)
  return s_gmatch(s, pattern, init)
end
string.gsub = function(s, pattern, replacement, max)
  check_pattern_call("gsub", s, pattern, true)
  return s_gsub(s, pattern, replacement, max)
end
string.rep = function(s, count, separator)
  if math_type(count) and count > 0
      and #tostring(s) * count + #tostring(separator or "") * (count - 1) > MAX_STRING_LENGTH then
    error(s_format("string.rep: result would be longer than %d bytes", MAX_STRING_LENGTH), 2)
  end
  check_clock()
  return s_rep(s, count, separator)
end

---------------------------------------------------------------------------------------------
-- Helpers for scripts. They use the original string functions with fixed, linear patterns.

-- Run f under pcall so that its own errors point at the script line that called the helper.
local function reported_at_caller(name, f)
  local prefix = name .. ": "
  return function(...)
    local ok, result = pcall(f, ...)
    if ok then return result end
    if type(result) == "string" and s_sub(result, 1, #prefix) == prefix then error(result, 2) end
    error(result, 0)
  end
end

local function text_argument(name, value)
  if type(value) == "number" then return tostring(value) end
  if type(value) ~= "string" then
    error(s_format("%s: expected a string, got %s", name, type(value)), 3)
  end
  return value
end

-- RFC 3986: everything but unreserved characters, byte by byte.
local function url_encode(value)
  local s = text_argument("url_encode", value)
  return (s_gsub(s, "[^A-Za-z0-9%-._~]", function(c) return s_format("%%%02X", s_byte(c)) end))
end

local BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64_encode(value)
  local s, out = text_argument("base64_encode", value), {}
  for i = 1, #s, 3 do
    local a, b, c = s_byte(s, i, i + 2)
    local bits = (a << 16) | ((b or 0) << 8) | (c or 0)
    local digits = {}
    for d = 1, 4 do
      local index = (bits >> (24 - 6 * d)) & 63
      digits[d] = s_sub(BASE64, index + 1, index + 1)
    end
    if not b then digits[3] = "=" end
    if not c then digits[4] = "=" end
    out[#out + 1] = t_concat(digits)
  end
  return t_concat(out)
end

local JSON_ESCAPES = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n",
  ["\r"] = "\\r", ["\t"] = "\\t",
}

local function json_string(s)
  return '"' .. s_gsub(s, '[%z\1-\31"\\]', function(c)
    return JSON_ESCAPES[c] or s_format("\\u%04x", s_byte(c))
  end) .. '"'
end

-- A table is a JSON array when its keys are exactly 1..n (n > 0); anything else is an object,
-- with keys sorted so that the same table always gives the same text (signatures, tests).
local function json_encode_value(value, depth, out)
  local kind = type(value)
  if kind == "string" then
    out[#out + 1] = json_string(value)
  elseif kind == "number" then
    if value ~= value or value == huge or value == -huge then
      error("json_encode: cannot encode " .. tostring(value), 0)
    end
    local text = math_type(value) == "integer" and s_format("%d", value) or s_format("%.14g", value)
    if tonumber(text) ~= value then text = s_format("%.17g", value) end
    out[#out + 1] = text
  elseif kind == "boolean" or kind == "nil" then
    out[#out + 1] = value == nil and "null" or tostring(value)
  elseif kind == "table" then
    if depth >= MAX_DEPTH then
      error("json_encode: tables nested too deeply (or a table contains itself)", 0)
    end
    local count = 0
    for _ in next, value do count = count + 1 end
    local is_array = count > 0
    for i = 1, count do
      if value[i] == nil then is_array = false break end
    end
    if is_array then
      out[#out + 1] = "["
      for i = 1, count do
        if i > 1 then out[#out + 1] = "," end
        json_encode_value(value[i], depth + 1, out)
      end
      out[#out + 1] = "]"
    else
      local keys, by_name = {}, {}
      for key, item in next, value do
        local key_type = type(key)
        if key_type ~= "string" and key_type ~= "number" then
          error("json_encode: object keys must be strings or numbers, not " .. key_type, 0)
        end
        local name = tostring(key)
        keys[#keys + 1], by_name[name] = name, item
      end
      t_sort(keys)
      out[#out + 1] = "{"
      for i, name in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = json_string(name) .. ":"
        json_encode_value(by_name[name], depth + 1, out)
      end
      out[#out + 1] = "}"
    end
  else
    error("json_encode: cannot encode a " .. kind, 0)
  end
end

local function json_encode(value)
  local out = {}
  json_encode_value(value, 0, out)
  return t_concat(out)
end

local JSON_UNESCAPES = {
  ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t",
}

local function json_fail(message, pos)
  error(s_format("json_decode: %s at byte %d", message, pos), 0)
end

local function skip_space(text, pos)
  local _, last = s_find(text, "^[ \t\r\n]*", pos)
  return last + 1
end

-- pos is at the backslash of \uXXXX; a surrogate pair becomes one character.
local function json_unicode(text, pos)
  local hex = s_match(text, "^\\u(%x%x%x%x)", pos)
  if not hex then json_fail("invalid \\u escape", pos) end
  local code = tonumber(hex, 16)
  if code >= 0xD800 and code <= 0xDBFF then
    local low = s_match(text, "^\\u([dD][c-fC-F]%x%x)", pos + 6)
    if low then return 0x10000 + ((code - 0xD800) << 10) + (tonumber(low, 16) - 0xDC00), pos + 12 end
  end
  if code >= 0xD800 and code <= 0xDFFF then code = 0xFFFD end  -- a lone surrogate is not text
  return code, pos + 6
end

-- pos is just after the opening quote.
local function json_string_value(text, pos)
  local parts = {}
  while true do
    local stop = s_find(text, '["\\%z\1-\31]', pos)
    if not stop then json_fail("unterminated string", pos) end
    parts[#parts + 1] = s_sub(text, pos, stop - 1)
    local c = s_sub(text, stop, stop)
    if c == '"' then return t_concat(parts), stop + 1 end
    if c ~= "\\" then json_fail("control character in string", stop) end
    local escape = s_sub(text, stop + 1, stop + 1)
    if escape == "u" then
      local code
      code, pos = json_unicode(text, stop)
      parts[#parts + 1] = utf8_char(code)
    else
      parts[#parts + 1] = JSON_UNESCAPES[escape] or json_fail("invalid escape", stop)
      pos = stop + 2
    end
  end
end

-- Returns the value starting at pos (null is nil) and the position after it.
local function json_value(text, pos, depth)
  if depth >= MAX_DEPTH then json_fail("nested too deeply", pos) end
  pos = skip_space(text, pos)
  local c = s_sub(text, pos, pos)
  if c == "{" then
    local object = {}
    pos = skip_space(text, pos + 1)
    if s_sub(text, pos, pos) == "}" then return object, pos + 1 end
    while true do
      if s_sub(text, pos, pos) ~= '"' then json_fail("expected a string key", pos) end
      local key
      key, pos = json_string_value(text, pos + 1)
      pos = skip_space(text, pos)
      if s_sub(text, pos, pos) ~= ":" then json_fail("expected ':'", pos) end
      object[key], pos = json_value(text, pos + 1, depth + 1)
      pos = skip_space(text, pos)
      c = s_sub(text, pos, pos)
      if c == "}" then return object, pos + 1 end
      if c ~= "," then json_fail("expected ',' or '}'", pos) end
      pos = skip_space(text, pos + 1)
    end
  elseif c == "[" then
    local array, n = {}, 0
    pos = skip_space(text, pos + 1)
    if s_sub(text, pos, pos) == "]" then return array, pos + 1 end
    while true do
      n = n + 1
      array[n], pos = json_value(text, pos, depth + 1)
      pos = skip_space(text, pos)
      c = s_sub(text, pos, pos)
      if c == "]" then return array, pos + 1 end
      if c ~= "," then json_fail("expected ',' or ']'", pos) end
      pos = pos + 1
    end
  elseif c == '"' then
    return json_string_value(text, pos + 1)
  end
  local number = s_match(text, "^-?%d[%d.eE+-]*", pos)
  if number then
    return tonumber(number) or json_fail("invalid number", pos), pos + #number
  end
  if s_sub(text, pos, pos + 3) == "true" then return true, pos + 4 end
  if s_sub(text, pos, pos + 4) == "false" then return false, pos + 5 end
  if s_sub(text, pos, pos + 3) == "null" then return nil, pos + 4 end
  json_fail(pos > #text and "unexpected end" or "unexpected character", pos)
end

local function json_decode(text)
  if type(text) ~= "string" then error("json_decode: expected a string, got " .. type(text), 0) end
  local value, pos = json_value(text, 1, 0)
  if skip_space(text, pos) <= #text then json_fail("unexpected text after the value", pos) end
  return value
end

---------------------------------------------------------------------------------------------
-- The script's environment: only what cannot reach outside the runtime or run unbounded.
-- Metatables are left out on purpose: __gc finalizers run with hooks off, weak tables make the
-- collector do unbounded work, and __len drives C loops in table.insert/remove.

local function pick(library, names)
  local picked = {}
  for name in s_gmatch(names, "%S+") do picked[name] = library[name] end
  return picked
end

local function sandbox_env()
  local checked_table = pick(table, "insert pack remove unpack")
  checked_table.concat = function(...) check_clock() return t_concat(...) end
  checked_table.sort = function(...) check_clock() return t_sort(...) end
  local checked_coroutine = pick(coroutine, "close isyieldable resume running status yield")
  checked_coroutine.create = function(body) return co_create(hooked(body)) end
  checked_coroutine.wrap = function(body) return co_wrap(hooked(body)) end
  return {
    string = pick(string, "byte char find format gmatch gsub len lower match rep reverse sub upper"),
    table = checked_table,
    math = pick(math, "abs acos asin atan ceil cos exp floor fmod huge log max maxinteger min "
      .. "mininteger modf pi random randomseed sin sqrt tan tointeger type ult"),
    utf8 = pick(utf8, "char charpattern codepoint codes len offset"),
    os = pick(os, "clock date time"),
    coroutine = checked_coroutine,
    assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs, pcall = pcall,
    rawequal = rawequal, rawget = rawget, rawlen = rawlen, rawset = rawset, select = select,
    tonumber = tonumber, tostring = tostring, type = type, xpcall = xpcall, _VERSION = _VERSION,
    url_encode = url_encode,
    base64_encode = base64_encode,
    json_encode = reported_at_caller("json_encode", json_encode),
    json_decode = reported_at_caller("json_decode", json_decode),
  }
end

-- Nothing below needs these any more; the script cannot reach _G, but leave nothing behind.
-- Without debug.traceback lupa also stops appending tracebacks to error messages.
for _, name in ipairs({"python", "debug", "load", "loadfile", "dofile", "require", "package",
                       "io", "os", "collectgarbage", "print"}) do
  _G[name] = nil
end

-- Load the script as text (bytecode is refused), run its main chunk on the budget and return
-- its environment, from which the caller takes the entry points.
return function(source)
  local env = sandbox_env()
  local chunk, message = load(source, "=script", "t", env)
  if not chunk then error(message, 0) end
  deadline = clock() + MAX_CPU_SECONDS
  debug_sethook(hook, "", HOOK_STEP)
  chunk()
  return env
end
"""


class LuaScriptError(Exception):
    """A script could not be compiled or run; the message is meant for the admin who wrote it."""


def _deny(*_args: object) -> NoReturn:
    raise AttributeError("Python objects are not accessible from scripts")


def _new_sandbox() -> tuple[LuaRuntime, Callable[[bytes], object]]:
    """A fresh runtime (about 0.1 ms): scripts never share state, so no run can poison another."""
    lua = LuaRuntime(
        register_eval=False,
        register_builtins=False,
        unpack_returned_tuples=True,
        max_memory=MAX_MEMORY,
        attribute_handlers=(_deny, _deny),
        encoding=None,  # Lua strings arrive as bytes: we decode them, and say so when we cannot.
    )
    prepare = lua.compile(_PRELUDE.encode(), name=b"=sandbox")(
        MAX_INSTRUCTIONS,
        HOOK_STEP,
        MAX_CPU_SECONDS,
        MAX_STRING_LENGTH,
        MAX_DEPTH,
        MAX_PATTERN_LENGTH,
        MAX_PATTERN_STEPS,
        TOO_LONG.encode(),
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


def _python_data(value: object, depth: int, totals: _Totals) -> object:
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
        return LuaScriptError("script raised an error that is not a string")
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


def _run(source: bytes, function: str | None, argument: object) -> object:
    """Load ``source`` in a fresh sandbox; with ``function`` None, list the entry points it
    defines, else call that function with ``argument`` (already plain data) and return its
    result as plain Python."""
    lua, prepare = _new_sandbox()
    try:
        env = prepare(source)
        defined = {}
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
        result = defined[function](lua.table_from(argument, recursive=True))
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


def check_script(source: str) -> set[str]:
    """Compile ``source`` and run its main chunk to learn which entry points it defines.

    Meant for the admin form that saves a script, i.e. inside a web request: the run happens in
    a child process with a hard deadline, because the in-process limits cannot interrupt C code.

    :raises LuaScriptError: too large, does not compile, or fails while defining its functions.
    """
    data = _encode_source(source)
    names = _in_child(lambda: _run(data, None, None), DEFAULT_DEADLINE)
    assert isinstance(names, list)
    return set(names)


def call_script(source: str, function: str, argument: Mapping[str, object]) -> object | None:
    """Run ``function`` of ``source`` with ``argument`` in a fresh sandbox, in this process.

    Cheap (a fraction of a millisecond) but guarded only by the in-sandbox limits: use it where
    a stuck process is survivable (a worker with its own watchdog), and
    :func:`call_script_isolated` elsewhere.

    :param function: ``"build_request"`` or ``"parse_response"``.
    :param argument: plain data (str, int, float, bool, None, mappings with str keys, lists).
    :return: the function's table as a dict, or ``None`` when the script does not define it.
    :raises LuaScriptError: the script failed, returned something unusable, or hit a limit.
    """
    data = _encode_source(source)
    return _run(data, function, _checked_call(function, argument))


def call_script_isolated(
    source: str,
    function: str,
    argument: Mapping[str, object],
    *,
    deadline: float = DEFAULT_DEADLINE,
) -> object | None:
    """Like :func:`call_script`, in a forked child killed after ``deadline`` wall-clock seconds.

    The result comes back as JSON, so it equals what :func:`call_script` returns.

    :raises LuaScriptError: as :func:`call_script`; ``"script ran too long"`` on the deadline.
    """
    if deadline <= 0:
        raise ValueError("deadline must be positive")
    data = _encode_source(source)
    plain = _checked_call(function, argument)
    return _in_child(lambda: _run(data, function, plain), deadline)


def _in_child(work: Callable[[], object], deadline: float) -> object:
    """Run ``work`` in a forked child and return its result, or raise the LuaScriptError it
    raised; SIGKILL the child if it has not answered after ``deadline`` seconds."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        _child(work, read_end, write_end, deadline)
    os.close(write_end)
    try:
        reply = _read_until(read_end, time.monotonic() + deadline)
    finally:
        os.close(read_end)
    if reply is None:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise LuaScriptError(TOO_LONG)
    _, status = os.waitpid(pid, 0)
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
    chunks = []
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
