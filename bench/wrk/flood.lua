-- wrk script of the attack-cc / attack-control flood (bench/run.py starts it beside the
-- measured wrk, both on core 1):
--
--   wrk -t1 -c8 -d... -s flood.lua http://127.0.0.1:PORT/token -- EXPECT
--
-- Every request is `POST /token` grant_type=client_credentials with HTTP Basic
-- credentials made up for that request: a random client id and a random secret, so
-- no cache, per-name throttle or credential cache can ever have seen them.
-- response() counts the statuses; done() prints one line `FLOOD_RESULT {json}`
-- (wrk prints it when its time is up or when run.py sends SIGINT).

local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

local function b64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local q = { math.floor(n / 262144) % 64, math.floor(n / 4096) % 64, math.floor(n / 64) % 64, n % 64 }
    out[#out + 1] = B64:sub(q[1] + 1, q[1] + 1) .. B64:sub(q[2] + 1, q[2] + 1)
      .. (b and B64:sub(q[3] + 1, q[3] + 1) or "=") .. (c and B64:sub(q[4] + 1, q[4] + 1) or "=")
  end
  return table.concat(out)
end

local function rand(n)
  local t = {}
  for i = 1, n do
    local k = math.random(1, #ALNUM)
    t[i] = ALNUM:sub(k, k)
  end
  return table.concat(t)
end

expect = 0
bad = 0
statuses = ""
local seen = {}

function init(args)
  expect = tonumber(args[1]) or 401
  math.randomseed(os.time() * 1000 + (id or 0))
  wrk.method = "POST"
  wrk.body = "grant_type=client_credentials"
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
end

function request()
  -- A 20-character client id like the demo's, a 43-character secret like `make client-secret`'s.
  wrk.headers["Authorization"] = "Basic " .. b64("atk-" .. rand(16) .. ":" .. rand(43))
  return wrk.format()
end

function response(status, headers, body)
  if status ~= expect then
    bad = bad + 1
    if not seen[status] then
      seen[status] = true
      statuses = statuses .. status .. " "
    end
  end
end

function done(summary, latency, requests)
  local b, st = 0, ""
  for _, t in ipairs(threads) do
    b = b + t:get("bad")
    st = st .. t:get("statuses")
  end
  local e = summary.errors
  io.write(string.format(
    'FLOOD_RESULT {"requests":%d,"duration_us":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"bad":%d,"bad_statuses":"%s","latency_us":{"p50":%d,"p99":%d}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout, b, st,
    latency:percentile(50), latency:percentile(99)))
end
