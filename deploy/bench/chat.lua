-- wrk script: POST one small chat completion; headers come from the environment.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY")
wrk.body = '{"model":"gpt-4.1-mini","max_tokens":16,"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Summarise the benefits of routing LLM traffic through one gateway."}]}'

-- Count non-2xx answers so a broken run cannot pass for a fast one.
local errors = 0
response = function(status, headers, body)
  if status ~= 200 then errors = errors + 1 end
end
done = function(summary, latency, requests)
  io.write(string.format("non_2xx=%d\n", summary.errors.status))
end
