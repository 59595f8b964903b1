#!/usr/bin/env bash
# Writes N vegeta targets (JSON format, one per line), each a POST of BATCH valid events with
# fresh event ids. Env: URL, TOKEN, N (default 10000), BATCH (default 1), CLIENTS (default 100).
set -euo pipefail
URL=${URL:-http://127.0.0.1:8081/api/v1/events}
N=${N:-10000} BATCH=${BATCH:-1} CLIENTS=${CLIENTS:-100}
exec python3 - "$URL" "${TOKEN:-}" "$N" "$BATCH" "$CLIENTS" <<'PY'
import base64, json, sys, time, uuid
url, token, n, batch, clients = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
headers = {"Content-Type": ["application/json"]}
if token:
    headers["Authorization"] = ["Bearer " + token]
now = int(time.time() * 1000)
for i in range(n):
    events = [{
        "schema_version": "1", "event_id": str(uuid.uuid4()),
        "client_id": f"loadgen-{(i * batch + j) % clients}", "ts_ms": now,
        "target": f"https://t{(i + j) % 10}.example/",
        "timings": {"dns_ms": 5.0, "tcp_ms": 12.0, "tls_ms": 25.0, "http_ttfb_ms": 60.0, "total_ms": 110.0},
        "http_status": 200,
    } for j in range(batch)]
    body = json.dumps(events[0] if batch == 1 else events).encode()
    print(json.dumps({"method": "POST", "url": url, "header": headers,
                      "body": base64.b64encode(body).decode()}))
PY
