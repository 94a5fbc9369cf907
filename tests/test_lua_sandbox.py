"""The Lua sandbox against real lupa: what scripts can do, and every way out we know of."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import os
import resource
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from lupa.lua54 import LuaRuntime

from sms_ext.gateways import isolation, lua_sandbox
from sms_ext.gateways.isolation import TOO_LONG
from sms_ext.gateways.lua_sandbox import LuaScriptError, call_script_isolated, check_script

MESSAGE = {
    "to": "+27831234567",
    "phone_digits": "27831234567",
    "message": 'Your code is 1234 "now" 😀',
    "reference": "42",
    "api_key": "key",
    "api_secret": "s3cret",
    "from_number": "Venue",
    "url": "https://api.example.com/send",
    "method": "POST",
    "payload": "",
}

GATEWAY_SCRIPT = """
function build_request(msg)
  local body = json_encode({to = msg.phone_digits, text = msg.message, ref = msg.reference})
  return {
    method = "POST",
    url = msg.url .. "?from=" .. url_encode(msg.from_number),
    headers = {
      ["Authorization"] = "Basic " .. base64_encode(msg.api_key .. ":" .. msg.api_secret),
      ["Content-Type"] = "application/json",
    },
    body = body,
  }
end

function parse_response(resp)
  local data = resp.json or {}
  if resp.status == 200 and data.status == "queued" then
    return {ok = true, id = data.messages[1].id}
  end
  return {ok = false, error = data.error or resp.body, retryable = resp.status >= 500}
