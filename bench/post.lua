-- wrk script: POST one file as the body of every request and print a JSON summary.
--   wrk -t1 -c32 -d10s -s bench/post.lua URL -- FILE [CONTENT-TYPE]
-- The request is built once (wrk.init formats it after init); no per-request Lua runs.

function init(args)
  local file = assert(io.open(args[1], "rb"))
  wrk.body = file:read("*a")
  file:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = args[2] or "application/xml"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "status_errors": %d, "connect_errors": %d, ' ..
    '"read_errors": %d, "write_errors": %d, "timeouts": %d, "p50_us": %.0f, "p90_us": %.0f, ' ..
    '"p99_us": %.0f, "p999_us": %.0f, "max_us": %.0f}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
