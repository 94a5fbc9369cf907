-- sms_ext Lua sandbox prelude, loaded by sms_ext/lua_sandbox.py into every fresh runtime.
-- It runs once with the full standard library, before any script code: it keeps private
-- references to what it needs, hardens the string table shared with every string value,
-- builds the script's environment and returns the function that loads a script.
local MAX_INSTRUCTIONS, HOOK_STEP, MAX_CPU_SECONDS, MAX_STRING_LENGTH, MAX_DEPTH,
      MAX_PATTERN_LENGTH, MAX_PATTERN_STEPS, TOO_LONG, PYTHON_HELPERS = ...

local debug_sethook, clock, load, os = debug.sethook, os.clock, load, os
local error, ipairs, next, pcall, select, tonumber, tostring, type =
      error, ipairs, next, pcall, select, tonumber, tostring, type
local s_byte, s_char, s_find, s_format, s_gmatch, s_gsub, s_match, s_rep, s_sub =
      string.byte, string.char, string.find, string.format, string.gmatch, string.gsub,
      string.match, string.rep, string.sub
local t_concat, t_sort, t_unpack, math_type, huge =
      table.concat, table.sort, table.unpack, math.type, math.huge
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

-- Also called before C functions that can take long (see `guarded` below). Other C functions
-- are linear in strings that the memory cap keeps small, so the hook's own checks come soon
-- enough for them (measured overrun under 0.5 s).
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
-- Pattern matching runs in C, where the hook never fires, and backtracks without limit:
-- string.find(("a"):rep(200), ".-.-.-.-b$") runs for many seconds. Each call is refused up front
-- when a worst-case estimate of its steps is too big. A repetition (x*, x+, x-) tries up to n+1
-- lengths and the rest of the pattern after each, unless the next item cannot match what x
-- matches: then only the longest run can go on ("[^"]*"", "%s*:"). An unanchored pattern is
-- tried at each of n+1 start positions, except when its first character can occur in none of
-- its repetitions ('"id"%s*:%s*"'): then the runs scanned from different starts do not overlap.

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

-- The pattern as a list of items: {class = text, quantifier = "" or one of ?*+-} for single
-- character classes, {scans = true} for %b and back-references, {} for zero-width %f and a
-- final $. Captures cost nothing and are left out. Parsed once per pattern and runtime.
local parsed_patterns = {}

