// k6 load script for netqoe-ingest: posts BATCH valid events per request, unique ids.
// k6 run -e URL=http://127.0.0.1:8081/api/v1/events -e TOKEN=... -e BATCH=1 --vus 64 --duration 30s loadtest/k6-ingest.js
import http from 'k6/http';
import { check } from 'k6';

const URL = __ENV.URL || 'http://127.0.0.1:8081/api/v1/events';
const TOKEN = __ENV.TOKEN || '';
const BATCH = parseInt(__ENV.BATCH || '1', 10);
const CLIENTS = parseInt(__ENV.CLIENTS || '100', 10);

// RFC 4122 version 4 UUID from k6's random source.
function uuid4() {
  const h = '0123456789abcdef';
  let s = '';
  for (let i = 0; i < 36; i++) {
    if (i === 8 || i === 13 || i === 18 || i === 23) s += '-';
    else if (i === 14) s += '4';
    else if (i === 19) s += h[(Math.random() * 4) | 8];
    else s += h[(Math.random() * 16) | 0];
  }
  return s;
}

function event(i) {
  return {
    schema_version: '1',
    event_id: uuid4(),
    client_id: `loadgen-${(__VU * 7919 + i) % CLIENTS}`,
    ts_ms: Date.now(),
    target: `https://t${i % 10}.example/`,
    timings: { dns_ms: 5.0, tcp_ms: 12.0, tls_ms: 25.0, http_ttfb_ms: 60.0, total_ms: 110.0 },
    http_status: 200,
  };
}

export default function () {
  const events = [];
  for (let i = 0; i < BATCH; i++) events.push(event(__ITER * BATCH + i));
  const body = JSON.stringify(BATCH === 1 ? events[0] : events);
  const headers = { 'Content-Type': 'application/json' };
  if (TOKEN) headers.Authorization = `Bearer ${TOKEN}`;
  const res = http.post(URL, body, { headers });
  check(res, {
    'status is 202': (r) => r.status === 202,
    'every event stored': (r) => {
      if (r.status !== 202) return false;
      const b = r.json();
      return b.accepted + b.duplicates === BATCH;
    },
  });
}
