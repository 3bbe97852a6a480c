-- wrk script for the benchmark (bench/run.mjs): POSTs BENCH_BODY as JSON
-- (with BENCH_AUTH as the authorization header) and prints one summary line,
-- BENCH_JSON {...}, latencies in microseconds.
--
-- wrk's own percentiles are "corrected" for coordinated omission: every slow
-- response adds synthetic samples, so one 20 ms pause at 1 connection turns
-- into dozens of samples and the p99 reports the pause, not what 99% of
-- requests saw. This script therefore times every request itself (LuaJIT FFI
-- clock_gettime), which is exact when each wrk thread has one connection:
-- run wrk with -t equal to -c. wrk's corrected p99 is kept as p99_corrected.

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now_us()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000000 + tonumber(ts.tv_nsec) / 1000
end

wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or "{}"
wrk.headers["content-type"] = "application/json"
local auth = os.getenv("BENCH_AUTH")
if auth and auth ~= "" then wrk.headers["authorization"] = auth end

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

local req, started
function init(args)
  req = wrk.format()
  lat = {}
  n = 0
end

function request()
  started = now_us()
  return req
end

function response(status, headers, body)
  if started then
    n = n + 1
    lat[n] = now_us() - started
    started = nil
  end
end

function done(summary, latency, requests)
  local all, k, sum = {}, 0, 0
  for _, t in ipairs(threads) do
    local l = t:get("lat")
    if l then
      for i = 1, #l do
        k = k + 1
        all[k] = l[i]
        sum = sum + l[i]
      end
    end
  end
  table.sort(all)
  local function pct(p)
    if k == 0 then return 0 end
    local i = math.ceil(p / 100 * k)
    if i < 1 then i = 1 end
    return all[i]
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"timed":%d,"latency_us":{"p50":%.1f,"p90":%.1f,"p99":%.1f,"p999":%.1f,"mean":%.2f,"max":%.1f,"min":%.1f,' ..
    '"p99_corrected":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    k, pct(50), pct(90), pct(99), pct(99.9), k > 0 and sum / k or 0, k > 0 and all[k] or 0, k > 0 and all[1] or 0,
    latency:percentile(99)))
end