local function pattern_items(pattern, anchorable)
  local key = (anchorable and "^" or "") .. pattern
  local parsed = parsed_patterns[key]
  if parsed then return parsed end
  local items, i = {}, 1
  parsed = {items = items, anchored = anchorable and s_sub(pattern, 1, 1) == "^"}
  if parsed.anchored then i = 2 end
  while i <= #pattern do
    local c, item_end = s_sub(pattern, i, i), nil
    if c == "(" or c == ")" then
      i = i + 1
    elseif c == "$" and i == #pattern then
      items[#items + 1], i = {}, i + 1
    elseif c == "%" then
      local class = s_sub(pattern, i + 1, i + 1)
      if class == "b" then items[#items + 1], i = {scans = true}, i + 4
      elseif class == "f" then items[#items + 1], i = {}, skip_set(pattern, i + 2)
      elseif s_find(class, "^%d") then items[#items + 1], i = {scans = true}, i + 2
      else item_end = i + 2 end
    elseif c == "[" then
      item_end = skip_set(pattern, i)
    else
      item_end = i + 1
    end
    if item_end then
      local quantifier = s_match(s_sub(pattern, item_end, item_end), "^[?*+-]$") or ""
      items[#items + 1] = {class = s_sub(pattern, i, item_end - 1), quantifier = quantifier}
      i = item_end + #quantifier
    end
  end
  parsed_patterns[key] = parsed
  return parsed
end

-- The bytes a single-character class matches (false if malformed), found by asking the real
-- matcher about each byte. Only needed when the quick estimate is too big; cached.
local class_bytes_cache = {}

local function class_bytes(class)
  local bytes = class_bytes_cache[class]
  if bytes == nil then
    bytes = {}
    for byte = 0, 255 do
      local ok, found = pcall(s_find, s_char(byte), "^" .. class .. "$")
      if not ok then bytes = false break end
      if found then bytes[byte] = true end
    end
    class_bytes_cache[class] = bytes
  end
  return bytes
end

local function disjoint(a, b)
  local a_bytes, b_bytes = class_bytes(a), class_bytes(b)
  if not (a_bytes and b_bytes) then return false end
  for byte in next, a_bytes do
    if b_bytes[byte] then return false end
  end
  return true
end

local function is_repetition(item)
  return item.quantifier == "*" or item.quantifier == "+" or item.quantifier == "-"
end

-- Only the longest run of items[j] can go on when the next item must consume a byte it cannot.
local function single_continuation(items, j)
  local following = items[j + 1]
  if following == nil then return true end  -- the first length tried completes the match
  if following.class == nil then return not following.scans and j + 1 == #items end  -- final $
  return (following.quantifier == "" or following.quantifier == "+")
    and disjoint(items[j].class, following.class)
end

local function first_class_outside_repetitions(items)
  local first = items[1]
  if not (first and first.class and first.quantifier == "") then return false end
  for j = 2, #items do
    local item = items[j]
    if item.scans or (is_repetition(item) and not disjoint(first.class, item.class)) then
      return false
    end
  end
  return true
end

-- Worst-case steps to match a subject of n bytes; `precise` also uses the class analysis.
-- In floating point: the products overflow integers.
local function pattern_steps(subject_length, parsed, precise)
  local items, n, rest = parsed.items, subject_length + 0.0, 1.0
  for j = #items, 1, -1 do
    local item = items[j]
    if item.scans then
      rest = n + 1 + rest
    elseif item.class == nil or item.quantifier == "" then
      rest = 1 + rest
    elseif item.quantifier == "?" then
      rest = 1 + 2 * rest
    elseif precise and single_continuation(items, j) then
      rest = n + 1 + rest
    else
      rest = (n + 1) * (1 + rest)
    end
  end
  if parsed.anchored then return rest end
  if precise and first_class_outside_repetitions(items) then
    return rest + (n + 1) * (#items + 1)
  end
  return (n + 1) * rest
end

-- Checks for the wrappers below; they raise at level 3, the script line that made the call.
local function pattern_guard(name, anchorable, plain_position)
  return function(subject, pattern, ...)
    if type(subject) ~= "string" or type(pattern) ~= "string" then return end  -- numbers are short
    if #pattern > MAX_PATTERN_LENGTH then
      error(s_format("%s: pattern is longer than %d bytes", name, MAX_PATTERN_LENGTH), 3)
    end
    if plain_position and select(plain_position, ...) then return end
    local parsed = pattern_items(pattern, anchorable)
    if pattern_steps(#subject, parsed, false) > MAX_PATTERN_STEPS
        and pattern_steps(#subject, parsed, true) > MAX_PATTERN_STEPS then
      error(s_format("%s: pattern too complex for a %d-byte string: anchor it with ^, use "
        .. "fewer repetitions (*, +, -), or sets that exclude what follows them ([^\"]*\")",
        name, #subject), 3)
    end
  end
end

local function rep_guard(s, count, separator)
  if math_type(count) and count > 0
      and #tostring(s) * count + #tostring(separator or "") * (count - 1) > MAX_STRING_LENGTH then
    error(s_format("rep: result would be longer than %d bytes", MAX_STRING_LENGTH), 3)
  end
end

-- The C function's own errors are raised again at the script's line and under the name the
-- script used ("line 3: bad argument #1 to 'insert'"), not the wrapper's; errors from the
-- script's own callbacks (gsub, sort) pass through as they are.
local function reraise(name, ok, ...)
  if ok then return ... end
  local message = ...
  if type(message) ~= "string" or s_find(message, "^script:%d+: ") or message == TOO_LONG
      or message == "not enough memory" then
    error(message, 0)
  end
  message = s_gsub(message, "^sandbox:%d+: ", "")
  message = s_gsub(message, "^(bad argument #%d+ to )'[^']*'", "%1'" .. name .. "'")
  error(message, 2)  -- reraise is tail-called, so level 2 is the script
end

-- Wraps a C function whose cost can grow large (patterns, sorting, walking a whole table):
-- a loop of them costs few instructions, so check the clock before each call.
local function guarded(name, f, guard)
  return function(...)
    check_clock()
    if guard then guard(...) end
    return reraise(name, pcall(f, ...))
  end
end

-- The real string table is also every string's method table ("x"):find, so change it in place.
string.dump = nil  -- bytecode can be crafted to break out of the VM
string.find = guarded("find", s_find, pattern_guard("find", true, 2))
string.match = guarded("match", s_match, pattern_guard("match", true))
string.gmatch = guarded("gmatch", s_gmatch, pattern_guard("gmatch", false))
string.gsub = guarded("gsub", s_gsub, pattern_guard("gsub", true))
string.rep = guarded("rep", s_rep, rep_guard)

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
    if low then
      return 0x10000 + ((code - 0xD800) << 10) + (tonumber(low, 16) - 0xDC00), pos + 12
    end
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

-- Signing helpers computed in Python (sms_ext/gateways/lua_helpers.py). The script gets these
-- Lua closures only; the Python functions stay in upvalues, which nothing in the script's
-- environment can read (debug is gone). Arguments must be strings (numbers become text);
-- a helper that returns nothing for its input raises a clean error.
local function python_helper(name, arity)
  local f = PYTHON_HELPERS[name]
  return function(...)
    check_clock()
    local arguments = {...}
    for i = 1, arity do arguments[i] = text_argument(name, arguments[i]) end
    local result = f(t_unpack(arguments, 1, arity))
    if result == nil then error(s_format("%s: the input is not valid", name), 2) end
    return result
  end
end

local function now() return PYTHON_HELPERS.now() end

---------------------------------------------------------------------------------------------
-- The script's environment: only what cannot reach outside the runtime or run unbounded.
-- Left out on purpose: metatables (__gc finalizers run with hooks off, weak tables make the
-- collector do unbounded work, __len drives C loops in table.insert/remove) and xpcall (its
-- message handler, called for the hook's own error, would run with hooks off).

local function pick(library, names)
  local picked = {}
  for name in s_gmatch(names, "%S+") do picked[name] = library[name] end
  return picked
end

local function sandbox_env()
  local checked_table = pick(table, "pack unpack")
  for name in s_gmatch("concat insert remove sort", "%S+") do
    checked_table[name] = guarded(name, table[name])
  end
  local checked_coroutine = pick(coroutine, "close isyieldable resume running status yield")
  checked_coroutine.create = guarded("create", function(body) return co_create(hooked(body)) end)
  checked_coroutine.wrap = guarded("wrap", function(body) return co_wrap(hooked(body)) end)
  return {
    string = pick(string, "byte char find format gmatch gsub len lower match rep reverse sub "
      .. "upper"),
    table = checked_table,
    math = pick(math, "abs acos asin atan ceil cos exp floor fmod huge log max maxinteger min "
      .. "mininteger modf pi random randomseed sin sqrt tan tointeger type ult"),
    utf8 = pick(utf8, "char charpattern codepoint codes len offset"),
    os = pick(os, "clock date time"),
    coroutine = checked_coroutine,
    assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs, pcall = pcall,
    rawequal = rawequal, rawget = rawget, rawlen = rawlen, rawset = rawset, select = select,
    tonumber = tonumber, tostring = tostring, type = type, _VERSION = _VERSION,
    url_encode = url_encode,
    base64_encode = base64_encode,
    json_encode = reported_at_caller("json_encode", json_encode),
    json_decode = reported_at_caller("json_decode", json_decode),
    hmac_sha256_hex = python_helper("hmac_sha256_hex", 2),
    hmac_sha256_base64 = python_helper("hmac_sha256_base64", 2),
    sha256_hex = python_helper("sha256_hex", 1),
    base64_decode = python_helper("base64_decode", 1),
    now = now,
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
