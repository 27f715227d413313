-- Serves the pids of this HAProxy (marathon-lb's /_haproxy_getpids), space separated: in
-- master-worker mode (-W, or `master-worker` in global) the master and all its workers,
-- including old workers of earlier reloads that still drain connections; otherwise, or when
-- /proc does not list children, every process named haproxy (`pidof haproxy`, as the original).
-- Loaded by the default HAPROXY_HEAD: `lua-load /marathon-lb/getpids.lua`.

local function read_file(path)
  local f = io.open(path, "rb")
  if f == nil then
    return nil
  end
  local text = f:read("*a")
  f:close()
  return text
end

-- The pid, command name and parent pid in /proc/<pid>/stat (`pid (comm) state ppid ...`).
local function stat(pid)
  local text = read_file("/proc/" .. pid .. "/stat")
  if text == nil then
    return nil
  end
  local own, comm, ppid = string.match(text, "^(%d+) %((.*)%) %S+ (%d+)")
  return own, comm, ppid
end

-- Space-separated words of `text` on one line, without surrounding blanks.
local function one_line(text)
  local words = {}
  for word in string.gmatch(text or "", "%S+") do
    words[#words + 1] = word
  end
  return table.concat(words, " ")
end

local function pidof()
  local pipe = io.popen("pidof haproxy")
  if pipe == nil then
    return ""
  end
  local out = pipe:read("*a")
  pipe:close()
  return one_line(out)
end

-- The master and its children, or nil when this process has no HAProxy master above it.
local function master_and_workers()
  local self, comm, ppid = stat("self")
  if self == nil then
    return nil
  end
  local _, parent_comm = stat(ppid)
  if parent_comm ~= comm then
    return nil
  end
  local children = read_file("/proc/" .. ppid .. "/task/" .. ppid .. "/children")
  if children == nil then
    return nil
  end
  local pids = one_line(ppid .. " " .. children)
  if not string.find(" " .. pids .. " ", " " .. self .. " ", 1, true) then
    return nil
  end
  return pids
end

core.register_service("getpids", "http", function(applet)
  local pids = master_and_workers() or pidof()
  applet:set_status(200)
  applet:add_header("content-length", string.len(pids))
  applet:add_header("content-type", "text/plain")
  applet:start_response()
  applet:send(pids)
end)
