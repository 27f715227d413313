-- Forwards /_mlb_signal/hup and /_mlb_signal/usr1 to the marathon-lb process: SIGHUP makes it
-- re-read Marathon and regenerate the config, SIGUSR1 reloads HAProxy with the existing config.

local function signal_mlb(signal)
  return function(applet)
    local ok = os.execute("pkill -" .. signal .. " -x marathon-lb")
    local body
    if ok then
      body = "Sent SIG" .. signal .. " to marathon-lb\n"
    else
      body = "marathon-lb is not running here\n"
    end
    applet:set_status(200)
    applet:add_header("content-length", string.len(body))
    applet:add_header("content-type", "text/plain")
    applet:start_response()
    applet:send(body)
  end
end

core.register_service("signalmlbhup", "http", signal_mlb("HUP"))
core.register_service("signalmlbusr1", "http", signal_mlb("USR1"))
