-- wrk script for scripts/bench-http.sh: every request POSTs one new transaction (an id never sent
-- before) to /v1/users/{user}/transactions, with the API key as a bearer token.
--
-- Environment:
--   BENCH_KEY           the API key (role write or admin); required
--   BENCH_USERS         how many users to spread the requests over, round-robin (default 1)
--   BENCH_USER_PREFIX   user ids are this prefix and five digits: w1-00000, w1-00001, ... (default w1-)
--   BENCH_RUN           a tag that makes the ids of this run unique (default "run")
--   BENCH_THREADS       wrk's -t, so that the threads take turns over the users (default 1)

local threads = {}

function setup(thread)
    thread:set("tid", #threads)
    table.insert(threads, thread)
end

function init(args)
    key = os.getenv("BENCH_KEY")
    if key == nil or key == "" then
        error("BENCH_KEY is not set: give the API key to use")
    end
    users = tonumber(os.getenv("BENCH_USERS") or "1")
    prefix = os.getenv("BENCH_USER_PREFIX") or "w1-"
    run = os.getenv("BENCH_RUN") or "run"
    nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
    n = 0
    statuses = {}
    headers = { ["Authorization"] = "Bearer " .. key, ["Content-Type"] = "application/json" }
end

function request()
    n = n + 1
    local user = prefix .. string.format("%05d", (n * nthreads + tid) % users)
    local id = run .. "-" .. tid .. "-" .. n
    local body = '{"transactions":[{"id":"' .. id .. '","time":"2026-03-01T12:00:00Z",'
        .. '"amount":{"amount":"-12.34","currency":"EUR"},"merchant":"Bench Merchant","mcc":5411}]}'
    return wrk.format("POST", "/v1/users/" .. user .. "/transactions", headers, body)
end

function response(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
    local total = {}
    for _, thread in ipairs(threads) do
        for status, count in pairs(thread:get("statuses")) do
            total[status] = (total[status] or 0) + count
        end
    end
    local parts = {}
    for status, count in pairs(total) do
        table.insert(parts, status .. ": " .. count)
    end
    table.sort(parts)
    io.write("statuses: " .. table.concat(parts, ", ") .. "\n")
    io.write(string.format("bench: requests/s %.1f, p50 %.2f ms, p99 %.2f ms, errors %d\n",
        summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
        latency:percentile(99) / 1000,
        summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status
            + summary.errors.timeout))
end
