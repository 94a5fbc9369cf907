-- Example: a gateway that wants a JSON body signed with HMAC-SHA256.
-- The signature covers "<timestamp>.<body>", keyed with the API secret; the provider checks it
-- and refuses timestamps older than a few minutes. Header names differ between providers:
-- take yours from their documentation. The URL stays the one on the form.
function build_request(msg, cfg)
  local body = json_encode({
    to = msg.phone,
    from = msg.from,
    text = msg.message,
    reference = msg.reference,
  })
  local timestamp = tostring(now())
  return {
    method = "POST",
    body = body,
    headers = {
      ["Content-Type"] = "application/json",
      ["X-Api-Key"] = cfg.api_key,
      ["X-Timestamp"] = timestamp,
      ["X-Signature"] = hmac_sha256_hex(cfg.api_secret, timestamp .. "." .. body),
    },
  }
end
