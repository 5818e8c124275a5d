-- wrk script: POST one JSON chat completion body on every request.
--
--   BENCH_KEY=sk-... BENCH_MODEL=mock wrk -t1 -c32 -d5s -s bench/post.lua URL
--
-- BENCH_BODY, if set, replaces the whole body; with BENCH_UNIQUE=<nonce> as
-- well, every request's body has "UNIQUE" replaced by <nonce>-<n> (n counts
-- requests), so no two are alike (a cache misses). At the end one line is printed
-- for bench/micro.py to parse:
--   BENCH_RESULT {"requests": ..., "status_errors": ..., "p50_us": ..., ...}
-- status_errors counts non-2xx/3xx answers; a malformed request shows up
-- there (the mock and the gateway both reject bad bodies with 4xx).
-- cdf_us lists the latency at percentiles 1, 2, ..., 99 and 99.9 (for plots).

local model = os.getenv("BENCH_MODEL") or "mock"
local default_body = '{"model":"' .. model .. '","messages":[{"role":"user",'
  .. '"content":"Say hello to the benchmark."}],"max_tokens":16}'

wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or default_body
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("BENCH_KEY")
if key and key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end

local nonce = os.getenv("BENCH_UNIQUE")
if nonce and nonce ~= "" then
  local counter = 0
  local template = wrk.body
  request = function()
    counter = counter + 1
    local body = template:gsub("UNIQUE", nonce .. "-" .. counter)
    return wrk.format(nil, nil, nil, body)
  end
end

local function cdf(latency)
  local points = {}
  for p = 1, 99 do
    points[#points + 1] = tostring(latency:percentile(p))
  end
  points[#points + 1] = tostring(latency:percentile(99.9))
  return "[" .. table.concat(points, ",") .. "]"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,"status_errors":%d,'
      .. '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,'
      .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,"cdf_us":%s}\n',
    summary.requests, summary.duration, summary.bytes, e.status,
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean, cdf(latency)))
end
