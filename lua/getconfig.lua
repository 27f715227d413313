-- Serves the haproxy.cfg this process runs (marathon-lb's /_haproxy_getconfig).
-- The file name is the argument after the last -f on the command line (marathon-lb's own
-- HAProxy is started as `-f <run-dir>/supervisor.cfg -f <haproxy.cfg>`). It is read on every
-- request: server changes applied through the Runtime API rewrite the file without a reload.

local path = nil

local function config_path()
  local f = io.open("/proc/self/cmdline", "rb")
  if f == nil then
    return nil
  end
  local cmdline = f:read("*a")
  f:close()
  local take_next = false
  local last = nil
  for arg in string.gmatch(cmdline, "[^%z]+") do
    if take_next then
      last = arg
    end
    take_next = (arg == "-f")
  end
  return last
end

core.register_init(function()
  path = config_path()
end)

core.register_service("getconfig", "http", function(applet)
  local config = ""
  local f = path and io.open(path, "rb")
  if f then
    config = f:read("*a") or ""
    f:close()
  end
  applet:set_status(200)
  applet:add_header("content-length", string.len(config))
  applet:add_header("content-type", "text/plain")
  applet:start_response()
  applet:send(config)
end)
