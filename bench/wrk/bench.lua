-- wrk script of `make bench` (one script for every variant).
--
--   wrk ... URL -- CONFIG.lua
--
-- CONFIG.lua (written by bench/run.py) returns a table:
--   expect   status every response must have (others are counted as `bad`)
--   method, body, headers   the request (a static request, built once)
--   refresh  true: POST refresh_token grants, each with the refresh token the
--            previous answer returned (a queue per thread, seeded with `seeds`)
--   prefix   (refresh) the body before the token; seeds: list of refresh tokens
-- done() prints one line `BENCH_RESULT {json}` that run.py parses.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local cfg
bad = 0
statuses = ""
local seen = {}
local queue, qhead, qtail = {}, 1, 0

local function push(tok)
  qtail = qtail + 1
  queue[qtail] = tok
end

local function pop()
  if qhead > qtail then return nil end
  local tok = queue[qhead]
  queue[qhead] = nil
  qhead = qhead + 1
  return tok
end

function init(args)
  cfg = dofile(args[1])
  wrk.method = cfg.method
  wrk.body = cfg.body
  for k, v in pairs(cfg.headers or {}) do wrk.headers[k] = v end
  if cfg.refresh then
    for _, t in ipairs(cfg.seeds) do push(t) end
    -- Dynamic requests: one refresh token per request.
    request = function()
      local tok = pop() or "queue-exhausted"
      return wrk.format(nil, nil, nil, cfg.prefix .. tok)
    end
  end
end

function response(status, headers, body)
  if status ~= cfg.expect then
    bad = bad + 1
    if not seen[status] then
      seen[status] = true
      statuses = statuses .. status .. " "
    end
  elseif cfg.refresh then
    local tok = body:match('"refresh_token"%s*:%s*"([^"]+)"')
    if tok then push(tok) else bad = bad + 1 end
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
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"bad":%d,"bad_statuses":"%s",' ..
    '"latency_us":{"min":%d,"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"max":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout, b, st,
    latency.min, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
