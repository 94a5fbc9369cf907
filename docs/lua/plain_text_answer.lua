-- Example: a gateway that answers in plain text, not JSON:
--   "OK <message id>"            the message was accepted
--   "ERR <code> <reason>"        refused; codes 5xx mean "busy, try again later"
-- The request itself comes from the form (URL, payload, headers): only the answer needs Lua.
function parse_response(resp, cfg)
  local id = resp.body:match("^OK%s+(%S+)")
  if id then
    return {ok = true, id = id}
  end
  local code, reason = resp.body:match("^ERR%s+(%d+)%s*([^\r\n]*)")
  if code then
    return {
      ok = false,
      error = "gateway error " .. code .. ": " .. reason,
      retryable = code:sub(1, 1) == "5",
    }
  end
  return {ok = false, error = "unexpected answer: " .. resp.body:sub(1, 100), retryable = true}
end
