-- wrk script: distinct alerts to Alertmanager's POST /api/v2/alerts
-- (scripts/bench). Each request is one alert with a unique `post` label
-- (Alertmanager deduplicates equal label sets); BENCH_CLOSE=1 adds
-- `Connection: close`. Pass the thread count after `--`. Prints one
-- `BENCHJSON {...}` line like ingest.lua ("ok" = 2xx answers).
local close = os.getenv("BENCH_CLOSE") == "1"
local threads = {}
local nsetup = 0

function setup(thread)
  nsetup = nsetup + 1
  thread:set("tid", nsetup - 1)
  table.insert(threads, thread)
end

function init(args)
  nthreads = tonumber(args[1]) or 1
  k, s202, s2xx, other, wrapped = 0, 0, 0, 0, 0
  hdr = { ["Content-Type"] = "application/json" }
  if close then hdr["Connection"] = "close" end
end

function request()
  local id = 1000000 + tid + k * nthreads
  k = k + 1
  return wrk.format("POST", "/api/v2/alerts", hdr,
    '[{"labels":{"alertname":"NewForumPost","forum":"General","severity":"info","post":"' .. id ..
    '"},"annotations":{"summary":"New post in General: How do I share state between async tasks?"}}]')
end

function response(status, headers, body)
  if status == 202 then s202 = s202 + 1
  elseif status >= 200 and status < 300 then s2xx = s2xx + 1
  else other = other + 1 end
end

function done(summary, latency, requests)
  local t = { s202 = 0, s2xx = 0, other = 0, wrapped = 0 }
  for _, th in ipairs(threads) do
    for key, _ in pairs(t) do t[key] = t[key] + (th:get(key) or 0) end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"ok":%d,"s202":%d,"s2xx_other":%d,"non2xx":%d,"wrapped":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_timeout":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, t.s202 + t.s2xx, t.s202, t.s2xx, t.other, t.wrapped,
    e.connect, e.read, e.write, e.timeout, latency:percentile(50), latency:percentile(99)))
end
