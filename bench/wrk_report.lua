-- wrk script: each request reads a random path from PATHS (one per line, env WRK_PATHS file),
-- and at the end one JSON line with wrk's own counters and latency percentiles.
local paths = {}
local counter = 0

function init(args)
  local file = os.getenv("WRK_PATHS")
  if file then
    for line in io.lines(file) do paths[#paths + 1] = line end
  end
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end

function request()
  if #paths == 0 then return wrk.format(nil, nil) end
  return wrk.format(nil, paths[math.random(#paths)])
end

function done(summary, latency, requests)
  local errors = summary.errors
  local failed = errors.connect + errors.read + errors.write + errors.timeout + errors.status
  io.write(string.format(
    '{"requests": %d, "duration_s": %.3f, "failures": %d, "p50_ms": %.3f, "p95_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f, "mean_ms": %.3f}\n',
    summary.requests, summary.duration / 1e6, failed,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, latency.mean / 1000))
end
