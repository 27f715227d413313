-- Serves the --haproxy-map files (marathon-lb's /_haproxy_getvhostmap and /_haproxy_getappmap).
-- They live beside the haproxy.cfg given with the last -f (marathon-lb's own HAProxy is started
-- as `-f <run-dir>/supervisor.cfg -f <haproxy.cfg>`); they are read on every request, so a map
-- updated through the Runtime API and on disk is served as it is now.

local function config_dir()
  local f = io.open("/proc/self/cmdline", "rb")
  if f == nil then
    return "."
  end
  local cmdline = f:read("*a")
  f:close()
  local take_next = false
  local dir = "."
  for arg in string.gmatch(cmdline, "[^%z]+") do
    if take_next then
      dir = string.match(arg, "^(.*)/[^/]*$") or "."
    end
    take_next = (arg == "-f")
  end
  return dir
end

local dir = "."

core.register_init(function()
  dir = config_dir()
end)

local function serve_file(name)
  return function(applet)
    local body = ""
    local f = io.open(dir .. "/" .. name, "rb")
    if f ~= nil then
      body = f:read("*a") or ""
      f:close()
    end
    applet:set_status(200)
    applet:add_header("content-length", string.len(body))
    applet:add_header("content-type", "text/plain")
    applet:start_response()
    applet:send(body)
  end
end

core.register_service("getvhostmap", "http", serve_file("domain2backend.map"))
core.register_service("getappmap", "http", serve_file("app2backend.map"))
