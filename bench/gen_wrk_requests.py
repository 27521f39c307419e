#!/usr/bin/env python3
"""Writes a wrk Lua script that cycles through N pre-signed vendor webhooks.

wrk's Lua has no HMAC, so requests are signed here with a fresh timestamp; they stay
inside the edge's +/-300 s window for the length of a benchmark run. Bodies differ by
user id so records spread over the raw topic's partitions as real traffic would.
"""
import base64, hashlib, hmac, json, sys, time

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
out = sys.argv[2] if len(sys.argv) > 2 else "/dev/stdout"
terra_secret = b"bench-terra-secret"
whoop_secret = b"bench-whoop-secret"
now = int(time.time())

def lua_str(s):
    return json.dumps(s)  # JSON string literals are valid Lua string literals here

reqs = []
for i in range(n):
    if i % 2 == 0:
        body = json.dumps({"type": "daily", "user": {"user_id": f"bench-user-{i % 200}", "provider": "GARMIN",
                 "reference_id": f"ref-{i % 200}"}, "data": [{"metadata": {"start_time": "2025-01-01T00:00:00.000000+00:00",
                 "end_time": "2025-01-02T00:00:00.000000+00:00", "upload_type": 1}, "distance_data": {"steps": 8000 + i},
                 "calories_data": {"total_burned_calories": 2100.5, "net_activity_calories": 450.0},
                 "heart_rate_data": {"summary": {"avg_hr_bpm": 61.0, "resting_hr_bpm": 52.0, "avg_hrv_rmssd": 48.0}}}],
                 "version": "2022-03-16"}, separators=(",", ":"))
        sig = hmac.new(terra_secret, f"{now}.".encode() + body.encode(), hashlib.sha256).hexdigest()
        reqs.append(("/webhooks/terra", {"terra-signature": f"t={now},v1={sig}",
                     "x-terra-ordering-timestamp": str(now * 1000 + i), "content-type": "application/json"}, body))
    else:
        body = json.dumps({"user_id": 10000 + i % 200, "id": f"00000000-0000-4000-8000-{i:012d}",
                           "type": "sleep.updated", "trace_id": f"trace-{i}"}, separators=(",", ":"))
        ts = str(now * 1000)
        sig = base64.b64encode(hmac.new(whoop_secret, ts.encode() + body.encode(), hashlib.sha256).digest()).decode()
        reqs.append(("/webhooks/whoop", {"X-WHOOP-Signature": sig, "X-WHOOP-Signature-Timestamp": ts,
                     "content-type": "application/json"}, body))

with open(out, "w") as f:
    f.write("local reqs = {}\n")
    for path, headers, body in reqs:
        hs = ", ".join(f"[{lua_str(k)}] = {lua_str(v)}" for k, v in headers.items())
        f.write(f"reqs[#reqs + 1] = wrk.format('POST', {lua_str(path)}, {{{hs}}}, {lua_str(body)})\n")
    f.write("""
local i = 0
request = function()
  i = i + 1
  return reqs[(i % #reqs) + 1]
end
local non2xx = 0
response = function(status, headers, body)
  if status ~= 202 then non2xx = non2xx + 1 end
end
done = function(summary, latency, requests)
  io.write(string.format("BENCH requests=%d duration_us=%d rps=%.1f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f mean_ms=%.2f errors_connect=%d errors_read=%d errors_write=%d errors_status=%d errors_timeout=%d\\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000, latency.mean / 1000,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status, summary.errors.timeout))
end
""")