end
"""


def returning(expression: str) -> str:
    """A script whose build_request returns ``{value = <expression>}``."""
    return f"function build_request(msg)\n  return {{value = {expression}}}\nend\n"


def lua_string(text: str) -> str:
    """A Lua string literal for printable text (JSON's escapes for quotes and backslashes)."""
    return json.dumps(text, ensure_ascii=False)


SANDBOX_ONLY = 30.0
"""A deadline the in-sandbox limits always beat: what stops a script is then the sandbox."""


def run_script(source: str, function: str, argument: dict) -> object:
    """Run a script the way gateways do (:func:`call_script_isolated`), with a deadline long
    enough that only the in-sandbox limits can stop it."""
    return call_script_isolated(source, function, argument, deadline=SANDBOX_ONLY)


def value_of(expression: str) -> object:
    result = run_script(returning(expression), "build_request", MESSAGE)
    assert isinstance(result, dict)
    return result.get("value")


def script_error(source: str, function: str = "build_request") -> str:
    with pytest.raises(LuaScriptError) as caught:
        run_script(source, function, MESSAGE)
    return str(caught.value)


def cpu_seconds() -> float:
    """CPU time of this process and of its ended children (the script runners)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


# --- what scripts are for ---------------------------------------------------------------------


def test_build_request_returns_the_request_table() -> None:
    request = run_script(GATEWAY_SCRIPT, "build_request", MESSAGE)

    assert request == {
        "method": "POST",
        "url": "https://api.example.com/send?from=Venue",
        "headers": {
            "Authorization": "Basic " + base64.b64encode(b"key:s3cret").decode(),
            "Content-Type": "application/json",
        },
        "body": '{"ref":"42","text":"Your code is 1234 \\"now\\" 😀","to":"27831234567"}',
    }
    assert isinstance(request["body"], str)
    assert json.loads(request["body"])["text"] == MESSAGE["message"]


def test_parse_response_reads_the_decoded_json() -> None:
    body = {"status": "queued", "messages": [{"id": "SM123", "to": "27831234567"}]}
    response = {
        "status": 200,
        "body": json.dumps(body),
        "headers": {"content-type": "application/json"},
        "json": body,
    }

    assert run_script(GATEWAY_SCRIPT, "parse_response", response) == {"ok": True, "id": "SM123"}

    failed = {"status": 503, "body": "busy", "headers": {}, "json": None}
    assert run_script(GATEWAY_SCRIPT, "parse_response", failed) == {
        "ok": False,
        "error": "busy",
        "retryable": True,
    }


def test_parse_response_can_decode_the_body_itself() -> None:
    script = """
    function parse_response(resp)
      local data = json_decode(resp.body)
      return {ok = data.ok, id = data.id, count = #data.items, first = data.items[1]}
    end
    """
    body = json.dumps({"ok": True, "id": "Ab\u00e9\U0001f600", "items": [1.5, "x", None, True]})

    result = run_script(script, "parse_response", {"status": 200, "body": body, "headers": {}})

    assert result == {"ok": True, "id": "Ab\u00e9\U0001f600", "count": 4, "first": 1.5}


def test_an_undefined_function_gives_none_and_check_lists_what_is_defined() -> None:
    only_parse = "function parse_response(resp) return {ok = true} end"

    assert run_script(only_parse, "build_request", MESSAGE) is None
    assert check_script(only_parse) == {"parse_response"}
    assert check_script(GATEWAY_SCRIPT) == {"build_request", "parse_response"}
    assert check_script("local x = 1") == set()


def test_results_become_plain_python() -> None:
    result = run_script(
        returning("{list = {1, 2.5, 'x', true}, map = {[3] = 'c', b = {}}, n = 2^53}"),
        "build_request",
        MESSAGE,
    )

    assert result == {
        "value": {"list": [1, 2.5, "x", True], "map": {"3": "c", "b": {}}, "n": 2.0**53}
    }


def test_the_argument_arrives_as_plain_lua_tables() -> None:
    argument = {"status": 200, "json": {"items": [{"id": "a"}, {"id": "b"}]}, "headers": {}}
    script = """
    function parse_response(resp)
      return {ok = true, id = resp.json.items[2].id, kind = type(resp.json.items),
              n = #resp.json.items, status_type = math.type(resp.status)}
    end
    """

    assert run_script(script, "parse_response", argument) == {
        "ok": True,
        "id": "b",
        "kind": "table",
        "n": 2,
        "status_type": "integer",
    }


# --- helpers for scripts ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["plain", "a b&c=d/e?f#g", "~-._ unreserved", "quote\"apos'", "é café", "😀 emoji", "%41+"],
)
def test_url_encode_is_rfc3986_percent_encoding_of_utf8(text: str) -> None:
    assert value_of(f"url_encode({lua_string(text)})") == urllib.parse.quote(text, safe="")


def test_json_encode_escapes_strings_and_tells_arrays_from_objects() -> None:
    assert value_of(r"""json_encode('say "hi" \\ back\n\ttab\1\31 😀 /')""") == (
        r'"say \"hi\" \\ back\n\ttab\u0001\u001f 😀 /"'
    )
    assert value_of("json_encode({1, 2, 3})") == "[1,2,3]"
    assert value_of("json_encode({})") == "{}"
    assert value_of("json_encode({b = 1, a = {true, false}, c = 'x'})") == (
        '{"a":[true,false],"b":1,"c":"x"}'
    )
    assert value_of("json_encode({[1] = 'a', [3] = 'c'})") == '{"1":"a","3":"c"}'
    assert (
        value_of("json_encode({0.1, -2.5e-7, 3.0, 2^63, -7})")
        == "[0.1,-2.5e-07,3,9.2233720368547758e+18,-7]"
    )


def test_json_encode_output_round_trips_through_python() -> None:
    encoded = value_of(
        """json_encode({text = 'Quote " backslash \\\\ newline \\n emoji 😀 nul \\0', n = 12})"""
    )
    assert isinstance(encoded, str)
    assert json.loads(encoded) == {
        "text": 'Quote " backslash \\ newline \n emoji 😀 nul \x00',
        "n": 12,
    }


def test_json_decode_reads_what_python_writes() -> None:
    document = {"a": [1, -2.5, 'é\U0001f600\n"\\', {"b": False}], "c": "x"}
    script = "function parse_response(r) return {v = json_decode(r.body)} end"

    for text in (json.dumps(document), json.dumps(document, ensure_ascii=False, indent=2)):
        result = run_script(script, "parse_response", {"body": text})
        assert result == {"v": document}


def test_json_errors_name_the_script_line() -> None:
    assert script_error(returning("json_decode('{\"a\": [1,')")) == (
        "line 2: json_decode: unexpected end at byte 10"
    )
    assert script_error(returning("json_encode({f = type})")) == (
        "line 2: json_encode: cannot encode a function"
    )


@pytest.mark.parametrize("text", ["", "f", "fo", "foo", "foob", "fooba", "foobar", "é😀:pw"])
def test_base64_encode_matches_python(text: str) -> None:
    expected = base64.b64encode(text.encode()).decode()
    assert value_of(f"base64_encode({lua_string(text)})") == expected


# --- errors the admin can act on --------------------------------------------------------------


def test_compile_errors_name_the_line() -> None:
    source = "function build_request(msg)\n  local a = 1\n  x x\nend\n"

    with pytest.raises(LuaScriptError, match=r"^line 3: syntax error near 'x'$"):
        check_script(source)
    assert script_error(source) == "line 3: syntax error near 'x'"


def test_runtime_errors_name_the_line() -> None:
    source = "function build_request(msg)\n  local x\n  return x.field\nend\n"

    assert script_error(source) == "line 3: attempt to index a nil value (local 'x')"
    assert script_error("function build_request(msg)\n  error('no sender id')\nend") == (
        "line 2: no sender id"
    )
    assert script_error("function build_request()\n  table.insert(nil, 1)\nend") == (
        "line 2: bad argument #1 to 'insert' (table expected, got nil)"
    )


def test_a_failing_main_chunk_fails_the_check() -> None:
    with pytest.raises(LuaScriptError, match=r"^line 1: attempt to call a nil value"):
        check_script("undefined_function()")


def test_wrong_results_are_explained() -> None:
    assert script_error("function build_request() return 'x' end") == (
        "build_request must return a table"
    )
    assert script_error("function build_request() return {1, 2} end") == (
        "build_request must return a table with named fields, not a list"
    )
    assert script_error("build_request = 5") == "build_request must be a function"
    assert script_error(returning("print or type")) == (
        "the result of build_request contains a function, which cannot leave the script"
    )
    assert script_error("function build_request() local t = {} t.t = t return t end") == (
        "the result of build_request is nested more than 20 levels deep (or contains itself)"
    )


def test_non_utf8_results_and_table_errors_are_clean_script_errors() -> None:
    assert script_error(returning("'caf\\233'")) == (
        "the result of build_request has a string that is not valid UTF-8 text"
    )
    assert script_error("function build_request() return {['\\255'] = 1} end") == (
        "the result of build_request has a string that is not valid UTF-8 text"
    )
    assert script_error("function build_request() error({code = 1}) end") == (
        "script raised an error without a text message"
    )
    assert script_error("function build_request() error('bad \\255 byte') end") == (
        "line 1: bad \ufffd byte"
    )


def test_arguments_are_checked_before_any_lua_runs() -> None:
    with pytest.raises(ValueError, match="unknown script function"):
        run_script(GATEWAY_SCRIPT, "os_execute", MESSAGE)
    with pytest.raises(TypeError, match="cannot pass a object to a Lua script"):
        run_script(GATEWAY_SCRIPT, "build_request", {"to": object()})
    with pytest.raises(LuaScriptError, match="has a string longer than"):
        run_script(GATEWAY_SCRIPT, "parse_response", {"body": "x" * (300 * 1024)})
    with pytest.raises(LuaScriptError, match="script is larger than 64 KiB"):
        check_script("-- " + "x" * 70_000)


# --- the sandbox ------------------------------------------------------------------------------


def test_bytecode_is_refused() -> None:
    outside = LuaRuntime(encoding=None)
    bytecode = outside.execute("return string.dump(function() return 1 end)")
    assert bytecode.startswith(b"\x1bLua")
    source = bytecode.decode("latin-1")

    with pytest.raises(LuaScriptError, match=r"attempt to load a binary chunk \(mode is 't'\)"):
        check_script(source)
    with pytest.raises(LuaScriptError, match="binary chunk"):
        run_script(source, "build_request", MESSAGE)
    assert value_of("type(load)") == "nil"
    assert value_of("type(string.dump)") == "nil"
    assert value_of("type(('').dump)") == "nil"


ESCAPES = [
    "python",
    "python.none.__class__.__base__.__subclasses__()",
    "msg.__class__",
    "msg.to.__class__",
    "('').__class__",
    "string.__class__",
    "url_encode.__class__",
    "coroutine.running().__class__",
    "getmetatable('').__index.dump",
    "io.open('/etc/passwd')",
    "os.execute('id')",
    "os.getenv('HOME')",
    "os.exit(1)",
    "require('os')",
    "debug.getregistry()",
    "debug.sethook()",
    "load('return 1')",
    "loadstring('return 1')",
    "dofile('/etc/passwd')",
    "loadfile('/etc/passwd')",
    "collectgarbage('count')",
    "setmetatable({}, {__gc = function() end})",
    "_G",
    "package.loaded",
    "rawget(_ENV, 'python')",
    "xpcall",
    "print",
    "hmac_sha256_hex.__class__",
    "hmac_sha256_hex('k', 'd').__class__",
    "now.__class__",
    "now().__class__",
    "base64_decode('aGk=').__class__",
    "debug.getupvalue(sha256_hex, 1)",
]


@pytest.mark.parametrize("expression", ESCAPES)
def test_escape_routes_are_closed(expression: str) -> None:
    script = f"""
    function build_request(msg)
      local ok, value = pcall(function() return {expression} end)
      return {{ok = ok, kind = type(value)}}
    end
    """

    result = run_script(script, "build_request", MESSAGE)

    assert isinstance(result, dict)
    assert result["ok"] is False or result["kind"] == "nil", result


def test_the_environment_has_exactly_the_whitelist() -> None:
    script = """
    function build_request(msg)
      local names = {}
      for name in pairs(_ENV) do names[#names + 1] = name end
      table.sort(names)
      local os_names = {}
      for name in pairs(os) do os_names[#os_names + 1] = name end
      table.sort(os_names)
      return {names = table.concat(names, " "), os = table.concat(os_names, " ")}
    end
    """

    result = run_script(script, "build_request", MESSAGE)

    assert result == {
        "names": "_VERSION assert base64_decode base64_encode build_request coroutine error "
        "hmac_sha256_base64 hmac_sha256_hex ipairs json_decode json_encode math next now os "
        "pairs pcall rawequal rawget rawlen rawset select sha256_hex string table tonumber "
        "tostring type url_encode utf8",
        "os": "clock date time",
    }


@pytest.mark.parametrize(
    "body",
    [
        "while true do end",
        "while true do pcall(function() while true do end end) end",
        "local ok = pcall(function() while true do end end) return {ok = ok}",
        "local f = coroutine.wrap(function() while true do end end) f()",
        "local f = coroutine.wrap(function() while true do end end) pcall(f) return {ok = true}",
        "local co = coroutine.create(function() while true do end end)\n"
        "while true do coroutine.resume(co) end",
        "local function f() return f() end return f()",
        "local t = {} for i = 1, 200000 do t[i] = i end while true do table.sort(t) end",
    ],
)
def test_endless_scripts_are_stopped(body: str) -> None:
    # CPU time, not wall time: a loaded machine stretches the latter, not the budget.
    started = cpu_seconds()

    assert script_error(f"function build_request()\n{body}\nend") == "script ran too long"
    assert cpu_seconds() - started < lua_sandbox.MAX_CPU_SECONDS + 1


def test_an_endless_main_chunk_is_stopped() -> None:
    assert script_error("while true do end") == "script ran too long"


@pytest.mark.parametrize(
    "body",
    [
        "local t = {} for i = 1, 1e9 do t[i] = i end",
        "local s = 'x' while true do s = s .. s end",
        "local t = {} while true do t[#t + 1] = {} end",
        "local ok, e = pcall(function() local t = {} for i = 1, 1e9 do t[i] = i end end) error(e)",
    ],
)
def test_memory_bombs_are_stopped(body: str) -> None:
    assert script_error(f"function build_request()\n{body}\nend") == "script used too much memory"


def test_string_rep_bomb_is_refused() -> None:
    assert script_error("function build_request()\nlocal s = string.rep('x', 1e9)\nend") == (
        "line 2: rep: result would be longer than 262144 bytes"
    )
    assert script_error("function build_request()\nlocal s = ('x'):rep(1e9)\nend") == (
        "line 2: rep: result would be longer than 262144 bytes"
    )


@pytest.mark.parametrize(
    "call",
    [
        "string.find(s, '.-.-.-.-b$')",
        "s:find('.-.-.-.-b$')",
        "s:match('(.-)(.-)(.-)(.-)b')",
        "s:gsub('.-.-.-.-b', '')",
        "s:gmatch('.-.-.-.-b')()",
    ],
)
@pytest.mark.parametrize("length", [200, 100_000])
def test_catastrophic_patterns_are_refused_quickly(call: str, length: int) -> None:
    script = f"function build_request()\n  local s = ('a'):rep({length})\n  local x = {call}\nend"
    started = time.perf_counter()

    message = script_error(script)

    assert time.perf_counter() - started < 1
    assert message.startswith("line 3: ")
    assert f"pattern too complex for a {length}-byte string" in message


def test_ordinary_patterns_still_work() -> None:
    script = """
    function parse_response(resp)
      local id = resp.body:match('"id"%s*:%s*"([^"]+)"')
      local code = string.match(resp.body, "^OK:(%d+)")
      local words = {}
      for word in resp.body:gmatch("%a+") do words[#words + 1] = word end
      return {ok = id ~= nil, id = id, code = code, words = #words,
              clean = (resp.body:gsub("%s+", " ")), at = resp.body:find("id", 1, true)}
    end
    """
    body = 'OK:7 {"id" :  "abc-123",   "note": "fine"}' + " " * 2000

    result = run_script(script, "parse_response", {"body": body})

    assert result == {
        "ok": True,
        "id": "abc-123",
        "code": "7",
        "words": 5,
        "clean": 'OK:7 {"id" : "abc-123", "note": "fine"} ',
        "at": 8,
    }


def test_patterns_whose_repetitions_cannot_overlap_work_on_long_strings() -> None:
    script = """
    function parse_response(resp)
      return {ok = true, id = resp.body:match('"id"%s*:%s*"([^"]+)"'),
              first = resp.body:match("^%s*(%S+)")}
    end
    """
    body = " " * 200_000 + '{"id": "m-1"} 42'

    assert run_script(script, "parse_response", {"body": body}) == {
        "ok": True,
        "id": "m-1",
        "first": '{"id":',
    }


def test_isolated_run_gives_the_same_result_with_any_deadline() -> None:
    expected = run_script(GATEWAY_SCRIPT, "build_request", MESSAGE)

    assert call_script_isolated(GATEWAY_SCRIPT, "build_request", MESSAGE) == expected
    assert call_script_isolated(GATEWAY_SCRIPT, "build_request", MESSAGE, deadline=5) == expected
    assert call_script_isolated("local x = 1", "build_request", MESSAGE) is None
    with pytest.raises(LuaScriptError, match=r"^line 3: syntax error near 'x'$"):
        call_script_isolated("function build_request(msg)\n\n x x\nend", "build_request", MESSAGE)


def test_isolated_run_is_killed_at_its_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    # Lift the in-sandbox budget so that only the parent's deadline can stop this script.
    monkeypatch.setattr(lua_sandbox, "MAX_INSTRUCTIONS", 10**15)
    monkeypatch.setattr(lua_sandbox, "MAX_CPU_SECONDS", 3600.0)
    started = time.perf_counter()

    with pytest.raises(LuaScriptError, match=r"^script ran too long$"):
        call_script_isolated(
            "function build_request() while true do end end", "build_request", {}, deadline=0.5
        )

    assert 0.5 <= time.perf_counter() - started < 1.5


# --- warm helper processes --------------------------------------------------------------------


def process_state(pid: int) -> str | None:
    """The state letter of a process (R, S, Z, ...), or None when there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return stat.rpartition(")")[2].split()[0]


def has_exited(pid: int) -> bool:
    """Gone, or a zombie waiting for its (new) parent to collect it."""
    return process_state(pid) in (None, "Z")


def helper_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children() -> set[int]:
    """The process ids of this process's children."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == os.getpid():
                found.add(int(entry.name))
    return found


@pytest.fixture
def one_helper(monkeypatch: pytest.MonkeyPatch) -> Iterator[isolation.HelperPool]:
    """call_script_isolated served by a pool of one helper, so that runs share a process."""
    pool = isolation.HelperPool(size=1)
    monkeypatch.setattr(isolation, "_POOL", pool)
    yield pool
    pool.close()


REFERENCE_CASES = [
    (GATEWAY_SCRIPT, "build_request", MESSAGE),
    (
        GATEWAY_SCRIPT,
        "parse_response",
        {"status": 200, "body": "{}", "json": {"status": "queued", "messages": [{"id": "m1"}]}},
    ),
    (
        """
        function build_request(msg)
          local keys = {}
          for key, value in pairs(msg.mixed) do
            keys[#keys + 1] = math.type(key) or type(key)
          end
          table.sort(keys)
          return {keys = keys, big = msg.big, nan = msg.nan ~= msg.nan, list = msg.list,
                  text = msg.text, surrogate = msg.surrogate}
        end
        """,
        "build_request",
        {
            "mixed": {1: "one", "1": "text one", 2: {"x": [1, 2]}},
            "big": 2**70,
            "nan": float("nan"),
            "list": [1, 2.5, None, True, "é😀"],
            "text": 'line\nbreak "quoted" \\ \x00 end',
            "surrogate": "a\ud800b",
        },
    ),
]


@pytest.mark.parametrize(("source", "function", "argument"), REFERENCE_CASES)
def test_pooled_runs_give_what_a_run_in_this_process_gives(
    source: str, function: str, argument: dict
) -> None:
    data = lua_sandbox._encode_source(source)
    plain = lua_sandbox._checked_call(function, argument)
    # What the forked child used to compute, after its JSON trip.
    expected = json.loads(json.dumps(lua_sandbox._run(data, function, plain)))

    assert call_script_isolated(source, function, argument) == expected
    assert call_script_isolated(source, function, argument) == expected


def test_pooled_runs_get_the_callers_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lua_sandbox, "MAX_STRING_LENGTH", 1000)

    assert script_error("function build_request()\nlocal s = ('x'):rep(2000)\nend") == (
        "line 2: rep: result would be longer than 1000 bytes"
    )
    assert script_error(returning("('x'):rep(600) .. ('y'):rep(600)")) == (
        "the result of build_request has a string longer than 1000 bytes"
    )


def test_a_script_stuck_in_c_code_is_killed_at_the_deadline_and_the_pool_goes_on(
    one_helper: isolation.HelperPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_script(GATEWAY_SCRIPT, "build_request", MESSAGE)
    (first,) = one_helper.pids()
    # Without the pattern estimate this find runs for many seconds inside Lua's C library,
    # where no hook fires: only the process deadline stops it.
    monkeypatch.setattr(lua_sandbox, "MAX_PATTERN_STEPS", 10**18)
    stuck = "function build_request()\nreturn {at = string.find(('a'):rep(200), '.-.-.-.-b$')}\nend"
    started = time.perf_counter()

    with pytest.raises(LuaScriptError, match=r"^script ran too long$"):
        call_script_isolated(stuck, "build_request", {}, deadline=0.5)

    assert 0.5 <= time.perf_counter() - started < 1.5
    assert process_state(first) is None  # killed and collected
    assert one_helper.pids() == []
    assert call_script_isolated(GATEWAY_SCRIPT, "build_request", MESSAGE) == run_script(
        GATEWAY_SCRIPT, "build_request", MESSAGE
    )
    (second,) = one_helper.pids()
    assert second != first


def test_nothing_a_script_does_reaches_the_next_run(one_helper: isolation.HelperPool) -> None:
    script = """
    function build_request(msg)
      local before = {counter = counter, field = string.leaked, env = rawget(_ENV, "planted"),
                      math_pi = math.pi, tostring_type = type(tostring)}
      counter = (counter or 0) + 1
      pcall(function() string.leaked = "yes" end)
      pcall(function() getmetatable("").__index.leaked = "yes" end)
      rawset(_ENV, "planted", true)
      math.pi = 3
      tostring = nil
      return {before = before, after = {counter = counter, math_pi = math.pi,
                                         env = rawget(_ENV, "planted")}}
    end
    """
    clean = {
        "before": {"math_pi": math.pi, "tostring_type": "function"},
        "after": {"counter": 1, "math_pi": 3, "env": True},  # the changes took, in that run
    }

    assert run_script(script, "build_request", MESSAGE) == clean
    assert run_script(script, "build_request", MESSAGE) == clean
    assert len(one_helper.pids()) == 1  # both runs in the same process


def test_sixteen_threads_get_their_own_results() -> None:
    def build(index: int) -> tuple[int, object]:
        message = {**MESSAGE, "reference": str(index), "message": f"code {index}"}
        return index, call_script_isolated(GATEWAY_SCRIPT, "build_request", message)

    with ThreadPoolExecutor(16) as threads:
        results = list(threads.map(build, range(320)))

    for index, request in results:
        assert isinstance(request, dict)
        assert json.loads(request["body"]) == {
            "ref": str(index),
            "text": f"code {index}",
            "to": "27831234567",
        }
    assert 1 <= len(isolation.pool().pids()) <= isolation.POOL_SIZE


def test_bombs_are_refused_and_the_helper_stays_usable(one_helper: isolation.HelperPool) -> None:
    assert script_error("function build_request()\nlocal s = 'x' while true do s = s .. s end\nend")
    assert script_error(
        "function build_request()\nlocal t = {} for i = 1, 1e9 do t[i] = i end\nend"
    ) == ("script used too much memory")
    started = time.perf_counter()
    message = script_error(
        "function build_request()\nreturn {at = ('a'):rep(100000):find('.-.-.-.-b$')}\nend"
    )
    assert "pattern too complex for a 100000-byte string" in message
    assert time.perf_counter() - started < 1
    (pid,) = one_helper.pids()
    cpu = helper_cpu_seconds(pid)

    assert script_error("function build_request()\nwhile true do end\nend") == TOO_LONG
    assert helper_cpu_seconds(pid) - cpu < lua_sandbox.MAX_CPU_SECONDS + 0.5

    assert run_script(GATEWAY_SCRIPT, "build_request", MESSAGE)
    assert one_helper.pids() == [pid]


@pytest.mark.parametrize("noticed", [True, False])
def test_a_helper_that_died_while_idle_is_replaced(
    one_helper: isolation.HelperPool, monkeypatch: pytest.MonkeyPatch, noticed: bool
) -> None:
    expected = run_script(GATEWAY_SCRIPT, "build_request", MESSAGE)
    (first,) = one_helper.pids()
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 2
    while not has_exited(first) and time.monotonic() < deadline:
        time.sleep(0.01)
    if not noticed:  # it dies just after the pool found it alive: the request cannot be written
        monkeypatch.setattr(isolation._Helper, "fresh", lambda _: True)

    assert run_script(GATEWAY_SCRIPT, "build_request", MESSAGE) == expected
    assert one_helper.pids() != [first]


def test_idle_helpers_exit_by_themselves(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = isolation.HelperPool(size=1, idle_seconds=0.5)
    monkeypatch.setattr(isolation, "_POOL", pool)
    expected = run_script(GATEWAY_SCRIPT, "build_request", MESSAGE)
    (first,) = pool.pids()

    deadline = time.monotonic() + 3
    while not has_exited(first) and time.monotonic() < deadline:
        time.sleep(0.05)

    assert has_exited(first)
    assert run_script(GATEWAY_SCRIPT, "build_request", MESSAGE) == expected
    assert pool.pids() != [first]
    pool.close()


def test_checking_a_script_leaves_no_process_behind() -> None:
    before = children()

    assert check_script(GATEWAY_SCRIPT) == {"build_request", "parse_response"}
    with pytest.raises(LuaScriptError, match="script ran too long"):
        check_script("while true do end")

    assert children() - before - set(isolation.pool().pids()) == set()


def test_a_forked_child_starts_its_own_helpers() -> None:
    expected = run_script(GATEWAY_SCRIPT, "build_request", MESSAGE)
    parents = set(isolation.pool().pids())
    assert parents
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        code = 1
        try:
            os.close(read_end)
            result = call_script_isolated(GATEWAY_SCRIPT, "build_request", MESSAGE)
            report = {"result": result, "pids": isolation.pool().pids()}
            os.write(write_end, json.dumps(report).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        report = json.loads(reader.read())
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0

    assert report["result"] == expected
    assert report["pids"] and not parents & set(report["pids"])
    assert run_script(GATEWAY_SCRIPT, "build_request", MESSAGE) == expected
    assert set(isolation.pool().pids()) == parents


USER_PROCESS = """
import json, sys, threading
from sms_ext.gateways import isolation, lua_sandbox
busy = "function build_request() local n = 0 for i = 1, 3e5 do n = n + i end return {} end"
threads = [
    threading.Thread(target=lua_sandbox.call_script_isolated, args=(busy, "build_request", {}))
    for _ in range(4)
]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
pids = isolation.pool().pids()
if sys.argv[1] == "stuck":  # one helper runs a script stuck in C code with a 1 s deadline
    lua_sandbox.MAX_PATTERN_STEPS = 10**18  # this find would run for hours
    stuck = "function build_request() return {at = ('a'):rep(2000):find('.-.-.-.-b$')} end"
    threading.Thread(
        target=lua_sandbox.call_script_isolated,
        args=(stuck, "build_request", {}),
        kwargs={"deadline": 1.0},
        daemon=True,
    ).start()
print(json.dumps(pids), flush=True)
threading.Event().wait()
"""


@pytest.mark.parametrize("mode", ["idle", "stuck"])
def test_helpers_do_not_outlive_a_killed_user(mode: str) -> None:
    # "idle": stdin reaches EOF. "stuck": a helper in C code reads nothing; it sees its parent
    # change (its CPU limit, 2-3 s here, would end it later).
    user = subprocess.Popen(
        [sys.executable, "-c", USER_PROCESS, mode],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parent.parent,
        text=True,
    )
    try:
        assert user.stdout is not None
        pids = json.loads(user.stdout.readline())
        assert 1 <= len(pids) <= isolation.POOL_SIZE
        for pid in pids:
            assert b"lua_worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
        time.sleep(0.2)  # the stuck script is running
    finally:
        user.kill()
        user.wait()
    killed = time.monotonic()

    while not all(map(has_exited, pids)) and time.monotonic() - killed < 5:
        time.sleep(0.05)

    assert [pid for pid in pids if not has_exited(pid)] == []
    assert time.monotonic() - killed < 2


def test_signing_helpers_match_python() -> None:
    script = """
    function build_request(msg, cfg)
      return {
        hex = hmac_sha256_hex(cfg.api_secret, msg.message),
        b64 = hmac_sha256_base64(cfg.api_secret, msg.message),
        digest = sha256_hex(msg.message),
        decoded = base64_decode(base64_encode(msg.message)),
        number = sha256_hex(12),
        now = now(),
      }
    end
    """
    text = MESSAGE["message"].encode()
    mac = hmac.new(b"s3cret", text, hashlib.sha256)
    before = int(time.time())

    result = call_script_isolated(script, "build_request", MESSAGE, config={"api_secret": "s3cret"})

    assert isinstance(result, dict)
    assert result["hex"] == mac.hexdigest()
    assert result["b64"] == base64.b64encode(mac.digest()).decode()
    assert result["digest"] == hashlib.sha256(text).hexdigest()
    assert result["decoded"] == MESSAGE["message"]
    assert result["number"] == hashlib.sha256(b"12").hexdigest()
    assert before <= result["now"] <= time.time() + 1


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("hmac_sha256_hex(nil, 'x')", "hmac_sha256_hex: expected a string, got nil"),
        ("sha256_hex({})", "sha256_hex: expected a string, got table"),
        ("base64_decode('not base64!')", "base64_decode: the input is not valid"),
    ],
)
def test_signing_helpers_refuse_what_is_not_a_string(call: str, message: str) -> None:
    assert script_error(f"function build_request()\n  return {{x = {call}}}\nend") == (
        f"line 2: {message}"
    )
