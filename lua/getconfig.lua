-- Serves the haproxy.cfg this process was started with (marathon-lb's /_haproxy_getconfig).
-- The file name is the argument after -f on the command line; it is read once at start.

local config = ""

local function config_path()
  local f = io.open("/proc/self/cmdline", "rb")
  if f == nil then
    return nil
  end
  local cmdline = f:read("*a")
  f:close()
  local take_next = false
  for arg in string.gmatch(cmdline, "[^%z]+") do
    if take_next then
      return arg
    end
    take_next = (arg == "-f")
  end
  return nil
end

core.register_init(function()
  local path = config_path()
  if path == nil then
    return
  end
  local f = io.open(path, "rb")
  if f ~= nil then
    config = f:read("*a") or ""
    f:close()
  end
end)

core.register_service("getconfig", "http", function(applet)
  applet:set_status(200)
  applet:add_header("content-length", string.len(config))
  applet:add_header("content-type", "text/plain")
  applet:start_response()
  applet:send(config)
end)
