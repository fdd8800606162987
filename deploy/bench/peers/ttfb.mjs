// Streaming time to first byte: sends N streamed chat requests one after
// another over one keep-alive connection and prints the median and p90 of
// the time from sending a request to its first body byte, in ms, and how
// many did not answer 200.
// Usage: node ttfb.mjs URL N BODY_FILE [header: value]...
import http from "node:http";
import { readFileSync } from "node:fs";

const [url, n, bodyFile, ...headerArgs] = process.argv.slice(2);
const body = readFileSync(bodyFile);
const headers = { "content-type": "application/json", "content-length": body.length };
for (const h of headerArgs) {
  const at = h.indexOf(":");
  headers[h.slice(0, at).trim().toLowerCase()] = h.slice(at + 1).trim();
}
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const target = new URL(url);

function once() {
  return new Promise((resolve) => {
    const started = process.hrtime.bigint();
    let first = null;
    const req = http.request(
      { host: target.hostname, port: target.port, path: target.pathname, method: "POST", headers, agent },
      (res) => {
        res.on("data", () => {
          first ??= process.hrtime.bigint();
        });
        res.on("end", () => resolve({ ok: res.statusCode === 200, ms: Number((first ?? process.hrtime.bigint()) - started) / 1e6 }));
      },
    );
    req.setTimeout(30_000, () => req.destroy(new Error("timeout")));
    req.on("error", () => resolve({ ok: false, ms: NaN }));
    req.end(body);
  });
}

const times = [];
let errors = 0;
for (let i = 0; i < Number(n); i++) {
  const { ok, ms } = await once();
  if (ok) times.push(ms);
  else errors += 1;
}
times.sort((a, b) => a - b);
const at = (q) => (times.length ? times[Math.min(times.length - 1, Math.floor(q * times.length))] : NaN);
console.log(JSON.stringify({ p50: at(0.5), p90: at(0.9), errors }));
agent.destroy();
