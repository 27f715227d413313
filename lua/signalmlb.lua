-- Forwards /_mlb_signal/hup and /_mlb_signal/usr1 to the marathon-lb controller: `hup` makes it
-- re-read Marathon and regenerate the config (like SIGHUP), `usr1` makes it reload HAProxy with
-- the config already on disk (like SIGUSR1).
--
-- The request goes to the controller's admin server, `POST /signal/hup` or `/signal/usr1`, at
-- $MARATHON_LB_ADMIN_ADDR (`ip:port` or `[ipv6]:port`, default 127.0.0.1:9092; the controller
-- sets it in HAProxy's environment). Only when that server cannot be reached is the signal sent
-- with `pkill -x marathon-lb` instead (needs procps and the controller in this pid namespace).
-- Answers as the original did: 200 "Sent SIGHUP signal to marathon-lb", or 500 with the reason.

local DEFAULT_ADMIN_ADDR = "127.0.0.1:9092"
local TIMEOUT_SECONDS = 3

-- The admin server's address: host, port and the text it came from (host nil if malformed).
local function admin_addr()
  local addr = os.getenv("MARATHON_LB_ADMIN_ADDR")
  if addr == nil or addr == "" then
    addr = DEFAULT_ADMIN_ADDR
  end
  local host, port = string.match(addr, "^%[(.+)%]:(%d+)$")
  if host == nil then
    host, port = string.match(addr, "^([^:]+):(%d+)$")
  end
  return host, tonumber(port), addr
end

-- POSTs to `path` on the admin server. Returns the HTTP status and body, or nil and why the
-- server could not be reached (nothing was sent then, so falling back to pkill is safe).
local function post(path)
  local host, port, addr = admin_addr()
  if host == nil then
    return nil, "MARATHON_LB_ADMIN_ADDR=" .. addr .. " is not ip:port"
  end
  local sock = core.tcp()
  sock:settimeout(TIMEOUT_SECONDS)
  local ok, err = sock:connect(host, port)
  if not ok then
    sock:close()
    return nil, "cannot connect to the admin server at " .. addr .. ": " .. tostring(err)
  end
  sock:send("POST " .. path .. " HTTP/1.1\r\nHost: " .. addr ..
    "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
  local status_line = sock:receive("*l")
  local status = status_line and tonumber(string.match(status_line, "^HTTP/%d%.%d (%d%d%d)"))
  if status == nil then
    sock:close()
    -- The request may have been taken already: report instead of signalling a second time.
    return 502, "no HTTP answer from the admin server at " .. addr
  end
  repeat
    local header = sock:receive("*l")
  until header == nil or header == ""
  local body = sock:receive("*a") or ""
  sock:close()
  return status, body
end

local function respond(applet, code, text)
  applet:set_status(code)
  applet:add_header("content-length", string.len(text))
  applet:add_header("content-type", "text/plain")
  applet:start_response()
  applet:send(text)
end

local function signal_mlb(path, signal)
  local sent = "Sent SIG" .. signal .. " signal to marathon-lb"
  local failed = "Failed to send SIG" .. signal .. " signal to marathon-lb"
  return function(applet)
    local status, body = post(path)
    if status == nil then
      local ok, _, code = os.execute("pkill -" .. signal .. " -x marathon-lb")
      if ok then
        respond(applet, 200, sent)
      else
        respond(applet, 500, string.format("%s (%s; pkill exit code %s)", failed, body,
          tostring(code)))
      end
    elseif status >= 200 and status < 300 then
      respond(applet, 200, sent)
    else
      body = string.gsub(body, "%s+$", "")
      respond(applet, 500, string.format("%s (admin server answered %d: %s)", failed, status,
        body))
    end
  end
end

core.register_service("signalmlbhup", "http", signal_mlb("/signal/hup", "HUP"))
core.register_service("signalmlbusr1", "http", signal_mlb("/signal/usr1", "USR1"))
