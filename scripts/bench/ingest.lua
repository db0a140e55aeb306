-- wrk script: distinct signed post_created webhooks (scripts/bench).
-- BENCH_SIGS names a Lua file from `gen.py sigs` (PREFIX, SUFFIX, BASE,
-- INSTANCE, SIGS); request k of thread t uses post id BASE + t + k*threads + 1,
-- with its precomputed signature, as body and X-Discourse-Event-Id, so no two
-- requests are duplicates until the table runs out ("wrapped" counts those).
-- BENCH_CLOSE=1 adds `Connection: close`. Pass the thread count after `--`.
-- Prints one `BENCHJSON {...}` line with status counts at the end.
dofile(os.getenv("BENCH_SIGS"))
local NSIGS = #SIGS
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
  hdr = {
    ["Content-Type"] = "application/json",
    ["X-Discourse-Event"] = "post_created",
    ["X-Discourse-Event-Type"] = "post",
    ["X-Discourse-Instance"] = INSTANCE,
  }
  if close then hdr["Connection"] = "close" end
end

function request()
  local i = tid + k * nthreads + 1
  k = k + 1
  if i > NSIGS then
    wrapped = wrapped + 1
    i = ((i - 1) % NSIGS) + 1
  end
  local id = BASE + i
  hdr["X-Discourse-Event-Id"] = tostring(id)
  hdr["X-Discourse-Event-Signature"] = "sha256=" .. SIGS[i]
  return wrk.format("POST", "/webhooks/discourse", hdr, PREFIX .. id .. SUFFIX)
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
