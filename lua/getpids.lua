-- Serves the pids of the running haproxy processes (marathon-lb's /_haproxy_getpids).
-- Loaded by the default HAPROXY_HEAD: `lua-load /marathon-lb/getpids.lua`.

core.register_service("getpids", "http", function(applet)
  local pids = ""
  local pipe = io.popen("pidof haproxy")
  if pipe ~= nil then
    pids = pipe:read("*a") or ""
    pipe:close()
  end
  applet:set_status(200)
  applet:add_header("content-length", string.len(pids))
  applet:add_header("content-type", "text/plain")
  applet:start_response()
  applet:send(pids)
end)
